"""Waitlist use cases: join, list, reorder, withdraw; offers (accept, decline); the
scheduler's ``waitlist`` job; and the handlers that turn freed time into openings.

How a freed slot reaches a waitlisted patient:

1. A booking is cancelled or moved away, working hours change, time off is removed: a
   handler of that event (``service/bootstrap.py``) writes a ``WaitlistOpening`` in the
   same transaction (nothing else: the change itself stays fast and cannot fail on it).
2. The scheduler's ``waitlist`` job (``run_waitlist``) claims open openings one at a time
   (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite; the offer is
   made in that same transaction, so a crash leaves the opening open for the next run) and
   walks the waiting entries in fair order: series sessions whose protocol window ends on or
   after the slot's day and soonest first (clinical priority), then everyone by position
   (first come unless staff reordered). The first entry with a matching slot that passes
   every booking rule gets it, held as a ``pending`` booking (``bookings.book(hold=True)``):
   the same Python check and the same exclusion constraints (pending rows included) as any
   booking, so nobody else can take it. ``WaitlistOffered`` then queues the offer message
   (reminder outbox, PHI-free) and the ``waitlist.offered`` webhook.
3. The patient (or staff for them) accepts: the hold is confirmed (the clinical gates asked
   again), the entry is filled, ``waitlist.filled`` goes out. Declining, or the hold running
   out (the same job, each lapsed offer claimed with ``SKIP LOCKED``), cancels the hold; its
   cancellation is a freed slot again, offered to the next entry (never twice to the same
   entry for the same start).

The offer row is locked by whoever decides it (accept, decline, expiry), so exactly one of
them wins; the hold booking makes two patients holding one slot impossible in the schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select, update

from service.domain.access.actor import SYSTEM, Actor, Role
from service.domain.availability import search
from service.domain.availability.events import ScheduleOpened
from service.domain.bookings import services as bookings
from service.domain.bookings.events import BookingCancelled, BookingConfirmed, BookingRescheduled
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.clinic.models import Location, ServiceType
from service.domain.errors import (
    DomainError,
    InvalidInput,
    InvalidState,
    NotFound,
    PreconditionFailed,
)
from service.domain.patients.models import Patient
from service.domain.patients.services import find_patient
from service.domain.providers.models import Provider
from service.domain.records import Page, paginate
from service.domain.reminders.planning import QuietHours
from service.domain.series import protocols
from service.domain.series.policy import policy as series_policy
from service.domain.time import in_zone, local_to_utc
from service.domain.waitlist.events import WaitlistFilled, WaitlistOffered
from service.domain.waitlist.models import (
    EntryStatus,
    OfferStatus,
    OpeningCause,
    OpeningStatus,
    TimeOfDay,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistOpening,
)
from service.domain.waitlist.policy import entries as entry_policy
from service.domain.waitlist.policy import offers as offer_policy
from service.uow import UnitOfWork

MAX_RANGE_DAYS = 180
# Local wall-clock parts of the day (in the location's zone), half-open.
PARTS_OF_DAY: dict[TimeOfDay, tuple[time, time]] = {
    TimeOfDay.MORNING: (time(6), time(12)),
    TimeOfDay.AFTERNOON: (time(12), time(17)),
    TimeOfDay.EVENING: (time(17), time(22)),
}
HOLD_NOTE = "Held for a waitlist offer"


# Joining and reading the list ----------------------------------------------------------


@dataclass(frozen=True)
class EntryRequest:
    patient_id: uuid.UUID | None
    service_type_id: uuid.UUID
    earliest_date: date
    latest_date: date
    provider_ids: Sequence[uuid.UUID] = ()
    location_id: uuid.UUID | None = None
    weekdays: Sequence[int] = ()
    times_of_day: Sequence[str] = ()
    series_id: uuid.UUID | None = None
    patient_state: str | None = None
    ride_home_confirmed: bool = False


def join_waitlist(uow: UnitOfWork, actor: Actor, request: EntryRequest, *,
                  today: date) -> WaitlistEntry:
    """Add an entry at the end of the list (a patient key: for itself)."""
    entry_policy.require(actor, "join")
    patient_id = actor.patient_id if actor.role is Role.PATIENT else request.patient_id
    if patient_id is None:
        raise InvalidInput("Name the patient who waits.", code="invalid_input")
    if request.earliest_date > request.latest_date:
        raise InvalidInput("The range must end on or after its first day.",
                           code="invalid_time_range")
    if request.latest_date < today:
        raise InvalidInput("The range is over already.", code="invalid_time_range")
    if (request.latest_date - request.earliest_date).days > MAX_RANGE_DAYS:
        raise InvalidInput(f"Wait at most {MAX_RANGE_DAYS} days at a time.",
                           code="range_too_long", max_days=MAX_RANGE_DAYS)

    def work() -> WaitlistEntry:
        session = uow.session
        patient = find_patient(uow, actor, patient_id)
        service_type = session.get(ServiceType, request.service_type_id)
        if service_type is None or not service_type.active:
            raise NotFound("No service type with this id.", code="service_type_not_found")
        for provider_id in request.provider_ids:
            if session.get(Provider, provider_id) is None:
                raise NotFound("No provider with this id.", code="provider_not_found")
        if request.location_id is not None and session.get(Location,
                                                           request.location_id) is None:
            raise NotFound("No location with this id.", code="location_not_found")
        keep_by = None
        if request.series_id is not None:
            series = series_policy.load(session, actor, request.series_id)
            if series.patient_id != patient.id:
                raise NotFound("No series with this id.", code="series_not_found")
            keep_by = _window_end(series) or request.latest_date
        position = (session.scalar(select(func.max(WaitlistEntry.position))) or 0) + 1
        entry = WaitlistEntry(
            patient_id=patient.id, service_type_id=service_type.id,
            provider_ids=sorted({str(p) for p in request.provider_ids}),
            location_id=request.location_id, earliest_date=max(request.earliest_date, today),
            latest_date=request.latest_date, weekdays=sorted(set(request.weekdays)),
            times_of_day=sorted(set(request.times_of_day)), series_id=request.series_id,
            keep_by=keep_by, patient_state=(request.patient_state or "").upper() or None,
            ride_home_confirmed=request.ride_home_confirmed, position=position,
            status=EntryStatus.WAITING, created_by_key_id=actor.key_id)
        session.add(entry)
        session.flush()
        return entry

    return uow.run(work)


def _window_end(series: Any) -> date | None:
    """The last day a session of this series keeps its protocol's window (None: none)."""
    protocol = protocols.PROTOCOLS.get(series.protocol)
    if protocol is None or protocol.window_days is None:
        return None
    return series.first_start.date() + timedelta(days=protocol.window_days - 1)


