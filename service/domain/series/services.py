"""Treatment series use cases: preview, book all-or-nothing, read, cancel what remains, rebook.

Every session of a series is checked and booked by the booking module's own functions
(``prepare``, ``check_start``, ``book``), so a series obeys exactly the rules a single booking
does. Booking a series is one transaction: the first session that cannot be booked rolls back
every other one and the answer is ``series_conflict`` with the preview's per-session report.

A series can be booked with the preview's alternatives: ``sessions`` gives a start (and a
provider) for some sessions instead of the planned ones. Every booking rule applies to them,
and together with the others they must keep the protocol (``adherence.py``: 409
``protocol_spacing`` / ``protocol_window`` / ``protocol_rhythm``) unless a provider or an
admin confirms with a reason, recorded on the series.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from service.domain.access.actor import Actor
from service.domain.availability import placement, search
from service.domain.availability import slots as engine
from service.domain.bookings import services as bookings
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.clinic.models import Location, ServiceType
from service.domain.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    InvalidState,
    NotFound,
)
from service.domain.patients.services import find_patient
from service.domain.providers.licensing import Modality
from service.domain.records import Page, paginate
from service.domain.series import adherence, protocols
from service.domain.series.events import SeriesCreated
from service.domain.series.models import (
    ProtocolOverrideAction,
    SeriesProtocolOverride,
    SeriesStatus,
    TreatmentSeries,
)
from service.domain.series.policy import policy
from service.domain.series.protocols import PROTOCOLS, Protocol
from service.domain.time import in_zone, local_to_utc
from service.uow import UnitOfWork

DAY = timedelta(days=1)
ALTERNATIVE_DAYS = 3  # an alternative start lies at most this many days from the proposed one
REBOOK_DAYS = 21  # a missed session's rebook is looked for this many days ahead
REBOOK_SUGGESTIONS = 4  # at most this many missed sessions get a suggestion per read
REACH = timedelta(days=731)  # a first start farther from now is never bookable (horizon)
PREVIOUS_REACH = timedelta(days=366)  # a booster's previous session is at most this old
SEARCH_LIMIT = 2000

SCHEDULED = (BookingStatus.PENDING, BookingStatus.BOOKED, BookingStatus.CHECKED_IN)
KEPT = (*SCHEDULED, BookingStatus.FULFILLED)  # sessions that count towards the protocol
CANCELLABLE = (BookingStatus.PENDING, BookingStatus.BOOKED)  # "cancel all remaining"

# A booking rule's code -> the status a previewed session shows.
STATUS_OF_CODE = {
    "slot_unavailable": "conflict",
    "outside_working_hours": "outside_hours",
    "provider_not_licensed": "unlicensed",
    "patient_location_not_covered": "unlicensed",
    "outside_booking_window": "outside_booking_window",
    "misaligned_start": "misaligned_start",
}
# With any licensed provider, the failure reported is the one closest to bookable.
STATUS_RANK = {"chair_full": 0, "conflict": 1, "unlicensed": 2, "outside_hours": 3,
               "misaligned_start": 4, "outside_booking_window": 5}
TAKEN = {"provider": "the provider is booked then",
         "patient": "the patient has another visit then",
         "chair": "every treatment chair is taken then"}


class SeriesConflict(Conflict):
    code = "series_conflict"
    title = "The series cannot be booked"


@dataclass(frozen=True)
class SessionStart:
    """A session's start chosen instead of the planned one (e.g. the preview's
    alternative), optionally with its provider."""

    index: int  # 1-based, as the preview numbers the sessions
    start: datetime
    provider_id: uuid.UUID | None = None


@dataclass(frozen=True)
class SeriesRequest:
    patient_id: uuid.UUID
    service_type_id: uuid.UUID
    first_start: datetime
    protocol: str | None = None  # a code of PROTOCOLS, or
    rrule: str | None = None  # an RFC 5545 RRULE (custom recurrence)
    provider_id: uuid.UUID | None = None  # None: any licensed provider
    location_id: uuid.UUID | None = None  # None: the one location offering the service
    preferred_weekdays: tuple[int, ...] = ()
    preferred_time: time | None = None  # local wall-clock time (default: first_start's)
    previous_session: datetime | None = None  # booster: the session it follows
    patient_state: str | None = None
    ride_home_confirmed: bool = False
    hold: bool = False
    note: str | None = None
    sessions: tuple[SessionStart, ...] = ()  # chosen starts instead of the planned ones
    override_reason: str | None = None  # a provider's or admin's reason to break the protocol


@dataclass
class Occurrence:
    """One proposed session of a series, as the preview reports it."""

    index: int  # 1-based
    start: datetime  # in the location's zone
    end: datetime
    status: str = "ok"
    code: str | None = None
    reason: str | None = None
    provider_id: uuid.UUID | None = None
    alternative: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "start": self.start.isoformat(),
                "end": self.end.isoformat(), "status": self.status, "code": self.code,
                "reason": self.reason,
                "provider_id": str(self.provider_id) if self.provider_id else None,
                "alternative": self.alternative}


@dataclass
class Preview:
    protocol: str
    rrule: str | None
    timezone: str
    patient_id: uuid.UUID
    service_type_id: uuid.UUID
    location_id: uuid.UUID
    provider_id: uuid.UUID | None
    previous_session: datetime | None
    occurrences: list[Occurrence]

    @property
    def bookable(self) -> bool:
        return all(o.ok for o in self.occurrences)


@dataclass
class SessionView:
    """A booking of the series, with a suggested rebook when it was missed."""

    booking: Booking
    start: datetime  # in the location's zone
    end: datetime
    suggested_rebook: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "booking":
            raise AttributeError(name)
        return getattr(self.booking, name)


@dataclass
class SeriesView:
    """A series with its sessions and its progress against the protocol."""

    series: TreatmentSeries
    timezone: str
    occurrences: list[SessionView]
    progress: dict[str, int]
    next_due: datetime | None
    protocol_window: dict[str, Any]
    protocol_overrides: list[dict[str, Any]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        if name == "series":
            raise AttributeError(name)
        return getattr(self.series, name)


# Reading the catalogue -------------------------------------------------------------------


def list_protocols(*, page: int, page_size: int) -> Page[Protocol]:
    items = list(PROTOCOLS.values())
    return Page(items=items[(page - 1) * page_size:page * page_size], total=len(items))


# Planning: which days, at what time, with whom --------------------------------------------


@dataclass
class _Plan:
    request: SeriesRequest
    protocol: Protocol
    service_type: ServiceType
    location: Location
    at: time
    anchor: date
    previous_at: datetime | None
    days: list[date]
    starts: list[datetime]  # UTC
    provider_ids: list[uuid.UUID]  # in order of preference
    any_provider: bool
    planned_first: datetime = field(init=False)  # the first start the protocol planned (UTC)
    chosen_providers: dict[int, uuid.UUID] = field(default_factory=dict)  # 0-based index
    breaches: list[adherence.Breach] = field(default_factory=list)  # confirmed by override
    override_reason: str | None = None

    def __post_init__(self) -> None:
        self.planned_first = self.starts[0]

    @property
    def zone(self) -> str:
        return self.location.timezone

    @property
    def previous(self) -> date | None:
        return None if self.previous_at is None else in_zone(self.previous_at, self.zone).date()

    def local_day(self, instant: datetime) -> date:
        return in_zone(instant, self.zone).date()


def _location(session, service_type: ServiceType, location_id: uuid.UUID | None  # type: ignore[no-untyped-def]
              ) -> Location:
    if location_id is not None:
        location = session.get(Location, location_id)
        if location is None:
            raise NotFound("No location with this id.", code="location_not_found")
        return location
    offering = [loc for loc in session.scalars(select(Location).where(Location.active.is_(True))
                                               .order_by(Location.name, Location.id))
                if search.location_offers(loc, service_type)]
    if len(offering) != 1:
        raise InvalidInput(f"{len(offering)} locations offer this service: name one in "
                           "location_id.", code="location_required",
                           location_ids=[str(loc.id) for loc in offering])
    return offering[0]


def _providers(session, actor: Actor, request: SeriesRequest, service_type: ServiceType,  # type: ignore[no-untyped-def]
               location: Location) -> tuple[list[uuid.UUID], bool]:
    """The providers to try, in order, and whether any licensed provider will do."""
    chosen = policy.provider_for(actor, request.provider_id)
    if chosen is not None:
        return [chosen], False
    providers, _ = search.candidates(session, service_type, location_id=location.id)
    if not providers:
        raise Conflict("No active provider offers this service at this location.",
                       code="no_provider_available")
    return [p.id for p in sorted(providers, key=lambda p: (p.name, str(p.id)))], True


def _latest_treatment(session, patient_id: uuid.UUID, before: datetime  # type: ignore[no-untyped-def]
                      ) -> datetime | None:
    """The start of the patient's latest fulfilled or booked treatment session before a time."""
    return session.scalar(
        select(Booking.starts_at).join(ServiceType, ServiceType.id == Booking.service_type_id)
        .where(Booking.patient_id == patient_id,
               Booking.status.in_([BookingStatus.FULFILLED, BookingStatus.CHECKED_IN,
                                   BookingStatus.BOOKED]),
               ServiceType.modality == Modality.IN_PERSON,
               ServiceType.needs_clearance.is_(True), Booking.starts_at < before)
        .order_by(Booking.starts_at.desc()).limit(1))


