"""Booking use cases: create, reschedule, the FHIR status transitions, and reads.

Every rule the slot search applies is re-checked here, at booking time, inside the write
transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: exclusion constraints catch the race the
check cannot see). A taken slot answers ``slot_unavailable`` with the next free slots.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.domain.access.actor import Actor, Role
from service.domain.availability import search
from service.domain.availability import slots as engine
from service.domain.bookings import events
from service.domain.bookings.history import BookingEvent
from service.domain.bookings.models import (
    CHAIR_OVERLAP,
    PATIENT_OVERLAP,
    PROVIDER_OVERLAP,
    Booking,
    BookingStatus,
)
from service.domain.clinic.models import Location, ServiceType
from service.domain.consultations import vitals
from service.domain.consultations.models import (
    ClearanceDecision,
    ClearanceStatus,
    Screening,
    SessionHold,
    TelehealthVisit,
    VitalSign,
)
from service.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidState,
    NotFound,
    PreconditionFailed,
    register_constraint,
)
from service.domain.patients.models import Patient
from service.domain.patients.services import find_patient
from service.domain.providers.licensing import (
    ARIZONA,
    Credential,
    Modality,
    may_practice,
    state_jurisdiction,
)
from service.domain.providers.models import Provider
from service.domain.records import Page, paginate
from service.domain.time import in_zone
from service.uow import UnitOfWork

ALTERNATIVES = 3
ALTERNATIVES_SEARCH_DAYS = 14


class SlotUnavailable(Conflict):
    code = "slot_unavailable"
    title = "The slot is no longer available"
    # What the Python check found taken: "provider", "patient", "chair" (empty when the
    # database's constraint caught it). Not part of the answer: it never names who.
    blocked_by: tuple[str, ...] = ()


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


# Visibility ------------------------------------------------------------------------------


def visible_bookings(actor: Actor, query):  # type: ignore[no-untyped-def]
    if actor.role is Role.PATIENT:
        return query.where(Booking.patient_id == actor.patient_id)
    if actor.role is Role.PROVIDER:
        return query.where(Booking.provider_id == actor.provider_id)
    return query


def _booking(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *, lock: bool = False
             ) -> Booking:
    query = visible_bookings(actor, select(Booking)).where(Booking.id == booking_id)
    if lock:
        query = query.with_for_update()
    booking = uow.session.scalar(query)
    if booking is None:
        raise NotFound("No booking with this id.", code="booking_not_found")
    return booking


def find_booking(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                 lock: bool = False) -> Booking:
    """The booking, if the actor may see it (for use inside a unit of work)."""
    return _booking(uow, actor, booking_id, lock=lock)


# Rules checked at booking time -----------------------------------------------------------


@dataclass
class _Parties:
    patient: Patient
    provider: Provider
    service_type: ServiceType
    location: Location


def _parties(uow: UnitOfWork, actor: Actor, request: BookingRequest) -> _Parties:
    session = uow.session
    patient = find_patient(uow, actor, request.patient_id)
    if actor.role is Role.PROVIDER and request.provider_id != actor.provider_id:
        raise NotFound("No provider with this id.", code="provider_not_found")
    provider = session.get(Provider, request.provider_id)
    if provider is None:
        raise NotFound("No provider with this id.", code="provider_not_found")
    service_type = session.get(ServiceType, request.service_type_id)
    if service_type is None:
        raise NotFound("No service type with this id.", code="service_type_not_found")
    location = session.get(Location, request.location_id)
    if location is None:
        raise NotFound("No location with this id.", code="location_not_found")
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


def is_treatment(service_type: ServiceType) -> bool:
    return service_type.modality == Modality.IN_PERSON and service_type.needs_clearance


# The consultation's outcomes that gate treatment ------------------------------------------


def latest_decision(session: Session, patient_id: uuid.UUID) -> ClearanceDecision | None:
    """The clearance decision that stands: the latest one recorded for the patient."""
    return session.scalar(select(ClearanceDecision)
                          .where(ClearanceDecision.patient_id == patient_id)
                          .order_by(ClearanceDecision.decided_at.desc()).limit(1))


def esketamine_contraindicated(session: Session, patient_id: uuid.UUID) -> bool:
    """Does any screening on record name a hard contraindication to esketamine?"""
    screenings = session.scalars(select(Screening).where(Screening.patient_id == patient_id))
    return any(s.outcome().esketamine_contraindicated for s in screenings)


def active_hold(session: Session, booking_id: uuid.UUID) -> SessionHold | None:
    """The blood pressure hold on the session that no clinician has overridden yet."""
    return session.scalar(select(SessionHold).where(SessionHold.booking_id == booking_id,
                                                    SessionHold.overridden_at.is_(None))
                          .limit(1))


def _check_clinical_gates(session: Session, parties: _Parties, request: BookingRequest) -> None:
    service_type, patient = parties.service_type, parties.patient
    if service_type.requires_rems:
        missing = [name for name, ok in (
            ("rems_certified_location", parties.location.rems_certified),
            ("rems_enrolled_patient", patient.rems_enrolled),
            ("rems_prescriber", parties.provider.is_rems_prescriber),
            ("monitoring_120_minutes", service_type.recovery_minutes >= 120),
        ) if not ok]
        if missing:
            raise Conflict("Esketamine needs a REMS-certified site, a REMS-enrolled patient, a "
                           "REMS prescriber and at least 120 minutes of monitoring.",
                           code="rems_requirements_not_met", missing=missing)
    if service_type.requires_rems and esketamine_contraindicated(session, patient.id):
        raise Conflict("A screening on record names a hard contraindication to esketamine "
                       "(see the patient's consultation).", code="esketamine_contraindicated")
    if service_type.needs_clearance:
        # The clinician's decision, not a flag anyone may set, clears a patient for treatment.
        decision = latest_decision(session, patient.id)
        if decision is None or decision.decision is not ClearanceStatus.CLEARED:
            raise Conflict("The patient needs a cleared consultation before treatment.",
                           code="clearance_required",
                           clearance=decision.decision.value if decision else "none")
    if is_treatment(service_type) and not request.ride_home_confirmed:
        raise InvalidInput("Confirm that the patient has a ride home after treatment.",
                           code="ride_home_required")


def _patient_state(parties: _Parties, request: BookingRequest) -> str:
    if parties.service_type.modality == Modality.IN_PERSON:
        return "AZ"
    if not request.patient_state:
        raise InvalidInput("For telehealth, attest the state the patient will be in.",
                           code="patient_location_required")
    return request.patient_state.upper()


def _check_start(uow: UnitOfWork, parties: _Parties, start: datetime, patient_state: str,
                 now: datetime, exclude: uuid.UUID | None = None) -> int | None:
    """Check every slot rule for this start; returns the chair number to use (or None)."""
    service_type = parties.service_type
    earliest, latest = search.booking_window(service_type, now)
    if not earliest <= start <= latest:
        raise InvalidInput("The start is too soon (minimum notice) or too far ahead "
                           "(booking horizon).", code="outside_booking_window",
                           earliest=earliest.isoformat(), latest=latest.isoformat())
    schedule = search.load_schedule(
        uow.session, service_type=service_type, providers=[parties.provider],
        locations=[parties.location], start=start - timedelta(days=1),
        end=start + timedelta(days=1), patient_id=parties.patient.id,
        patient_state=patient_state, exclude_booking_id=exclude)
    provider_id, location = parties.provider.id, parties.location
    if not schedule.licensed_on(provider_id, location, start):
        at_home = dataclasses.replace(schedule, patient_state=None)
        if state_jurisdiction(patient_state) != ARIZONA and at_home.licensed_on(
                provider_id, location, start):
            raise Conflict("The provider is not licensed in the state the patient will be in.",
                           code="patient_location_not_covered")
        raise Conflict("No active Arizona license or telehealth registration of the provider "
                       "covers that date.", code="provider_not_licensed")
    rules = schedule.rules
    visit = engine.visit_block(start, rules)
    window = next((w for w in schedule.windows(provider_id, location.id) if w.contains(visit)),
                  None)
    if window is None:
        raise Conflict("The provider does not work then at this location.",
                       code="outside_working_hours")
    if (start - window.start) % rules.step:
        raise InvalidInput(f"Starts follow a {service_type.slot_interval_minutes}-minute grid "
                           f"from {window.start.isoformat()}.", code="misaligned_start")
    if schedule.find(provider_id, location.id, earliest=start, latest=start) != [start]:
        taken = SlotUnavailable("The provider, the patient or every chair is taken then.")
        taken.blocked_by = _blocked_by(schedule, provider_id, location.id, start)
        raise taken
    chairs = schedule.chairs(location.id)
    if chairs is None:
        return None
    chair = engine.first_free_chair(start, rules, chairs)
    return None if chair is None else chair + 1


def _blocked_by(schedule: search.Schedule, provider_id: uuid.UUID, location_id: uuid.UUID,
                start: datetime) -> tuple[str, ...]:
    rules = schedule.rules

    def taken(busy: list[engine.Interval], block: engine.Interval) -> bool:
        return any(block.overlaps(interval) for interval in busy)

    blocked = []
    if taken(schedule.provider_busy.get(provider_id, []), engine.provider_block(start, rules)):
        blocked.append("provider")
    if taken(schedule.patient_busy, engine.patient_block(start, rules)):
        blocked.append("patient")
    chairs = schedule.chairs(location_id)
    if chairs is not None and engine.first_free_chair(start, rules, chairs) is None:
        blocked.append("chair")
    return tuple(blocked)


def _place(booking: Booking, service_type: ServiceType, start: datetime,
           chair: int | None) -> None:
    rules = search.rules_of(service_type)
    block = engine.provider_block(start, rules)
    booking.starts_at = start
    booking.ends_at = start + rules.duration
    booking.provider_starts_at = block.start
    booking.provider_ends_at = block.end
    booking.hold_ends_at = engine.chair_block(start, rules).end
    booking.chair_number = chair


def _record(uow: UnitOfWork, booking: Booking, event: type[events.BookingChanged], *,
            actor: Actor, now: datetime) -> None:
    """The change joins the booking's history, and its event is recorded for the handlers
    (call after the booking's change, before commit)."""
    uow.session.flush()  # the booking's id, and the database's constraints checked now
    uow.session.add(BookingEvent(booking_id=booking.id, kind=event.kind,
                                 actor_key_id=actor.key_id))
    uow.record(event.of(booking, occurred_at=now, actor_key_id=actor.key_id))


def alternatives(uow: UnitOfWork, *, service_type_id: uuid.UUID, provider_id: uuid.UUID,
                 location_id: uuid.UUID, patient_id: uuid.UUID, patient_state: str | None,
                 after: datetime, now: datetime) -> list[dict[str, Any]]:
    """The next free slots for the same service type: the same provider first."""
    with uow:
        service_type = uow.session.get(ServiceType, service_type_id)
        if service_type is None:
            return []
        end = after + timedelta(days=ALTERNATIVES_SEARCH_DAYS)
        found = search.search(uow.session, service_type=service_type, start=after, end=end,
                              now=now, provider_ids=[provider_id], location_id=location_id,
                              patient_id=patient_id, patient_state=patient_state,
                              limit=ALTERNATIVES).slots
        if len(found) < ALTERNATIVES:
            others = search.search(uow.session, service_type=service_type, start=after,
                                   end=end, now=now, patient_id=patient_id,
                                   patient_state=patient_state, limit=ALTERNATIVES * 4).slots
            found += [s for s in others if s not in found][:ALTERNATIVES - len(found)]
        return [{"start": s.start.isoformat(), "end": s.end.isoformat(),
                 "provider_id": str(s.provider_id), "location_id": str(s.location_id)}
                for s in found]


# Booking inside an open unit of work (shared with treatment series) ----------------------

# The codes of the rules that depend on the start itself (the rest hold for any start).
START_RULES = frozenset({"slot_unavailable", "outside_working_hours", "misaligned_start",
                         "outside_booking_window", "provider_not_licensed",
                         "patient_location_not_covered"})


@dataclass(frozen=True)
class Prepared:
    """A booking request whose parties and clinical gates passed; only the start is left."""

    request: BookingRequest
    parties: _Parties
    patient_state: str


def prepare(uow: UnitOfWork, actor: Actor, request: BookingRequest) -> Prepared:
    """Check everything but the start: who and what is booked, and the clinical gates."""
    parties = _parties(uow, actor, request)
    _check_clinical_gates(uow.session, parties, request)
    return Prepared(request, parties, _patient_state(parties, request))


def check_start(uow: UnitOfWork, prepared: Prepared, start: datetime, *,
                now: datetime) -> int | None:
    """Check every slot rule for this start (raises the booking's errors); the chair."""
    return _check_start(uow, prepared.parties, start, prepared.patient_state, now)


def book(uow: UnitOfWork, actor: Actor, request: BookingRequest, *, now: datetime,
         series_id: uuid.UUID | None = None) -> Booking:
    """Apply every booking rule and add the booking, inside the caller's open unit of work
    (flushed, not committed: the caller commits, or its rollback undoes it)."""
    prepared = prepare(uow, actor, request)
    chair = check_start(uow, prepared, request.start, now=now)
    parties = prepared.parties
    booking = Booking(
        patient_id=parties.patient.id, provider_id=parties.provider.id,
        service_type_id=parties.service_type.id, location_id=parties.location.id,
        status=BookingStatus.PENDING if request.hold else BookingStatus.BOOKED,
        patient_state=prepared.patient_state, ride_home_confirmed=request.ride_home_confirmed,
        note=request.note, created_by_key_id=actor.key_id, series_id=series_id)
    _place(booking, parties.service_type, request.start, chair)
    uow.session.add(booking)
    _record(uow, booking, events.BookingCreated, actor=actor, now=now)
    return booking


# Use cases -------------------------------------------------------------------------------


def create_booking(uow: UnitOfWork, actor: Actor, request: BookingRequest, *,
                   now: datetime) -> Booking:
    try:
        return uow.run(lambda: book(uow, actor, request, now=now))
    except SlotUnavailable as taken:
        taken.extras["alternatives"] = alternatives(
            uow, service_type_id=request.service_type_id, provider_id=request.provider_id,
            location_id=request.location_id, patient_id=request.patient_id,
            patient_state=(request.patient_state or "").upper() or None, after=request.start,
            now=now)
        raise


def reschedule_booking(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                       start: datetime, expected_version: int, now: datetime,
                       patient_state: str | None = None) -> Booking:
    request: BookingRequest | None = None

    def work() -> Booking:
        nonlocal request
        booking = _booking(uow, actor, booking_id, lock=True)
        if booking.version != expected_version:
            raise PreconditionFailed("The booking changed since you read it.",
                                     current_version=booking.version)
        if booking.status not in (BookingStatus.PENDING, BookingStatus.BOOKED):
            raise InvalidState(f"A {booking.status.value} booking cannot be rescheduled.",
                               code="invalid_transition", booking_status=booking.status.value)
        request = BookingRequest(
            patient_id=booking.patient_id, provider_id=booking.provider_id,
            service_type_id=booking.service_type_id, location_id=booking.location_id,
            start=start, patient_state=patient_state or booking.patient_state,
            ride_home_confirmed=booking.ride_home_confirmed)
        parties = _parties(uow, actor, request)
        state = _patient_state(parties, request)
        chair = _check_start(uow, parties, start, state, now, exclude=booking.id)
        _place(booking, parties.service_type, start, chair)
        booking.patient_state = state
        _record(uow, booking, events.BookingRescheduled, actor=actor, now=now)
        return booking

    try:
        return uow.run(work)
    except SlotUnavailable as taken:
        if request is not None:
            taken.extras["alternatives"] = alternatives(
                uow, service_type_id=request.service_type_id,
                provider_id=request.provider_id, location_id=request.location_id,
                patient_id=request.patient_id, patient_state=request.patient_state,
                after=start, now=now)
        raise


# Transitions: action -> (allowed from, to, roles that may do it besides staff)
TRANSITIONS: dict[str, tuple[frozenset[BookingStatus], BookingStatus, frozenset[Role]]] = {
    "confirm": (frozenset({BookingStatus.PENDING}), BookingStatus.BOOKED,
                frozenset({Role.PATIENT, Role.PROVIDER})),
    "check_in": (frozenset({BookingStatus.BOOKED}), BookingStatus.CHECKED_IN,
                 frozenset({Role.PROVIDER})),
    "complete": (frozenset({BookingStatus.CHECKED_IN}), BookingStatus.FULFILLED,
                 frozenset({Role.PROVIDER})),
    "no_show": (frozenset({BookingStatus.PENDING, BookingStatus.BOOKED}), BookingStatus.NOSHOW,
                frozenset({Role.PROVIDER})),
    "cancel": (frozenset({BookingStatus.PENDING, BookingStatus.BOOKED}),
               BookingStatus.CANCELLED, frozenset({Role.PATIENT, Role.PROVIDER})),
}


EVENT_OF_ACTION: dict[str, type[events.BookingChanged]] = {
    "confirm": events.BookingConfirmed,
    "check_in": events.BookingCheckedIn,
    "complete": events.BookingCompleted,
    "no_show": events.BookingNoShow,
    "cancel": events.BookingCancelled,
}


def may_transition(actor: Actor, action: str) -> bool:
    return actor.is_clinic_staff or actor.role in TRANSITIONS[action][2]


def _check_in_gates(session: Session, booking: Booking, service_type: ServiceType,
                    attested_state: str | None, now: datetime) -> None:
    """Telehealth: consent on record, and the patient's location attested again now, in
    Arizona or a state where the provider holds an active license on the visit's date."""
    if service_type.modality != Modality.TELEHEALTH:
        return
    visit = session.scalar(select(TelehealthVisit)
                           .where(TelehealthVisit.booking_id == booking.id))
    if visit is None or visit.consent_at is None:
        raise Conflict("Record the patient's informed consent to telehealth before check-in.",
                       code="telehealth_consent_required")
    if not attested_state:
        raise InvalidInput("Checking in a telehealth visit re-attests the state the patient "
                           "is in: POST /api/v1/bookings/{id}/telehealth/check-in.",
                           code="location_attestation_required")
    state = attested_state.strip().upper()
    provider = session.get(Provider, booking.provider_id)
    location = session.get(Location, booking.location_id)
    credentials = [Credential(jurisdiction=c.jurisdiction, kind=c.kind.value,
                              status=c.status.value, issued_on=c.issued_on,
                              expires_on=c.expires_on) for c in provider.licenses]
    day = in_zone(booking.starts_at, location.timezone).date()
    if not may_practice(credentials, on=day, modality=Modality.TELEHEALTH,
                        patient_state=state):
        raise Conflict("The provider is not licensed in the state the patient is in now.",
                       code="patient_location_not_covered")
    visit.attested_state = state
    visit.attested_at = now


def _check_completion_gates(session: Session, booking: Booking, service_type: ServiceType) -> None:
    """A held session stays held; an esketamine session needs its REMS readings."""
    if active_hold(session, booking.id) is not None:
        raise Conflict("A pre-dose blood pressure above the clinic's threshold holds this "
                       "session until a clinician overrides the hold with a reason.",
                       code="session_on_hold")
    if service_type.requires_rems:
        readings = session.scalars(select(VitalSign).where(VitalSign.booking_id == booking.id))
        missing = vitals.missing_for_esketamine(r.reading() for r in readings)
        if missing:
            raise Conflict("An esketamine session needs vital signs before dosing, about 40 "
                           "minutes after it and at discharge (with the ride home confirmed).",
                           code="session_vitals_incomplete", missing=missing)


def apply_transition(uow: UnitOfWork, actor: Actor, booking: Booking, action: str, *,
                     now: datetime, reason: str | None = None,
                     attested_state: str | None = None) -> Booking:
    """Move a booking the actor may see (locked) to its next status, inside the caller's
    unit of work; records the event, does not commit. ``attested_state``: where the patient
    says they are, at a telehealth check-in."""
    allowed_from, target, _roles = TRANSITIONS[action]
    if not may_transition(actor, action):
        raise Forbidden(f"The {actor.role.value} role may not {action.replace('_', ' ')} "
                        "a booking.", code="forbidden")
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
        late_from = booking.starts_at - timedelta(hours=service_type.late_cancel_hours)
        booking.cancel_reason = reason.strip()
        booking.cancelled_at = now
        booking.late_cancellation = now >= late_from
    if action == "check_in":
        _check_in_gates(uow.session, booking, service_type, attested_state, now)
        booking.checked_in_at = now
    if action == "complete":
        _check_completion_gates(uow.session, booking, service_type)
    booking.status = target
    _record(uow, booking, EVENT_OF_ACTION[action], actor=actor, now=now)
    return booking


def transition_booking(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, action: str, *,
                       now: datetime, reason: str | None = None,
                       attested_state: str | None = None) -> Booking:
    def work() -> Booking:
        booking = _booking(uow, actor, booking_id, lock=True)
        return apply_transition(uow, actor, booking, action, now=now, reason=reason,
                                attested_state=attested_state)

    return uow.run(work)


def get_booking(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID) -> Booking:
    with uow:
        return _booking(uow, actor, booking_id)


def list_bookings(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                  provider_id: uuid.UUID | None = None, patient_id: uuid.UUID | None = None,
                  status: list[BookingStatus] | None = None, starts_from: datetime | None = None,
                  starts_before: datetime | None = None,
                  updated_since: datetime | None = None) -> Page[Booking]:
    query = visible_bookings(actor, select(Booking)).order_by(Booking.starts_at, Booking.id)
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