def list_entries(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                 status: list[EntryStatus] | None = None,
                 service_type_id: uuid.UUID | None = None,
                 patient_id: uuid.UUID | None = None) -> Page[WaitlistEntry]:
    """The list in queue order (position, then first come)."""
    query = entry_policy.visible(actor, select(WaitlistEntry)).order_by(
        WaitlistEntry.position, WaitlistEntry.created_at, WaitlistEntry.id)
    if status:
        query = query.where(WaitlistEntry.status.in_(status))
    if service_type_id is not None:
        query = query.where(WaitlistEntry.service_type_id == service_type_id)
    if patient_id is not None:
        query = query.where(WaitlistEntry.patient_id == patient_id)
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)


def get_entry(uow: UnitOfWork, actor: Actor, entry_id: uuid.UUID) -> WaitlistEntry:
    with uow:
        return entry_policy.load(uow.session, actor, entry_id)


def move_entry(uow: UnitOfWork, actor: Actor, entry_id: uuid.UUID, *, position: int,
               expected_version: int | None) -> WaitlistEntry:
    """Staff reorder: the entry takes ``position`` (1 = first) among the open entries; those
    from there on move one down."""
    entry_policy.require(actor, "reorder")

    def work() -> WaitlistEntry:
        session = uow.session
        entry = entry_policy.load(session, actor, entry_id, lock=True)
        if expected_version is not None and entry.version != expected_version:
            raise PreconditionFailed("The entry changed since you read it.",
                                     current_version=entry.version)
        ordered = [e for e in session.scalars(
            select(WaitlistEntry).where(WaitlistEntry.status.in_(
                (EntryStatus.WAITING, EntryStatus.OFFERED)), WaitlistEntry.id != entry.id)
            .order_by(WaitlistEntry.position, WaitlistEntry.created_at, WaitlistEntry.id)
            .with_for_update())]
        ordered.insert(max(0, min(position - 1, len(ordered))), entry)
        for index, record in enumerate(ordered, start=1):
            if record.position != index:
                record.position = index
        session.flush()
        return entry

    return uow.run(work)


