"""Where a visit can be placed: one call for a booking's start, one read for a 409.

``place`` checks a start against every rule of the schedule (the booking window, the
provider's license for where the patient will be, working hours, the slot grid, the
provider's, the patient's and the chairs' blocks) with the very ``Schedule`` the slot search
uses, and answers the blocks the booking will hold and its chair. It raises the error of the
first rule broken; ``START_RULES`` are their codes.

``alternatives`` is the one read-only path that proposes other slots when a start is taken
(``slot_unavailable``): the next free ones, the same provider first.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.domain.availability import search
from service.domain.availability import slots as engine
from service.domain.clinic.models import Location, ServiceType
from service.domain.errors import Conflict, InvalidInput
from service.domain.providers.licensing import ARIZONA, state_jurisdiction
from service.domain.providers.models import Provider
from service.domain.time import in_zone
from service.uow import UnitOfWork

ALTERNATIVES = 3
ALTERNATIVES_SEARCH_DAYS = 14

# The codes of the rules that depend on the start itself (the rest hold for any start).
START_RULES = frozenset({"slot_unavailable", "outside_working_hours", "misaligned_start",
                         "outside_booking_window", "provider_not_licensed",
                         "patient_location_not_covered"})


class SlotUnavailable(Conflict):
    code = "slot_unavailable"
    title = "The slot is no longer available"
    # What the Python check found taken: "provider", "patient", "chair" (empty when the
    # database's constraint caught it). Not part of the answer: it never names who.
    blocked_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Visit:
    """What is to be placed: a kind of visit with a provider at a location, for a patient
    who will be in ``patient_state``."""

    service_type: ServiceType
    provider: Provider
    location: Location
    patient_id: uuid.UUID
    patient_state: str


@dataclass(frozen=True)
class Placement:
    """The blocks a visit placed at ``start`` holds (half-open), and its chair (1-based)."""

    start: datetime
    end: datetime
    provider_start: datetime
    provider_end: datetime
    hold_end: datetime  # the patient's and the chair's block end (recovery, monitoring)
    chair: int | None


def place(session, visit: Visit, start: datetime, *, now: datetime,  # type: ignore[no-untyped-def]
          exclude_booking_id: uuid.UUID | None = None) -> Placement:
    """Can the visit start at ``start``? Every slot rule, checked inside the caller's
    transaction (``exclude_booking_id``: the booking being moved does not block itself)."""
    service_type, provider, location = visit.service_type, visit.provider, visit.location
    earliest, latest = search.booking_window(service_type, now)
    if not earliest <= start <= latest:
        raise InvalidInput("The start is too soon (minimum notice) or too far ahead "
                           "(booking horizon).", code="outside_booking_window",
                           earliest=earliest.isoformat(), latest=latest.isoformat())
    schedule = search.load_schedule(
        session, service_type=service_type, providers=[provider], locations=[location],
        start=start - timedelta(days=1), end=start + timedelta(days=1),
        patient_id=visit.patient_id, patient_state=visit.patient_state,
        exclude_booking_id=exclude_booking_id)
    if not schedule.licensed_on(provider.id, location, start):
        at_home = dataclasses.replace(schedule, patient_state=None)
        if state_jurisdiction(visit.patient_state) != ARIZONA and at_home.licensed_on(
                provider.id, location, start):
            raise Conflict("The provider is not licensed in the state the patient will be in.",
                           code="patient_location_not_covered")
        raise Conflict("No active Arizona license or telehealth registration of the provider "
                       "covers that date.", code="provider_not_licensed")
    rules = schedule.rules
    block = engine.visit_block(start, rules)
    window = next((w for w in schedule.windows(provider.id, location.id) if w.contains(block)),
                  None)
    if window is None:
        raise Conflict("The provider does not work then at this location.",
                       code="outside_working_hours")
    if (start - window.start) % rules.step:
        raise InvalidInput(f"Starts follow a {service_type.slot_interval_minutes}-minute grid "
                           f"from {window.start.isoformat()}.", code="misaligned_start")
    if schedule.find(provider.id, location.id, earliest=start, latest=start) != [start]:
        taken = SlotUnavailable("The provider, the patient or every chair is taken then.")
        taken.blocked_by = _blocked_by(schedule, provider.id, location.id, start)
        raise taken
    chairs = schedule.chairs(location.id)
    chair = None if chairs is None else engine.first_free_chair(start, rules, chairs)
    provider_block = engine.provider_block(start, rules)
    return Placement(start=start, end=start + rules.duration,
                     provider_start=provider_block.start, provider_end=provider_block.end,
                     hold_end=engine.chair_block(start, rules).end,
                     chair=None if chair is None else chair + 1)


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


# When the start is taken -------------------------------------------------------------------


@dataclass(frozen=True)
class Wanted:
    """What a caller asked for, to propose alternatives when its start was taken."""

    service_type_id: uuid.UUID
    provider_id: uuid.UUID
    location_id: uuid.UUID
    patient_id: uuid.UUID
    patient_state: str | None
    start: datetime


def alternatives(uow: UnitOfWork, wanted: Wanted, *, now: datetime) -> list[dict[str, Any]]:
    """The next free slots for the same service type, the same provider first. Reads in a
    transaction of its own, after the failed one; writes nothing."""
    with uow:
        session = uow.session
        service_type = session.get(ServiceType, wanted.service_type_id)
        if service_type is None:
            return []
        after, end = wanted.start, wanted.start + timedelta(days=ALTERNATIVES_SEARCH_DAYS)
        first = search.search(session, service_type=service_type, start=after, end=end,
                              now=now, provider_ids=[wanted.provider_id],
                              location_id=wanted.location_id, patient_id=wanted.patient_id,
                              patient_state=wanted.patient_state, limit=ALTERNATIVES)
        found, others_zones = list(first.slots), {}
        if len(found) < ALTERNATIVES:
            others = search.search(session, service_type=service_type, start=after, end=end,
                                   now=now, patient_id=wanted.patient_id,
                                   patient_state=wanted.patient_state,
                                   limit=ALTERNATIVES * 4)
            others_zones = others.zones
            found += [s for s in others.slots if s not in found][:ALTERNATIVES - len(found)]
        zones = {**others_zones, **first.zones}
        # Each shown in its location's zone, as the slot search and the booking show it.
        return [{"start": in_zone(s.start, zones[s.location_id]).isoformat(),
                 "end": in_zone(s.end, zones[s.location_id]).isoformat(),
                 "provider_id": str(s.provider_id), "location_id": str(s.location_id)}
                for s in found]
