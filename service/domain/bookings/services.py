"""Booking use cases: create, reschedule, the FHIR status transitions, and reads.

A booking asks ``consultations.gates`` whether the patient may have this kind of visit and
``availability.placement`` where the visit goes: every rule the slot search applies, checked
again inside the write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: exclusion
constraints catch the race the check cannot see). A taken slot answers ``slot_unavailable``
with the next free slots. Each change is recorded as a domain event (``events.py``); who
reacts to it is decided in ``service/bootstrap.py``, not here.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Select, bindparam, insert, select, true
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, contains_eager, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from service.db import DirectStatement, utcnow
from service.domain import recipients
from service.domain.access.actor import Actor, Role
from service.domain.availability import placement, search, versions
from service.domain.availability.placement import SlotUnavailable
from service.domain.bookings import events, fresh, history, zones
from service.domain.bookings.history import BookingEvent
from service.domain.bookings.models import (
    CHAIR_OVERLAP,
    PATIENT_OVERLAP,
    PROVIDER_OVERLAP,
    Booking,
    BookingStatus,
)
from service.domain.bookings.policy import policy
from service.domain.clinic.cancellation import CancellationTerms
from service.domain.clinic.models import Location, ServiceType
from service.domain.consultations import gates
from service.domain.errors import (
    Conflict,
    InvalidInput,
    InvalidState,
    NotFound,
    PreconditionFailed,
    register_constraint,
)
from service.domain.patients.models import Patient
from service.domain.patients.policy import policy as patient_policy
from service.domain.patients.services import find_patient
from service.domain.providers.licensing import Modality
from service.domain.providers.models import License, Provider
from service.domain.records import Page, paginate
from service.domain.series import adherence
from service.uow import UnitOfWork

for _name, _what in ((PROVIDER_OVERLAP, "The provider is already booked then."),
                     (PATIENT_OVERLAP, "The patient already has a visit then."),
                     (CHAIR_OVERLAP, "No treatment chair is free then.")):
    register_constraint(_name, lambda what=_what: SlotUnavailable(what))


@dataclass(frozen=True)
class BookingRequest:
    patient_id: uuid.UUID
    provider_id: uuid.UUID
    service_type_id: uuid.UUID
    location_id: uuid.UUID
    start: datetime
    patient_state: str | None = None
    ride_home_confirmed: bool = False
    hold: bool = False  # True: "pending" until confirmed
    note: str | None = None


# Reads -----------------------------------------------------------------------------------


def find_booking(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                 lock: bool = False) -> Booking:
    """The booking, if the actor may see it (the bookings policy; for use inside a unit of
    work)."""
    return policy.load(uow.session, actor, booking_id, lock=lock)


# Rules checked at booking time -----------------------------------------------------------


@dataclass
class _Parties:
    patient: Patient
    provider: Provider
    service_type: ServiceType
    location: Location


@functools.cache
def _parties_query(postgres: bool) -> Select[Any]:
    """The parties' query (before the actor's visibility), built once: its ids are
    parameters (building it took about as long as running it)."""
    return (select(Patient, Provider, ServiceType, Location,
                   *(recipients.COLUMNS if postgres else ()))
            .select_from(Patient)
            .join(Provider, true()).join(ServiceType, true()).join(Location, true())
            .outerjoin(Provider.licenses).options(contains_eager(Provider.licenses))
            .where(Patient.id == bindparam("patient_id"),
                   Provider.id == bindparam("provider_id"),
                   ServiceType.id == bindparam("service_type_id"),
                   Location.id == bindparam("location_id")))


def _parties(uow: UnitOfWork, actor: Actor, request: BookingRequest, *,
             plain: bool = False) -> _Parties:
    """The booking's parties, checked (they exist, the actor may see the patient, all are
    active, the location offers the service). ``plain``: as plain rows (``_plain_parties``),
    for a caller that only reads them, on the unit of work's connection (no session asked
    for); else ORM instances kept in the session."""
    # The patient (as the actor may see them), the provider with its licenses, the service
    # type and the location in one query (one row per license). When one of them does not
    # exist or cannot be seen, no row comes back and each is looked up (and refused) in turn.
    # On PostgreSQL the same query reads who will hear of the change (recipients.COLUMNS).
    postgres = uow.dialect == "postgresql"
    ids = {"patient_id": request.patient_id, "provider_id": request.provider_id,
           "service_type_id": request.service_type_id, "location_id": request.location_id}
    found: Any
    if plain:
        found = _plain_parties(uow.connection(), actor, postgres, ids)
    else:
        found = uow.session.execute(patient_policy.visible(actor, _parties_query(postgres)),
                                    ids).unique().first()
    patient = find_patient(uow, actor, request.patient_id) if found is None else found[0]
    if found is not None and postgres:
        recipients.remember(uow, request.provider_id, found[4], found[5])
    if not policy.may_book_with(actor, request.provider_id):
        raise NotFound("No provider with this id.", code="provider_not_found")
    provider, service_type, location = (_others(uow.session, request) if found is None
                                        else found[1:4])
    if not plain:
        # The session's identity map holds loaded rows by weak reference: kept here for the
        # transaction, the handlers (reminder planning...) find them without a query.
        uow.session.info.setdefault("loaded", []).extend(
            (patient, provider, service_type, location))
    inactive = [name for name, record in (("patient", patient), ("provider", provider),
                                          ("service_type", service_type),
                                          ("location", location)) if not record.active]
    if inactive:
        raise Conflict("Inactive records cannot be booked.", code="not_bookable",
                       inactive=inactive)
    if not search.location_offers(location, service_type):
        raise InvalidInput("This location does not offer this kind of visit.",
                           code="location_mismatch")
    return _Parties(patient, provider, service_type, location)


class PlainRow(SimpleNamespace):
    """A model's row as plain attributes (its column attributes' names), for code that
    only reads it: no identity map, no instance state."""


class PlainServiceType(PlainRow):
    """A service type's row; its derived attributes as the model computes them."""

    needs_ride_home = ServiceType.needs_ride_home