def withdraw_entry(uow: UnitOfWork, actor: Actor, entry_id: uuid.UUID, *,
                   now: datetime) -> WaitlistEntry:
    """Leave the list; an open offer of the entry is declined (its hold released)."""
    entry_policy.require(actor, "withdraw")

    def work() -> WaitlistEntry:
        session = uow.session
        entry = entry_policy.load(session, actor, entry_id, lock=True)
        if entry.status not in (EntryStatus.WAITING, EntryStatus.OFFERED):
            raise InvalidState(f"A {entry.status.value} entry cannot be withdrawn.",
                               code="waitlist_entry_closed", entry_status=entry.status.value)
        for offer in session.scalars(select(WaitlistOffer).where(
                WaitlistOffer.entry_id == entry.id,
                WaitlistOffer.status == OfferStatus.OFFERED).with_for_update()):
            _release(uow, offer, OfferStatus.DECLINED, now=now)
        entry.status = EntryStatus.WITHDRAWN
        return entry

    return uow.run(work)


# Offers ----------------------------------------------------------------------------------


def list_offers(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                status: list[OfferStatus] | None = None,
                patient_id: uuid.UUID | None = None,
                entry_id: uuid.UUID | None = None) -> Page[WaitlistOffer]:
    query = offer_policy.visible(actor, select(WaitlistOffer)).order_by(
        WaitlistOffer.offered_at.desc(), WaitlistOffer.id)
    if status:
        query = query.where(WaitlistOffer.status.in_(status))
    if patient_id is not None:
        query = query.where(WaitlistOffer.patient_id == patient_id)
    if entry_id is not None:
        query = query.where(WaitlistOffer.entry_id == entry_id)
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)


def get_offer(uow: UnitOfWork, actor: Actor, offer_id: uuid.UUID) -> WaitlistOffer:
    with uow:
        return offer_policy.load(uow.session, actor, offer_id)


def _open_offer(uow: UnitOfWork, actor: Actor, offer_id: uuid.UUID, *,
                now: datetime) -> WaitlistOffer:
    """The offer, locked, if it is still open and its hold has not run out."""
    offer = offer_policy.load(uow.session, actor, offer_id, lock=True)
    if offer.status is not OfferStatus.OFFERED:
        raise InvalidState(f"The offer was {offer.status.value} already.",
                           code="offer_not_open", offer_status=offer.status.value)
    if now >= offer.expires_at:
        raise InvalidState("The offer's hold ran out.", code="offer_expired",
                           expired_at=offer.expires_at.isoformat())
    return offer


def accept_offer(uow: UnitOfWork, actor: Actor, offer_id: uuid.UUID, *,
                 now: datetime) -> WaitlistOffer:
    """Take the held slot: every booking rule is asked again (who, the clinical gates),
    then the hold is confirmed; ``fill_on_confirmation`` fills the entry."""
    offer_policy.require(actor, "accept")

    def work() -> WaitlistOffer:
        session = uow.session
        offer = _open_offer(uow, actor, offer_id, now=now)
        booking = session.scalar(select(Booking).where(Booking.id == offer.booking_id)
                                 .with_for_update())
        if booking is None or booking.status is not BookingStatus.PENDING:
            raise InvalidState("The held visit is gone.", code="offer_not_open",
                               offer_status=offer.status.value)
        entry = session.get(WaitlistEntry, offer.entry_id)
        bookings.prepare(uow, SYSTEM, bookings.BookingRequest(
            patient_id=booking.patient_id, provider_id=booking.provider_id,
            service_type_id=booking.service_type_id, location_id=booking.location_id,
            start=booking.starts_at, patient_state=booking.patient_state,
            ride_home_confirmed=entry.ride_home_confirmed or booking.ride_home_confirmed))
        bookings.apply_transition(uow, actor, booking, "confirm", now=now)
        return offer

    return uow.run(work)