def _check_setting(protocol: Protocol, service_type: ServiceType) -> None:
    """A home protocol plans the telehealth check-ins of the pill taken at home; a protocol of
    sessions in the clinic never plans them."""
    if protocol.home != service_type.at_home:
        raise InvalidInput(
            f"The {protocol.code} protocol plans "
            + ("the telehealth check-ins of a home protocol: book it with an at-home service "
               "type." if protocol.home else "sessions in the clinic: an at-home service "
               "type's check-ins follow a home protocol (home-check-ins)."),
            code="protocol_service_mismatch", protocol=protocol.code,
            at_home=service_type.at_home)


def _plan(uow: UnitOfWork, actor: Actor, request: SeriesRequest, now: datetime) -> _Plan:
    session = uow.session
    if abs(request.first_start - now) > REACH:
        raise InvalidInput("The first start is more than two years from today.",
                           code="outside_booking_window")
    patient = find_patient(uow, actor, request.patient_id)
    service_type = session.get(ServiceType, request.service_type_id)
    if service_type is None:
        raise NotFound("No service type with this id.", code="service_type_not_found")
    location = _location(session, service_type, request.location_id)
    zone = location.timezone
    local_first = in_zone(request.first_start, zone)
    at = request.preferred_time or local_first.time()
    first_day = local_first.date()
    previous_at: datetime | None = None
    if request.rrule is not None:
        days = protocols.expand_rrule(request.rrule, first_day, at, zone)
        protocol = protocols.custom_protocol(days)
    else:
        protocol = PROTOCOLS[request.protocol or ""]
        _check_setting(protocol, service_type)
        previous = None
        if protocol.after_previous is not None:
            previous_at = request.previous_session or _latest_treatment(
                session, patient.id, request.first_start)
            if previous_at is None:
                raise InvalidInput("A booster follows a previous treatment session: the "
                                   "patient has none, so give previous_session.",
                                   code="previous_session_required")
            if not timedelta(0) < request.first_start - previous_at <= PREVIOUS_REACH:
                raise protocols.ProtocolUnsatisfiable(
                    "A booster comes 3 to 6 weeks after the previous session.")
            previous = in_zone(previous_at, zone).date()
        days = protocols.plan_days(protocol, first_day, weekdays=request.preferred_weekdays,
                                   previous=previous)
    provider_ids, any_provider = _providers(session, actor, request, service_type, location)
    plan = _Plan(request=request, protocol=protocol, service_type=service_type,
                 location=location, at=at, anchor=first_day, previous_at=previous_at,
                 days=days, starts=protocols.starts(days, at, zone), provider_ids=provider_ids,
                 any_provider=any_provider,
                 override_reason=adherence.confirmed(actor, request.override_reason))
    _choose(plan, now)
    return plan