class PlainProvider(PlainRow):
    """A provider's row, with ``licenses``: its licenses' rows."""

    licenses: list[PlainRow]


# The parties' models, in the order of their columns in ``_plain_parties_query``, with the
# class their plain rows take.
_PLAIN_MODELS: tuple[tuple[type, type[PlainRow]], ...] = (
    (Patient, PlainRow), (Provider, PlainProvider), (ServiceType, PlainServiceType),
    (Location, PlainRow), (License, PlainRow))


@functools.cache
def _plain_columns() -> tuple[tuple[tuple[str, ...], type[PlainRow], Any], ...]:
    """Per model of ``_PLAIN_MODELS``: its column attributes' names, its plain class and
    its columns (in that order)."""
    described = []
    for model, plain_class in _PLAIN_MODELS:
        attributes = sa_inspect(model).column_attrs
        described.append((tuple(attribute.key for attribute in attributes), plain_class,
                          tuple(attribute.columns[0] for attribute in attributes)))
    return tuple(described)


@functools.cache
def _plain_parties_query(postgres: bool) -> Select[Any]:
    """``_parties_query`` as a Core select of the same rows (every column of the patient,
    the provider, the service type, the location and the license, then the recipients on
    PostgreSQL): plain tuples, not ORM instances. Built once."""
    patients, providers = Patient.__table__, Provider.__table__
    service_types, locations = ServiceType.__table__, Location.__table__
    licenses = License.__table__
    columns = [column for _, _, model_columns in _plain_columns() for column in model_columns]
    return (select(*columns, *(recipients.COLUMNS if postgres else ()))
            .select_from(patients)
            .join(providers, true()).join(service_types, true()).join(locations, true())
            .outerjoin(licenses, licenses.c.provider_id == providers.c.id)
            .where(patients.c.id == bindparam("patient_id"),
                   providers.c.id == bindparam("provider_id"),
                   service_types.c.id == bindparam("service_type_id"),
                   locations.c.id == bindparam("location_id")))


@functools.cache
def _plain_parties_direct(postgres: bool) -> DirectStatement:
    """``_plain_parties_query`` as it is (for an actor who sees every patient), compiled
    once and run without SQLAlchemy's per-execution machinery (``DirectStatement``): the
    query of every booking made by the clinic's staff."""
    return DirectStatement(_plain_parties_query(postgres))