def decline_offer(uow: UnitOfWork, actor: Actor, offer_id: uuid.UUID, *,
                  now: datetime) -> WaitlistOffer:
    """Let the slot go to the next patient; the entry keeps waiting for another slot."""
    offer_policy.require(actor, "decline")

    def work() -> WaitlistOffer:
        offer = _open_offer(uow, actor, offer_id, now=now)
        _release(uow, offer, OfferStatus.DECLINED, now=now)
        return offer

    return uow.run(work)


def _release(uow: UnitOfWork, offer: WaitlistOffer, outcome: OfferStatus, *,
             now: datetime) -> None:
    """Close an open offer (declined or expired) and cancel its hold: the cancellation is a
    freed slot again (``open_on_cancellation``), offered to the next entry."""
    session = uow.session
    offer.status = outcome
    offer.decided_at = now
    entry = session.get(WaitlistEntry, offer.entry_id, with_for_update=True)
    if entry is not None and entry.status is EntryStatus.OFFERED:
        entry.status = EntryStatus.WAITING
    booking = session.scalar(select(Booking).where(Booking.id == offer.booking_id)
                             .with_for_update())
    if booking is not None and booking.status is BookingStatus.PENDING:
        bookings.apply_transition(uow, SYSTEM, booking, "cancel", now=now,
                                  reason=f"Waitlist offer {outcome.value}")


# Handlers: freed time becomes an opening; a confirmed hold fills its entry ----------------


def _opening(uow: UnitOfWork, *, provider_id: uuid.UUID, location_id: uuid.UUID | None,
             starts_at: datetime, ends_at: datetime, cause: OpeningCause,
             freed_at: datetime) -> None:
    if ends_at <= max(starts_at, freed_at):
        return  # nothing ahead to offer
    uow.session.add(WaitlistOpening(
        provider_id=provider_id, location_id=location_id, starts_at=max(starts_at, freed_at),
        ends_at=ends_at, cause=cause, status=OpeningStatus.OPEN, freed_at=freed_at))


def open_on_cancellation(uow: UnitOfWork, event: BookingCancelled) -> None:
    """A cancelled visit frees its time (a released waitlist hold too). An offer whose hold
    was cancelled some other way (staff cancelled the pending booking) lapses."""
    session = uow.session
    booking = session.get(Booking, event.booking_id)
    for offer in session.scalars(select(WaitlistOffer).where(
            WaitlistOffer.booking_id == booking.id,
            WaitlistOffer.status == OfferStatus.OFFERED)):
        offer.status = OfferStatus.EXPIRED
        offer.decided_at = event.occurred_at
        entry = session.get(WaitlistEntry, offer.entry_id)
        if entry.status is EntryStatus.OFFERED:
            entry.status = EntryStatus.WAITING
    _opening(uow, provider_id=booking.provider_id, location_id=booking.location_id,
             starts_at=event.starts_at, ends_at=event.ends_at, cause=OpeningCause.CANCELLED,
             freed_at=event.occurred_at)


def open_on_reschedule(uow: UnitOfWork, event: BookingRescheduled) -> None:
    """A visit moved away frees the time it left."""
    if event.previous_starts_at is None or event.previous_ends_at is None:
        return
    if event.previous_starts_at == event.starts_at:
        return
    booking = uow.session.get(Booking, event.booking_id)
    _opening(uow, provider_id=booking.provider_id, location_id=booking.location_id,
             starts_at=event.previous_starts_at, ends_at=event.previous_ends_at,
             cause=OpeningCause.RESCHEDULED, freed_at=event.occurred_at)


def open_on_schedule(uow: UnitOfWork, event: ScheduleOpened) -> None:
    """New working hours or time off removed: the provider may be bookable there now."""
    _opening(uow, provider_id=event.provider_id, location_id=None,
             starts_at=event.starts_at, ends_at=event.ends_at,
             cause=OpeningCause(event.cause), freed_at=event.occurred_at)


def fill_on_confirmation(uow: UnitOfWork, event: BookingConfirmed) -> None:
    """A held offer confirmed (accepted here, or confirmed as a booking): the entry is
    filled."""
    session = uow.session
    offer = session.scalar(select(WaitlistOffer).where(
        WaitlistOffer.booking_id == event.booking_id,
        WaitlistOffer.status == OfferStatus.OFFERED))
    if offer is None:
        return
    offer.status = OfferStatus.ACCEPTED
    offer.decided_at = event.occurred_at
    entry = session.get(WaitlistEntry, offer.entry_id)
    entry.status = EntryStatus.FILLED
    uow.record(WaitlistFilled(offer_id=offer.id, entry_id=entry.id, booking_id=offer.booking_id,
                              starts_at=event.starts_at, ends_at=event.ends_at,
                              occurred_at=event.occurred_at))