def _choose(plan: _Plan, now: datetime) -> None:
    """The starts the request chose (the preview's alternatives) replace the planned ones;
    together with the others they must keep the protocol, unless the override confirms."""
    chosen = plan.request.sessions
    count = len(plan.starts)
    for session in chosen:
        index = session.index - 1
        if not 0 <= index < count:
            raise InvalidInput(f"The series has {count} sessions: there is no session "
                               f"{session.index}.", code="invalid_input", field="sessions")
        if sum(other.index == session.index for other in chosen) > 1:
            raise InvalidInput(f"Session {session.index} is given twice.",
                               code="invalid_input", field="sessions")
        if abs(session.start - now) > REACH:
            raise InvalidInput(f"Session {session.index} is more than two years from today.",
                               code="outside_booking_window", field="sessions")
        if session.provider_id is not None:
            if session.provider_id not in plan.provider_ids:
                raise InvalidInput(
                    f"Session {session.index} names a provider the series cannot book (the "
                    "series' provider, or one offering this service at this location).",
                    code="invalid_input", field="sessions")
            plan.chosen_providers[index] = session.provider_id
        plan.starts[index] = session.start
        plan.days[index] = plan.local_day(session.start)
    if not chosen:
        return
    broken = adherence.breaches(protocols.check_days(
        plan.protocol, plan.days, anchor=plan.anchor, previous=plan.previous, complete=False))
    if not broken:
        return
    if plan.override_reason is None:
        concerned = {day for breach in broken for day in breach.days}
        raise adherence.refusal(broken, [
            {"index": index + 1, "start": in_zone(start, plan.zone).isoformat()}
            for index, start in enumerate(plan.starts) if plan.local_day(start) in concerned],
            what="Booking the series with these starts")
    plan.breaches = broken