def _plain_parties(connection: Connection, actor: Actor, postgres: bool,
                   ids: dict[str, uuid.UUID]) -> tuple[Any, ...] | None:
    """The patient, the provider (its ``licenses`` attached), the service type, the
    location as plain rows, then the recipients' two columns (PostgreSQL), as
    ``_parties_query``'s first unique row gives them, for what the actor may see; None
    without a row. Run on the transaction's connection: the ORM has no instance to make.
    The patients' policy narrows the query for an actor who does not see every patient
    (with values of the actor's own: run as an ordinary statement)."""
    if patient_policy.sees_every_patient(actor):
        rows: Sequence[Any] = _plain_parties_direct(postgres).all(connection, ids)
    else:
        rows = connection.execute(patient_policy.visible(
            actor, _plain_parties_query(postgres)), ids).all()
    if not rows:
        return None
    first, parties, at = rows[0], [], 0
    described = _plain_columns()
    for keys, plain_class, _ in described[:4]:
        parties.append(plain_class(**dict(zip(keys, first[at:at + len(keys)], strict=True))))
        at += len(keys)
    license_keys, license_class, _ = described[4]
    end = at + len(license_keys)
    license_id = at + license_keys.index("id")
    parties[1].licenses = [
        license_class(**dict(zip(license_keys, row[at:end], strict=True)))
        for row in rows if row[license_id] is not None]
    return (*parties, *first[end:])


def _others(session: Session, request: BookingRequest
            ) -> tuple[Provider, ServiceType, Location]:
    """The provider, the service type and the location one by one (when the parties' query
    found no row): the first missing answers "not found"."""
    provider = session.get(Provider, request.provider_id)
    if provider is None:
        raise NotFound("No provider with this id.", code="provider_not_found")
    service_type = session.get(ServiceType, request.service_type_id)
    if service_type is None:
        raise NotFound("No service type with this id.", code="service_type_not_found")
    location = session.get(Location, request.location_id)
    if location is None:
        raise NotFound("No location with this id.", code="location_not_found")
    return provider, service_type, location


def _patient_state(parties: _Parties, request: BookingRequest) -> str:
    if parties.service_type.modality == Modality.IN_PERSON:
        return "AZ"
    if not request.patient_state:
        raise InvalidInput("For telehealth, attest the state the patient will be in.",
                           code="patient_location_required")
    return request.patient_state.upper()


def _visit(parties: _Parties, patient_state: str) -> placement.Visit:
    return placement.Visit(service_type=parties.service_type, provider=parties.provider,
                           location=parties.location, patient_id=parties.patient.id,
                           patient_state=patient_state)


def _place(booking: Booking, placed: placement.Placement) -> None:
    booking.starts_at = placed.start
    booking.ends_at = placed.end
    booking.provider_starts_at = placed.provider_start
    booking.provider_ends_at = placed.provider_end
    booking.hold_ends_at = placed.hold_end
    booking.chair_number = placed.chair


def _record(uow: UnitOfWork, booking: Booking, event: type[events.BookingChanged], *,
            actor: Actor, now: datetime, **extra: Any) -> None:
    """The change joins the booking's history, and its event is recorded for the handlers
    (call after the booking's change, before commit)."""
    uow.flush()  # the booking's id, and the database's constraints checked now
    if uow.dialect == "postgresql":  # written by the change feed's statement (history.py)
        history.defer(uow.memo, booking.id, event.kind, actor.key_id)
    else:
        # Its history row written at once, without the ORM's unit of work (nothing reads
        # the row back in this transaction; a flush of one more object cost more).
        uow.connection().execute(_HISTORY_ROW, {
            "booking_id": booking.id, "kind": event.kind, "occurred_at": utcnow(),
            "actor_key_id": actor.key_id})
    uow.record(event.of(booking, occurred_at=now, actor_key_id=actor.key_id, **extra))


_HISTORY_ROW = insert(BookingEvent.__table__)


@dataclass
class _Asked:
    """What a use case tried to place, once it knows (for the alternatives of a 409)."""

    wanted: placement.Wanted | None = None