# The scheduler's job ---------------------------------------------------------------------


@dataclass
class WaitlistRun:
    entries_expired: int = 0
    offers_expired: int = 0
    offered: int = 0
    unmatched: int = 0
    lags: list[float] | None = None  # seconds from freed to offered, per offer made


def run_waitlist(new_uow: Callable[[], UnitOfWork], *, now: Callable[[], datetime],
                 zone: str, hold: timedelta, quiet: QuietHours,
                 limit: int = 100) -> WaitlistRun:
    """One run of the ``waitlist`` job: entries past their range expire, lapsed offers are
    released, then open openings are offered (each in its own short transaction)."""
    run = WaitlistRun(lags=[])
    today = in_zone(now(), zone).date()
    uow = new_uow()

    def expire_entries() -> int:
        return uow.session.execute(
            update(WaitlistEntry)
            .where(WaitlistEntry.status == EntryStatus.WAITING,
                   WaitlistEntry.latest_date < today)
            .values(status=EntryStatus.EXPIRED)
            .execution_options(synchronize_session=False)).rowcount or 0

    run.entries_expired = uow.run(expire_entries)
    for _ in range(limit):
        if not _in_own_transaction(new_uow, lambda u: _expire_one(u, now())):
            break
        run.offers_expired += 1
    for _ in range(limit):
        outcome = _in_own_transaction(
            new_uow, lambda u: _offer_one(u, now(), zone=zone, hold=hold, quiet=quiet))
        if outcome is None:
            break
        if isinstance(outcome, WaitlistOffer):
            run.offered += 1
            run.lags.append((outcome.offered_at - outcome.freed_at).total_seconds())
        else:
            run.unmatched += 1
    return run


def _in_own_transaction(new_uow: Callable[[], UnitOfWork],
                        work: Callable[[UnitOfWork], Any]) -> Any:
    uow = new_uow()
    return uow.run(lambda: work(uow))


def _expire_one(uow: UnitOfWork, now: datetime) -> bool:
    offer = uow.session.scalar(
        select(WaitlistOffer)
        .where(WaitlistOffer.status == OfferStatus.OFFERED, WaitlistOffer.expires_at <= now)
        .order_by(WaitlistOffer.expires_at).limit(1).with_for_update(skip_locked=True))
    if offer is None:
        return False
    _release(uow, offer, OfferStatus.EXPIRED, now=now)
    return True


def _offer_one(uow: UnitOfWork, now: datetime, *, zone: str, hold: timedelta,
               quiet: QuietHours) -> WaitlistOffer | WaitlistOpening | None:
    """Claim the oldest open opening and offer it; None when there is none."""
    session = uow.session
    opening = session.scalar(
        select(WaitlistOpening).where(WaitlistOpening.status == OpeningStatus.OPEN)
        .order_by(WaitlistOpening.freed_at, WaitlistOpening.id).limit(1)
        .with_for_update(skip_locked=True))
    if opening is None:
        return None
    opening.processed_at = now
    for entry in _candidates(session, opening, zone=zone):
        slot = _matching_slot(session, entry, opening, now=now, zone=zone)
        if slot is None:
            continue
        locked = session.get(WaitlistEntry, entry.id, with_for_update=True,
                             populate_existing=True)
        if locked.status is not EntryStatus.WAITING:
            continue
        try:
            booking = bookings.book(uow, SYSTEM, bookings.BookingRequest(
                patient_id=entry.patient_id, provider_id=slot.provider_id,
                service_type_id=entry.service_type_id, location_id=slot.location_id,
                start=slot.start, patient_state=_state(session, entry),
                ride_home_confirmed=entry.ride_home_confirmed, hold=True, note=HOLD_NOTE),
                now=now)
        except DomainError:
            continue  # a booking rule the slot search does not ask (a clinical gate)
        patient = session.get(Patient, entry.patient_id)
        # The hold runs from when the message may go out (not in the patient's quiet hours).
        expires_at = quiet.next_allowed(now, patient.timezone) + hold
        offer = WaitlistOffer(
            entry_id=entry.id, opening_id=opening.id, booking_id=booking.id,
            patient_id=entry.patient_id, provider_id=booking.provider_id,
            starts_at=booking.starts_at, status=OfferStatus.OFFERED,
            freed_at=opening.freed_at, offered_at=now, expires_at=expires_at)
        session.add(offer)
        session.flush()
        locked.status = EntryStatus.OFFERED
        opening.status = OpeningStatus.OFFERED
        uow.record(WaitlistOffered(
            offer_id=offer.id, entry_id=entry.id, booking_id=booking.id,
            starts_at=booking.starts_at, ends_at=booking.ends_at, expires_at=expires_at,
            freed_at=opening.freed_at, occurred_at=now))
        return offer
    opening.status = OpeningStatus.UNMATCHED
    return opening