def _booking_request(plan: _Plan, provider_id: uuid.UUID, start: datetime
                     ) -> bookings.BookingRequest:
    request = plan.request
    return bookings.BookingRequest(
        patient_id=request.patient_id, provider_id=provider_id,
        service_type_id=plan.service_type.id, location_id=plan.location.id, start=start,
        patient_state=request.patient_state, ride_home_confirmed=request.ride_home_confirmed,
        hold=request.hold, note=request.note)


# Checking each session with the booking's rules ------------------------------------------


@dataclass
class _Held:
    """What an accepted session of the series holds (so the next ones do not collide)."""

    index: int
    provider_id: uuid.UUID
    patient: engine.Interval
    provider: engine.Interval


@dataclass
class _Assessor:
    uow: UnitOfWork
    actor: Actor
    plan: _Plan
    now: datetime
    prepared: dict[uuid.UUID, bookings.Prepared] = field(default_factory=dict)

    @property
    def rules(self) -> engine.SlotRules:
        return search.rules_of(self.plan.service_type)

    def prepare(self, provider_id: uuid.UUID) -> bookings.Prepared:
        if provider_id not in self.prepared:
            self.prepared[provider_id] = bookings.prepare(
                self.uow, self.actor, _booking_request(self.plan, provider_id,
                                                       self.plan.starts[0]))
        return self.prepared[provider_id]

    @property
    def patient_state(self) -> str:
        return self.prepare(self.plan.provider_ids[0]).patient_state

    def occurrence(self, index: int, start: datetime) -> Occurrence:
        zone = self.plan.zone
        return Occurrence(index=index + 1, start=in_zone(start, zone),
                          end=in_zone(start + self.rules.duration, zone))

    def assess(self) -> list[Occurrence]:
        """Each session's status, with the same checks the booking makes."""
        self.prepare(self.plan.provider_ids[0])  # the rules any start must meet, first
        held: list[_Held] = []
        result: list[Occurrence] = []
        preferred: uuid.UUID | None = None
        for index, start in enumerate(self.plan.starts):
            occurrence = self.occurrence(index, start)
            patient_block = engine.patient_block(start, self.rules)
            provider_block = engine.provider_block(start, self.rules)
            clash = next((h for h in held if h.patient.overlaps(patient_block)), None)
            chosen = self.plan.chosen_providers.get(index)
            order = ([chosen] if chosen is not None
                     else sorted(self.plan.provider_ids, key=lambda p: p != preferred))
            failures: list[Occurrence] = []
            for provider_id in order if clash is None else []:
                same = next((h for h in held if h.provider_id == provider_id
                             and h.provider.overlaps(provider_block)), None)
                if same is not None:
                    failures.append(self._overlap(occurrence, same, provider_id))
                    continue
                try:
                    bookings.check_start(self.uow, self.prepare(provider_id), start,
                                         now=self.now)
                except DomainError as error:
                    if error.code not in placement.START_RULES:
                        raise
                    failures.append(self._failure(occurrence, error, provider_id))
                    continue
                occurrence.provider_id = preferred = provider_id
                held.append(_Held(index, provider_id, patient_block, provider_block))
                break
            else:
                if clash is not None:
                    failures.append(self._overlap(occurrence, clash, None))
                occurrence = min(failures, key=lambda o: STATUS_RANK.get(o.status, 99))
                if self.plan.any_provider:
                    occurrence.provider_id = None
            result.append(occurrence)
        return result

    def _overlap(self, occurrence: Occurrence, other: _Held, provider_id: uuid.UUID | None
                 ) -> Occurrence:
        return dataclasses.replace(
            occurrence, status="conflict", code="slot_unavailable", provider_id=provider_id,
            reason=f"It overlaps session {other.index + 1} of this series.")

    def _failure(self, occurrence: Occurrence, error: DomainError, provider_id: uuid.UUID
                 ) -> Occurrence:
        status = STATUS_OF_CODE.get(error.code, error.code)
        reason = error.detail
        if isinstance(error, placement.SlotUnavailable) and error.blocked_by:
            status = "chair_full" if error.blocked_by == ("chair",) else status
            reason = "; ".join(TAKEN[b] for b in error.blocked_by)
            reason = reason[0].upper() + reason[1:] + "."
        return dataclasses.replace(occurrence, status=status, code=error.code, reason=reason,
                                   provider_id=provider_id)

    def add_alternatives(self, occurrences: list[Occurrence]) -> None:
        for index, occurrence in enumerate(occurrences):
            if not occurrence.ok:
                occurrence.alternative = self.alternative(index)

    def alternative(self, index: int) -> dict[str, Any] | None:
        """The free start nearest the proposed one that keeps the protocol's spacing and
        window, the other sessions staying where they are."""
        plan = self.plan
        day = plan.days[index]
        others = plan.days[:index] + plan.days[index + 1:]
        days = {day + k * DAY for k in range(-ALTERNATIVE_DAYS, ALTERNATIVE_DAYS + 1)
                if protocols.fits(plan.protocol, [*others, day + k * DAY], anchor=plan.anchor,
                                  previous=plan.previous)}
        if not days:
            return None
        proposed = plan.starts[index]
        found = search.search(
            self.uow.session, service_type=plan.service_type,
            start=local_to_utc(min(days), time(0), plan.zone),
            end=local_to_utc(max(days) + DAY, time(0), plan.zone), now=self.now,
            provider_ids=plan.provider_ids, location_id=plan.location.id,
            patient_id=plan.request.patient_id, patient_state=self.patient_state,
            limit=SEARCH_LIMIT).slots
        rules = self.rules
        taken = [engine.patient_block(s, rules) for j, s in enumerate(plan.starts) if j != index]
        fitting = [slot for slot in found if plan.local_day(slot.start) in days
                   and not any(block.overlaps(engine.patient_block(slot.start, rules))
                               for block in taken)]
        if not fitting:
            return None
        best = min(fitting, key=lambda s: (abs(s.start - proposed), s.start))
        return _slot(best, plan.zone)