@contextmanager
def offering_alternatives(uow: UnitOfWork, *, now: datetime) -> Iterator[_Asked]:
    """A ``slot_unavailable`` leaving the block (from the Python check or from the
    database's constraint) carries the next free slots for what the block said it asked
    (``asked.wanted``), read on a read-only connection (``UnitOfWork.reading``)."""
    asked = _Asked()
    try:
        yield asked
    except SlotUnavailable as taken:
        if asked.wanted is not None:
            _offer_alternatives(taken, uow, asked.wanted, now=now)
        raise


def _offer_alternatives(taken: SlotUnavailable, uow: UnitOfWork, asked: placement.Wanted, *,
                        now: datetime) -> None:
    """The next free slots for what was asked, on a read-only connection."""
    taken.extras["alternatives"] = placement.alternatives(uow.reading(), asked, now=now)


def wanted(request: BookingRequest) -> placement.Wanted:
    return placement.Wanted(
        service_type_id=request.service_type_id, provider_id=request.provider_id,
        location_id=request.location_id, patient_id=request.patient_id,
        patient_state=(request.patient_state or "").upper() or None, start=request.start)


# Booking inside an open unit of work (shared with treatment series) ----------------------


@dataclass(frozen=True)
class Prepared:
    """A booking request whose parties and clinical gates passed; only the start is left."""

    request: BookingRequest
    parties: _Parties
    patient_state: str


def prepare(uow: UnitOfWork, actor: Actor, request: BookingRequest, *,
            plain: bool = False) -> Prepared:
    """Check everything but the start: who and what is booked, and the clinical gates
    (``plain``: the parties as plain rows, see ``_parties``)."""
    parties = _parties(uow, actor, request, plain=plain)
    gates.check_booking(lambda: uow.session, patient=parties.patient,
                        provider=parties.provider, location=parties.location,
                        service_type=parties.service_type,
                        ride_home_confirmed=request.ride_home_confirmed)
    return Prepared(request, parties, _patient_state(parties, request))


def check_start(uow: UnitOfWork, prepared: Prepared, start: datetime, *,
                now: datetime) -> placement.Placement:
    """Check every slot rule for this start (raises the booking's errors); where the visit
    goes (its blocks and chair). Read on the unit of work's connection."""
    return placement.place(uow, _visit(prepared.parties, prepared.patient_state), start,
                           now=now)


def book(uow: UnitOfWork, actor: Actor, request: BookingRequest, *, now: datetime,
         series_id: uuid.UUID | None = None) -> Booking:
    """Apply every booking rule and add the booking, inside the caller's open unit of work
    (flushed, not committed: the caller commits, or its rollback undoes it)."""
    prepared = prepare(uow, actor, request)
    placed = check_start(uow, prepared, request.start, now=now)
    parties = prepared.parties
    booking = _insert(uow, _new_booking(actor, request, prepared, placed, series_id))
    # The zones its answer is shown in, known from the parties (as a read ``WITH_ZONES``
    # has them), and its service type (loaded with the parties), as loading the booking
    # would attach it: the answer asks no more questions.
    set_committed_value(booking, "zone_of_location", parties.location.timezone)
    set_committed_value(booking, "zone_of_patient", parties.patient.timezone)
    set_committed_value(booking, "service_type", parties.service_type)
    _record(uow, booking, events.BookingCreated, actor=actor, now=now)
    return booking


class NewBooking(SimpleNamespace):
    """A booking just written by ``book_plain``: its columns, its ``service_type`` (a plain
    row) and its zones as attributes; what the model derives from them, derived the same
    way (so ``BookingSchema`` dumps it as it dumps the model's instance)."""

    cancellation = Booking.cancellation
    leaves_at = Booking.leaves_at