def _state(session: Any, entry: WaitlistEntry) -> str | None:
    if entry.patient_state:
        return entry.patient_state
    patient = session.get(Patient, entry.patient_id)
    return patient.home_state


def _candidates(session: Any, opening: WaitlistOpening, *, zone: str) -> list[WaitlistEntry]:
    """The waiting entries that could want this opening, in fair order: series sessions
    that keep their protocol window only with a slot this early (soonest window end
    first), then everyone by position, first come."""
    first_day = in_zone(opening.starts_at, zone).date()
    last_day = in_zone(opening.ends_at, zone).date()
    rows = session.scalars(
        select(WaitlistEntry).where(WaitlistEntry.status == EntryStatus.WAITING,
                                    WaitlistEntry.earliest_date <= last_day,
                                    WaitlistEntry.latest_date >= first_day))
    provider = str(opening.provider_id)
    wanted = [e for e in rows
              if (not e.provider_ids or provider in e.provider_ids)
              and (opening.location_id is None or e.location_id is None
                   or e.location_id == opening.location_id)
              and not _refused_before(session, e, opening)]

    def order(entry: WaitlistEntry) -> tuple[Any, ...]:
        urgent = entry.keep_by is not None and entry.keep_by >= first_day
        return (0 if urgent else 1, entry.keep_by if urgent else date.max, entry.position,
                entry.created_at, str(entry.id))

    return sorted(wanted, key=order)


def _refused_before(session: Any, entry: WaitlistEntry, opening: WaitlistOpening) -> bool:
    """The entry already had (and let go) an offer of a start in this opening."""
    return session.scalar(select(func.count()).select_from(WaitlistOffer).where(
        WaitlistOffer.entry_id == entry.id, WaitlistOffer.provider_id == opening.provider_id,
        WaitlistOffer.starts_at >= opening.starts_at, WaitlistOffer.starts_at < opening.ends_at,
        WaitlistOffer.status.in_((OfferStatus.DECLINED, OfferStatus.EXPIRED)))) > 0


def _matching_slot(session: Any, entry: WaitlistEntry, opening: WaitlistOpening, *,
                   now: datetime, zone: str) -> search.OfferedSlot | None:
    """The earliest slot of the opening that suits the entry (its range, days, parts of
    the day), with every slot rule applied (the slot search itself)."""
    service_type = session.get(ServiceType, entry.service_type_id)
    start = max(opening.starts_at, local_to_utc(entry.earliest_date, time(0), zone))
    end = min(opening.ends_at, local_to_utc(entry.latest_date + timedelta(days=1), time(0),
                                            zone))
    if end <= start or not service_type.active:
        return None
    try:
        found = search.search(
            session, service_type=service_type, start=start, end=end, now=now,
            provider_ids=[opening.provider_id],
            location_id=entry.location_id or opening.location_id,
            patient_id=entry.patient_id, patient_state=_state(session, entry), limit=200)
    except DomainError:
        return None
    zones: dict[uuid.UUID, str] = {}
    for slot in found.slots:
        if slot.location_id not in zones:
            zones[slot.location_id] = session.get(Location, slot.location_id).timezone
        local = in_zone(slot.start, zones[slot.location_id])
        if entry.weekdays and local.isoweekday() not in entry.weekdays:
            continue
        if entry.times_of_day and not any(
                PARTS_OF_DAY[TimeOfDay(part)][0] <= local.time().replace(tzinfo=None)
                < PARTS_OF_DAY[TimeOfDay(part)][1] for part in entry.times_of_day):
            continue
        return slot
    return None