def _slot(slot: search.OfferedSlot, zone: str) -> dict[str, Any]:
    return {"start": in_zone(slot.start, zone).isoformat(),
            "end": in_zone(slot.end, zone).isoformat(),
            "provider_id": str(slot.provider_id), "location_id": str(slot.location_id)}


def _preview(uow: UnitOfWork, actor: Actor, request: SeriesRequest, now: datetime
             ) -> tuple[_Plan, list[Occurrence]]:
    plan = _plan(uow, actor, request, now)
    assessor = _Assessor(uow, actor, plan, now)
    occurrences = assessor.assess()
    assessor.add_alternatives(occurrences)
    return plan, occurrences


def _as_preview(plan: _Plan, occurrences: list[Occurrence]) -> Preview:
    request = plan.request
    return Preview(
        protocol=plan.protocol.code, rrule=request.rrule, timezone=plan.zone,
        patient_id=request.patient_id, service_type_id=plan.service_type.id,
        location_id=plan.location.id,
        provider_id=None if plan.any_provider else plan.provider_ids[0],
        previous_session=plan.previous_at, occurrences=occurrences)


def _conflict(occurrences: list[Occurrence]) -> SeriesConflict:
    failing = [o.index for o in occurrences if not o.ok]
    return SeriesConflict(
        f"Session(s) {', '.join(map(str, failing))} cannot be booked; nothing was booked. "
        "See occurrences for each session's status and nearest alternative.",
        occurrences=[o.as_dict() for o in occurrences], bookable=False)