def book_plain(uow: UnitOfWork, actor: Actor, request: BookingRequest, *,
               now: datetime) -> NewBooking:
    """``book`` for a caller that only reads the new booking (``create_booking``): the same
    rules, the same rows and events, the parties read as plain rows and the booking written
    by one Core INSERT with no ORM instance at all. It answers the booking's columns as
    attributes, with its ``service_type`` (a plain row) and the zones its answer is shown in
    (``zone_of_location``, ``zone_of_patient``), as ``book``'s booking has them. The
    handlers of its ``BookingCreated`` find it with its service type and patient in the
    unit of work (``fresh.py``), not in the session. In a transaction of the unit of
    work's own, its statements are pipelined (``UnitOfWork.pipeline``): BEGIN goes with
    the parties' read, and the INSERT, the handlers' change feed, the audit row and the
    COMMIT together; a taken slot the database refuses shows at the commit, as the same
    ``slot_unavailable``."""
    uow.pipeline()
    prepared = prepare(uow, actor, request, plain=True)
    placed = check_start(uow, prepared, request.start, now=now)
    parties = prepared.parties
    values = _new_booking(actor, request, prepared, placed, None)
    booking = NewBooking(**values, service_type=parties.service_type,
                         zone_of_location=parties.location.timezone,
                         zone_of_patient=parties.patient.timezone)
    uow.flush()  # what is pending goes first (nothing, unless a caller added some)
    # Its hooks hear of the INSERT (versions.insert_after_bump).
    versions.insert_after_bump(uow, Booking.__table__, values,
                               versions.scopes_of_new_booking(booking))  # type: ignore[arg-type]
    fresh.remember(uow.memo, fresh.Fresh(booking, parties.service_type, parties.patient))
    _record(uow, booking, events.BookingCreated, actor=actor, now=now)  # type: ignore[arg-type]
    return booking


def _new_booking(actor: Actor, request: BookingRequest, prepared: Prepared,
                 placed: placement.Placement, series_id: uuid.UUID | None) -> dict[str, Any]:
    """Every column of the new booking."""
    parties = prepared.parties
    return {
        **_NEW_BOOKING,
        "patient_id": parties.patient.id, "provider_id": parties.provider.id,
        "service_type_id": parties.service_type.id, "location_id": parties.location.id,
        "status": BookingStatus.PENDING if request.hold else BookingStatus.BOOKED,
        "starts_at": placed.start, "ends_at": placed.end,
        "provider_starts_at": placed.provider_start, "provider_ends_at": placed.provider_end,
        "hold_ends_at": placed.hold_end, "chair_number": placed.chair,
        "patient_state": prepared.patient_state,
        "ride_home_confirmed": request.ride_home_confirmed, "note": request.note,
        "created_by_key_id": actor.key_id, "series_id": series_id,
        "id": uuid.uuid4(), "created_at": utcnow(), "updated_at": utcnow(), "version": 1}


# A new booking's columns that no request sets (their defaults, as the ORM would insert).
_NEW_BOOKING: dict[str, Any] = {
    "cancel_reason": None, "cancelled_at": None, "late_cancellation": False,
    "fee_cents": None, "checked_in_at": None, "attention": None, "attention_since": None,
    "attention_resolution": None, "attention_resolved_at": None, "vitals_alert_at": None}


def _insert(uow: UnitOfWork, values: dict[str, Any]) -> Booking:
    """The new booking written with one Core INSERT (its schedule versions bumped in the
    same statement on PostgreSQL: ``versions.insert_after_bump``), not through the ORM's
    unit of work, and kept in the session as a row just loaded would be (persistent, in the
    identity map, unchanged): the handlers find it there, and a later change of it in this
    transaction is an UPDATE from version 1, as after a flush. ``values``: every column."""
    session = uow.session
    session.flush()  # what is pending goes first (the series a session belongs to)
    booking = _BOOKING_MANAGER.new_instance()
    booking.__dict__.update(values)  # as the ORM fills a loaded row's instance
    versions.insert_after_bump(session, Booking.__table__, values,
                               versions.scopes_of_new_booking(booking))
    make_transient_to_detached(booking)
    session.add(booking)
    return booking


_BOOKING_MANAGER = Booking._sa_class_manager  # type: ignore[attr-defined]


# Use cases -------------------------------------------------------------------------------


def create_booking(uow: UnitOfWork, actor: Actor, request: BookingRequest, *,
                   now: datetime) -> NewBooking:
    """Book a visit (``book_plain``): the new booking's columns as attributes, with its
    service type and the zones its answer is shown in. Its transaction runs on a connection
    of the unit of work's own, with no session unless something asks for one (a handler
    adding an outbox row as an ORM instance: ``UnitOfWork.run(direct=True)``). A
    ``slot_unavailable`` carries the next free slots, as ``offering_alternatives`` adds
    them (what was asked made only then)."""
    try:
        return uow.run(lambda: book_plain(uow, actor, request, now=now), direct=True)
    except SlotUnavailable as taken:
        _offer_alternatives(taken, uow, wanted(request), now=now)
        raise


