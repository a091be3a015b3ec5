"""Bookings that need a provider's attention: a rule they passed when made no longer holds.

The rules about who may have a visit (REMS, contraindications, the clinician's clearance,
the ride home, the provider's license: ``consultations/gates.py``) act when a booking is
made. Their inputs change afterwards: a patient moved back to "needs review", a screening
answer that names a contraindication, a REMS enrolment withdrawn, a license suspended or
expired. When one changes, every future booking it affects (pending or booked) is asked the
same questions again, in the same transaction (handlers wired in ``service/bootstrap.py``);
one that no longer passes is flagged: ``attention`` is the failing rule's code, and
``BookingNeedsAttention`` is recorded (an alert for staff and providers, a
``booking.attention`` webhook). A flagged booking cannot be checked in until a provider (or
an admin) resolves the flag with a reason; check-in asks the gates again anyway. A daily job
(``recheck_licenses``) asks again for license expiry, which changes with the calendar alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from service.domain.access.actor import Actor
from service.domain.bookings.events import BookingNeedsAttention
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.bookings.policy import policy
from service.domain.clinic.models import Location
from service.domain.consultations import gates
from service.domain.consultations.events import ClearanceChanged, ScreeningChanged
from service.domain.errors import InvalidInput, InvalidState
from service.domain.patients.events import RemsEnrolmentChanged
from service.domain.patients.models import Patient
from service.domain.providers.events import LicenseChanged
from service.domain.providers.models import Provider
from service.uow import UnitOfWork

UPCOMING = (BookingStatus.PENDING, BookingStatus.BOOKED)


def _upcoming(now: datetime) -> Select:
    return (select(Booking).where(Booking.status.in_(UPCOMING), Booking.starts_at > now)
            .order_by(Booking.starts_at, Booking.id))


def reevaluate(uow: UnitOfWork, bookings: Iterable[Booking], *, now: datetime) -> int:
    """Ask each booking the gates again; flag those that no longer pass (a booking already
    flagged keeps its first rule and raises nothing again). How many were flagged."""
    flagged = 0
    for booking in bookings:
        if booking.attention is not None:
            continue
        code = gates.failing_rule(uow.session, booking)
        if code is None:
            continue
        booking.attention = code
        booking.attention_since = now
        booking.attention_resolution = None
        booking.attention_resolved_at = None
        uow.record(BookingNeedsAttention(
            booking_id=booking.id, patient_id=booking.patient_id,
            provider_id=booking.provider_id, starts_at=booking.starts_at,
            ends_at=booking.ends_at, status=booking.status, code=code, occurred_at=now))
        flagged += 1
    return flagged


def recheck_patient(uow: UnitOfWork,
                    event: ClearanceChanged | ScreeningChanged | RemsEnrolmentChanged) -> None:
    """A clearance decision, a screening or a REMS enrolment of the patient changed: their
    future bookings are asked again (handler, in the change's transaction)."""
    rows = uow.session.scalars(_upcoming(event.occurred_at)
                               .where(Booking.patient_id == event.patient_id)
                               .with_for_update())
    reevaluate(uow, list(rows), now=event.occurred_at)


def recheck_provider(uow: UnitOfWork, event: LicenseChanged) -> None:
    """One of the provider's licenses changed: their future bookings are asked again."""
    rows = uow.session.scalars(_upcoming(event.occurred_at)
                               .where(Booking.provider_id == event.provider_id)
                               .with_for_update())
    reevaluate(uow, list(rows), now=event.occurred_at)


RECHECK_CHUNK = 500  # bookings asked again per read of their parties


def _parties(session: Session, bookings: list[Booking]) -> list[object]:
    """The patients, providers (with their licenses) and locations of these bookings, read
    in three statements. The gates look each one up by id (``session.get``); the session's
    identity map holds its objects weakly, so without these references each booking's
    parties would be read again, one statement each."""
    patients = {booking.patient_id for booking in bookings}
    providers = {booking.provider_id for booking in bookings}
    locations = {booking.location_id for booking in bookings}
    return [*session.scalars(select(Patient).where(Patient.id.in_(patients))),
            *session.scalars(select(Provider).where(Provider.id.in_(providers))
                             .options(selectinload(Provider.licenses))),
            *session.scalars(select(Location).where(Location.id.in_(locations)))]


def recheck_licenses(uow: UnitOfWork, *, now: datetime) -> int:
    """The daily job: a license that expires lets the calendar, not a change, break the
    bookings after its end. Every future booking not yet flagged is asked again; how many
    were flagged."""

    def work() -> int:
        # Asked without locks first: locking every future booking for the whole pass held
        # up whatever locks one meanwhile (a reminder send's guard waited past its lock
        # timeout at every scheduler start-up, and its batch then waited for its lease).
        # Only the bookings that fail are locked, read again, and asked again.
        unflagged = _upcoming(now).where(Booking.attention.is_(None))
        bookings = list(uow.session.scalars(unflagged))
        failing = []
        for start in range(0, len(bookings), RECHECK_CHUNK):
            part = bookings[start:start + RECHECK_CHUNK]
            held = _parties(uow.session, part)  # noqa: F841 - kept alive while asked
            failing += [booking.id for booking in part
                        if gates.failing_rule(uow.session, booking) is not None]
        if not failing:
            return 0
        rows = uow.session.scalars(unflagged.where(Booking.id.in_(failing)).with_for_update()
                                   .execution_options(populate_existing=True))
        return reevaluate(uow, list(rows), now=now)

    return uow.run(work)


def resolve_attention(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *, reason: str,
                      now: datetime) -> Booking:
    """A provider (or an admin) has looked at a flagged booking and says why it may go on
    (or has fixed its cause); the reason stays on the booking. Check-in still asks the
    gates."""
    policy.require(actor, "resolve_attention")
    if not reason or not reason.strip():
        raise InvalidInput("Resolving a booking's attention flag needs a reason.",
                           code="invalid_input", field="reason")

    def work() -> Booking:
        booking = policy.load(uow.session, actor, booking_id, lock=True)
        if booking.attention is None:
            raise InvalidState("This booking has no attention flag to resolve.",
                               code="booking_not_flagged")
        booking.attention = None
        booking.attention_since = None
        booking.attention_resolution = reason.strip()
        booking.attention_resolved_at = now
        return booking

    return uow.run(work)