# Use cases -------------------------------------------------------------------------------


def preview_series(uow: UnitOfWork, actor: Actor, request: SeriesRequest, *,
                   now: datetime) -> Preview:
    """Each proposed session with its status and nearest alternative. Writes nothing."""
    with uow:
        return _as_preview(*_preview(uow, actor, request, now))


def create_series(uow: UnitOfWork, actor: Actor, request: SeriesRequest, *,
                  now: datetime) -> SeriesView:
    """Book every session of the series in one transaction, or none."""
    writing = False

    def work() -> SeriesView:
        nonlocal writing
        plan = _plan(uow, actor, request, now)
        assessor = _Assessor(uow, actor, plan, now)
        occurrences = assessor.assess()
        if not all(o.ok for o in occurrences):
            assessor.add_alternatives(occurrences)
            raise _conflict(occurrences)
        series = TreatmentSeries(
            patient_id=request.patient_id,
            provider_id=None if plan.any_provider else plan.provider_ids[0],
            service_type_id=plan.service_type.id, location_id=plan.location.id,
            protocol=plan.protocol.code, rrule=request.rrule, status=SeriesStatus.ACTIVE,
            planned_sessions=len(plan.starts), first_start=plan.planned_first,
            previous_session_at=plan.previous_at, created_by_key_id=actor.key_id)
        writing = True
        uow.session.add(series)
        uow.session.flush()
        for occurrence, start in zip(occurrences, plan.starts, strict=True):
            bookings.book(uow, actor, _booking_request(plan, occurrence.provider_id, start),  # type: ignore[arg-type]
                          now=now, series_id=series.id)
        if plan.breaches:
            adherence.record_override(uow, actor, series, ProtocolOverrideAction.BOOK,
                                      plan.breaches, plan.override_reason or "", now=now)
        uow.record(SeriesCreated(series_id=series.id, occurred_at=now))
        return _view(uow, series, now)

    try:
        return uow.run(work)
    except DomainError as error:
        if not writing or error.code not in placement.START_RULES:
            raise
        # Someone booked one of these times between the check and the insert (on PostgreSQL
        # the exclusion constraint refused it): nothing was written; report afresh.
        with uow:
            _, occurrences = _preview(uow, actor, request, now)
        raise _conflict(occurrences) from error


def _series(uow: UnitOfWork, actor: Actor, series_id: uuid.UUID, *, lock: bool = False
            ) -> TreatmentSeries:
    return policy.load(uow.session, actor, series_id, lock=lock)


def get_series(uow: UnitOfWork, actor: Actor, series_id: uuid.UUID, *,
               now: datetime) -> SeriesView:
    with uow:
        return _view(uow, _series(uow, actor, series_id), now)