def reschedule_booking(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                       start: datetime, expected_version: int | None, now: datetime,
                       patient_state: str | None = None,
                       override_reason: str | None = None) -> Booking:
    """Move a booking to a new start with every slot rule; a session of a treatment series
    must also keep its protocol (``series/adherence.py``) unless a provider or an admin
    confirms the change with ``override_reason``."""
    with offering_alternatives(uow, now=now) as asked:

        def work() -> Booking:
            booking = find_booking(uow, actor, booking_id, lock=True)
            if expected_version is not None and booking.version != expected_version:
                raise PreconditionFailed("The booking changed since you read it.",
                                         current_version=booking.version)
            if booking.status not in (BookingStatus.PENDING, BookingStatus.BOOKED):
                raise InvalidState(f"A {booking.status.value} booking cannot be rescheduled.",
                                   code="invalid_transition",
                                   booking_status=booking.status.value)
            request = BookingRequest(
                patient_id=booking.patient_id, provider_id=booking.provider_id,
                service_type_id=booking.service_type_id, location_id=booking.location_id,
                start=start, patient_state=patient_state or booking.patient_state,
                ride_home_confirmed=booking.ride_home_confirmed)
            asked.wanted = wanted(request)
            parties = _parties(uow, actor, request)
            check_patient_notice(actor, booking, parties.service_type, now=now)
            state = _patient_state(parties, request)
            previous = {"previous_starts_at": booking.starts_at,
                        "previous_ends_at": booking.ends_at}
            placed = placement.place(uow.session, _visit(parties, state), start, now=now,
                                     exclude_booking_id=booking.id)
            adherence.keep_on_reschedule(uow, actor, booking, placed.start,
                                         override_reason=override_reason, now=now)
            _place(booking, placed)
            booking.patient_state = state
            _record(uow, booking, events.BookingRescheduled, actor=actor, now=now,
                    **previous)
            return booking

        return uow.run(work)


def check_patient_notice(actor: Actor, booking: Booking, service_type: ServiceType, *,
                         now: datetime) -> None:
    """A patient changes or cancels their own visit only up to the service type's notice
    before it (``patient_notice_hours``); later, the clinic does it for them."""
    if actor.role is not Role.PATIENT:
        return
    terms = CancellationTerms.of(service_type)
    if not terms.patient_may_change(booking.starts_at, now):
        until = terms.patient_changes_until(booking.starts_at)
        raise InvalidState(
            f"Changes to this visit close {terms.patient_notice_hours} hours before it; "
            "please call the clinic.", code="patient_notice_passed",
            patient_changes_until=until.isoformat())


# Transitions: action -> (allowed from, to); who may do each is the bookings policy's rule.
TRANSITIONS: dict[str, tuple[frozenset[BookingStatus], BookingStatus]] = {
    "confirm": (frozenset({BookingStatus.PENDING}), BookingStatus.BOOKED),
    "check_in": (frozenset({BookingStatus.BOOKED}), BookingStatus.CHECKED_IN),
    "complete": (frozenset({BookingStatus.CHECKED_IN}), BookingStatus.FULFILLED),
    "no_show": (frozenset({BookingStatus.PENDING, BookingStatus.BOOKED}), BookingStatus.NOSHOW),
    "cancel": (frozenset({BookingStatus.PENDING, BookingStatus.BOOKED}),
               BookingStatus.CANCELLED),
}


# A visit is checked in from this long before its start (CHECK_IN_OPENS_MINUTES), not days
# ahead: a session a week away is not "here".
CHECK_IN_OPENS = timedelta(minutes=120)


EVENT_OF_ACTION: dict[str, type[events.BookingChanged]] = {
    "confirm": events.BookingConfirmed,
    "check_in": events.BookingCheckedIn,
    "complete": events.BookingCompleted,
    "no_show": events.BookingNoShow,
    "cancel": events.BookingCancelled,
}