def list_series(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                patient_id: uuid.UUID | None = None, provider_id: uuid.UUID | None = None,
                status: SeriesStatus | None = None) -> Page[TreatmentSeries]:
    query = policy.visible(actor, select(TreatmentSeries)).order_by(
        TreatmentSeries.created_at.desc(), TreatmentSeries.id)
    if patient_id is not None:
        query = query.where(TreatmentSeries.patient_id == patient_id)
    if provider_id is not None:
        query = query.where(TreatmentSeries.provider_id == provider_id)
    if status is not None:
        query = query.where(TreatmentSeries.status == status)
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)


def cancel_series(uow: UnitOfWork, actor: Actor, series_id: uuid.UUID, *, reason: str,
                  now: datetime) -> SeriesView:
    """Cancel every remaining (pending or booked) session; fulfilled ones stay as they are."""

    def work() -> SeriesView:
        series = _series(uow, actor, series_id, lock=True)
        policy.require(actor, "cancel_remaining")
        if series.status is SeriesStatus.CANCELLED:
            raise InvalidState("The series is already cancelled.", code="series_not_active")
        if not reason.strip():
            raise InvalidInput("A cancellation needs a reason.", code="invalid_input")
        remaining = list(uow.session.scalars(
            select(Booking).where(Booking.series_id == series.id,
                                  Booking.status.in_(CANCELLABLE))
            .order_by(Booking.starts_at).with_for_update()))
        policy.check_remaining(actor, remaining)
        # Cancelled first: a series given up has no protocol left for its sessions to keep.
        series.status = SeriesStatus.CANCELLED
        series.cancel_reason = reason.strip()
        series.cancelled_at = now
        uow.session.flush()
        for booking in remaining:
            bookings.apply_transition(uow, actor, booking, "cancel", now=now, reason=reason)
        uow.session.flush()
        return _view(uow, series, now)

    return uow.run(work)


def add_session(uow: UnitOfWork, actor: Actor, series_id: uuid.UUID, *, start: datetime,
                now: datetime, provider_id: uuid.UUID | None = None,
                patient_state: str | None = None, ride_home_confirmed: bool = False,
                note: str | None = None) -> Booking:
    """Book one more session into the series (a missed or cancelled one, made up), with the
    booking's rules; never more live sessions than the series plans."""
    with bookings.offering_alternatives(uow, now=now) as asked:

        def work() -> Booking:
            series = _series(uow, actor, series_id, lock=True)
            if series.status is SeriesStatus.CANCELLED:
                raise InvalidState("The series is cancelled.", code="series_not_active")
            rows = _sessions(uow, series)
            if (sum(b.status in KEPT for b in rows) >= series.planned_sessions
                    or len(rows) >= 2 * series.planned_sessions):
                raise Conflict("Every planned session is booked or done (or the series "
                               "already made up as many as it plans); reschedule one instead.",
                               code="series_complete", planned_sessions=series.planned_sessions)
            missed = [b for b in rows if b.status not in KEPT]
            latest = missed[-1] if missed else (rows[-1] if rows else None)
            provider = provider_id or series.provider_id or (latest and latest.provider_id)
            if provider is None:
                raise InvalidInput("Name the provider of the session.", code="invalid_input")
            request = bookings.BookingRequest(
                patient_id=series.patient_id, provider_id=provider,
                service_type_id=series.service_type_id, location_id=series.location_id,
                start=start, patient_state=patient_state or (latest and latest.patient_state),
                ride_home_confirmed=ride_home_confirmed, note=note)
            asked.wanted = bookings.wanted(request)
            return bookings.book(uow, actor, request, now=now, series_id=series.id)

        return uow.run(work)


# The series as it stands -----------------------------------------------------------------


def _sessions(uow: UnitOfWork, series: TreatmentSeries) -> list[Booking]:
    return list(uow.session.scalars(select(Booking).where(Booking.series_id == series.id)
                                    .order_by(Booking.starts_at, Booking.id)))