def apply_transition(uow: UnitOfWork, actor: Actor, booking: Booking, action: str, *,
                     now: datetime, reason: str | None = None,
                     attested_state: str | None = None,
                     check_in_opens: timedelta = CHECK_IN_OPENS,
                     override_reason: str | None = None) -> Booking:
    """Move a booking the actor may see (locked) to its next status, inside the caller's
    unit of work; records the event, does not commit. ``attested_state``: where the patient
    says they are, at a telehealth check-in. Cancelling a session of a treatment series
    must leave room to make it up within its protocol, unless a provider or an admin
    confirms it with ``override_reason``."""
    allowed_from, target = TRANSITIONS[action]
    policy.require(actor, action)
    if booking.status not in allowed_from:
        raise InvalidState(
            f"A {booking.status.value} booking cannot be {target.value.replace('-', ' ')}.",
            code="invalid_transition", booking_status=booking.status.value,
            allowed_from=sorted(s.value for s in allowed_from))
    if action == "no_show" and now < booking.starts_at:
        raise InvalidState("A visit that has not started cannot be a no-show.",
                           code="invalid_transition", booking_status=booking.status.value)
    service_type = uow.session.get(ServiceType, booking.service_type_id)
    if action == "cancel":
        if not reason or not reason.strip():
            raise InvalidInput("A cancellation needs a reason.", code="invalid_input")
        check_patient_notice(actor, booking, service_type, now=now)
        adherence.keep_on_cancel(uow, actor, booking, override_reason=override_reason, now=now)
        terms = CancellationTerms.of(service_type)
        booking.cancel_reason = reason.strip()
        booking.cancelled_at = now
        booking.late_cancellation = terms.is_late(booking.starts_at, now)
        if booking.status is BookingStatus.BOOKED:  # releasing a pending hold costs nothing
            booking.fee_cents = terms.late_fee_cents(booking.starts_at, now)
    if action == "no_show":
        booking.fee_cents = CancellationTerms.of(service_type).no_show_fee()
    if action == "check_in":
        opens = booking.starts_at - check_in_opens
        if now < opens:
            raise InvalidState("Check-in opens shortly before the visit, not days ahead.",
                               code="check_in_not_open", opens_at=opens.isoformat())
        if booking.attention is not None:
            raise Conflict("This booking no longer passes a rule it passed when it was made; "
                           "a provider must resolve it before check-in.",
                           code=booking.attention, attention=booking.attention)
        gates.check_standing(uow.session, booking)
        gates.check_in(uow.session, booking, service_type, attested_state=attested_state,
                       now=now)
        booking.checked_in_at = now
    if action == "complete":
        gates.check_completion(uow.session, booking, service_type, now=now)
    booking.status = target
    _record(uow, booking, EVENT_OF_ACTION[action], actor=actor, now=now)
    return booking


def transition_booking(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, action: str, *,
                       now: datetime, reason: str | None = None,
                       attested_state: str | None = None,
                       check_in_opens: timedelta = CHECK_IN_OPENS,
                       override_reason: str | None = None) -> Booking:
    def work() -> Booking:
        booking = find_booking(uow, actor, booking_id, lock=True)
        return apply_transition(uow, actor, booking, action, now=now, reason=reason,
                                attested_state=attested_state, check_in_opens=check_in_opens,
                                override_reason=override_reason)

    return uow.run(work)


def get_booking(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID) -> Booking:
    """The booking, if the actor may see it, read in one statement with the zones its
    answer is shown in."""
    with uow:
        return policy.load(uow.session, actor, booking_id, options=zones.WITH_ZONES)


def list_bookings(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                  provider_id: uuid.UUID | None = None, patient_id: uuid.UUID | None = None,
                  status: list[BookingStatus] | None = None, starts_from: datetime | None = None,
                  starts_before: datetime | None = None,
                  updated_since: datetime | None = None) -> Page[Booking]:
    query = policy.visible(actor, select(Booking)).order_by(Booking.starts_at, Booking.id)
    if provider_id is not None:
        query = query.where(Booking.provider_id == provider_id)
    if patient_id is not None:
        query = query.where(Booking.patient_id == patient_id)
    if status:
        query = query.where(Booking.status.in_(status))
    if starts_from is not None:
        query = query.where(Booking.starts_at >= starts_from)
    if starts_before is not None:
        query = query.where(Booking.starts_at < starts_before)
    if updated_since is not None:
        query = query.where(Booking.updated_at >= updated_since)
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)