def _view(uow: UnitOfWork, series: TreatmentSeries, now: datetime) -> SeriesView:
    session = uow.session
    location = session.get(Location, series.location_id)
    zone = location.timezone
    rows = _sessions(uow, series)
    protocol = adherence.protocol_of(series, zone)
    anchor = in_zone(series.first_start, zone).date()
    previous = (in_zone(series.previous_session_at, zone).date()
                if series.previous_session_at else None)
    kept_days = [in_zone(b.starts_at, zone).date() for b in rows if b.status in KEPT]
    problems = protocols.check_days(protocol, kept_days, anchor=anchor, previous=previous)
    window = protocols.window_of(protocol, kept_days, anchor=anchor, previous=previous)
    views = [SessionView(b, in_zone(b.starts_at, zone), in_zone(b.ends_at, zone)) for b in rows]
    missing = series.planned_sessions - len(kept_days)
    if series.status is SeriesStatus.ACTIVE and missing > 0:
        service_type = session.get(ServiceType, series.service_type_id)
        planned = list(kept_days)
        # The latest no-shows are the ones not made up yet (a made-up session is a new one).
        missed = [view for view in views if view.status is BookingStatus.NOSHOW]
        for view in missed[-min(missing, REBOOK_SUGGESTIONS):] if missed else []:
            view.suggested_rebook = _rebook(uow, series, service_type, location, protocol,
                                            planned, anchor, previous, view.booking, now)
            if view.suggested_rebook is not None:
                planned.append(date.fromisoformat(view.suggested_rebook["start"][:10]))
    scheduled = [b for b in rows if b.status in SCHEDULED]
    return SeriesView(
        series=series, timezone=zone, occurrences=views,
        progress={
            "planned": series.planned_sessions,
            "completed": sum(b.status is BookingStatus.FULFILLED for b in rows),
            "remaining": len(scheduled),
            "missed": sum(b.status is BookingStatus.NOSHOW for b in rows),
            "cancelled": sum(b.status is BookingStatus.CANCELLED for b in rows),
        },
        next_due=in_zone(scheduled[0].starts_at, zone) if scheduled else None,
        protocol_window={
            "met": not problems,
            "first_day": window[0] if window else None,
            "last_day": window[1] if window else None,
            "issues": [p.message for p in problems],
        },
        protocol_overrides=[_override(o, zone) for o in adherence.overrides_of(uow, series)])


def _override(record: SeriesProtocolOverride, zone: str) -> dict[str, Any]:
    return {"id": record.id, "action": record.action.value, "booking_id": record.booking_id,
            "rules": record.rules.split(","), "issues": record.issues.split("; "),
            "session_start": (in_zone(record.session_start, zone)
                              if record.session_start else None),
            "reason": record.reason, "actor_key_id": record.actor_key_id,
            "confirmed_at": in_zone(record.created_at, zone)}


def _rebook(uow: UnitOfWork, series: TreatmentSeries, service_type: ServiceType,
            location: Location, protocol: Protocol, planned: list[date], anchor: date,
            previous: date | None, missed: Booking, now: datetime) -> dict[str, Any] | None:
    """The earliest free start for a missed session that keeps the protocol's spacing and
    window (``keeps_window``), else simply the earliest free start."""
    zone = location.timezone
    today = in_zone(now, zone).date()
    ahead = [today + k * DAY for k in range(REBOOK_DAYS + 1)]
    keeping = [d for d in ahead
               if protocols.fits(protocol, [*planned, d], anchor=anchor, previous=previous)]
    for days, keeps in ((keeping, True), (ahead, False)):
        if not days:
            continue
        wanted = set(days)
        for provider_ids in ([missed.provider_id], None):
            found = search.search(
                uow.session, service_type=service_type,
                start=local_to_utc(min(days), time(0), zone),
                end=local_to_utc(max(days) + DAY, time(0), zone), now=now,
                provider_ids=provider_ids, location_id=location.id,
                patient_id=series.patient_id, patient_state=missed.patient_state,
                limit=SEARCH_LIMIT).slots
            slot = next((s for s in found if in_zone(s.start, zone).date() in wanted), None)
            if slot is not None:
                return {**_slot(slot, zone), "keeps_window": keeps}
    return None
