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
import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    Integer,
    String,
    Time,
    bindparam,
    cast,
    literal_column,
    null,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)

from service.db import DirectStatement, UTCDateTime
from service.domain.availability import facts, search
from service.domain.availability import slots as engine
from service.domain.availability.models import DateOverride, TimeOff, WeeklyHours
from service.domain.bookings.models import Booking
from service.domain.clinic.models import Location, ServiceType
from service.domain.connections.models import CalendarConnection, ExternalBusy, SyncStatus
from service.domain.errors import Conflict, InvalidInput
from service.domain.providers.licensing import ARIZONA, Credential, state_jurisdiction
from service.domain.providers.models import Provider
from service.domain.time import in_zone, to_utc
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
    transaction (``session``: a session or a unit of work, whose ``connection()`` the
    facts are read on; ``exclude_booking_id``: the booking being moved does not block
    itself)."""
    service_type, provider, location = visit.service_type, visit.provider, visit.location
    earliest, latest = search.booking_window(service_type, now)
    if not earliest <= start <= latest:
        raise InvalidInput("The start is too soon (minimum notice) or too far ahead "
                           "(booking horizon).", code="outside_booking_window",
                           earliest=earliest.isoformat(), latest=latest.isoformat())
    schedule = load_visit_schedule(session, visit, start=start - timedelta(days=1),
                                   end=start + timedelta(days=1),
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
    # The engine's instants are UTC: blocks made of the start in UTC are stored as they
    # are (of another offset, each of their ends is checked and converted).
    at = to_utc(start)
    block = engine.visit_block(at, rules)
    window = next((w for w in schedule.windows(provider.id, location.id) if w.contains(block)),
                  None)
    if window is None:
        raise Conflict("The provider does not work then at this location.",
                       code="outside_working_hours")
    if (start - window.start) % rules.step:
        raise InvalidInput(f"Starts follow a {service_type.slot_interval_minutes}-minute grid "
                           f"from {window.start.isoformat()}.", code="misaligned_start")
    if schedule.find(provider.id, location.id, earliest=at, latest=at) != [start]:
        taken = SlotUnavailable("The provider, the patient or every chair is taken then.")
        taken.blocked_by = _blocked_by(schedule, provider.id, location.id, start)
        raise taken
    chairs = schedule.chairs(location.id)
    chair = None if chairs is None else engine.first_free_chair(at, rules, chairs)
    provider_block = engine.provider_block(at, rules)
    return Placement(start=start, end=start + rules.duration,
                     provider_start=provider_block.start, provider_end=provider_block.end,
                     hold_end=engine.chair_block(at, rules).end,
                     chair=None if chair is None else chair + 1)


def load_visit_schedule(session, visit: Visit, *, start: datetime, end: datetime,  # type: ignore[no-untyped-def]
                        exclude_booking_id: uuid.UUID | None = None) -> search.Schedule:
    """The very ``Schedule`` ``search.load_schedule`` gives for the visit's provider at its
    location (and its patient), read in ONE statement: each kind of fact is a branch of a
    UNION ALL whose rows say which kind they are (a booking reads its day in one round trip
    instead of one per kind). The same filters as ``load_schedule``; a test compares both
    on random calendars."""
    service_type, provider, location = visit.service_type, visit.provider, visit.location
    schedule = search.Schedule(service_type=service_type, locations={location.id: location},
                               providers={provider.id: provider}, start=start, end=end,
                               patient_state=visit.patient_state)
    schedule.credentials[provider.id] = [
        Credential(jurisdiction=c.jurisdiction, kind=c.kind.value, status=c.status.value,
                   issued_on=c.issued_on, expires_on=c.expires_on)
        for c in provider.licenses]
    if service_type.needs_chair:
        schedule.chairs_busy[location.id] = [[] for _ in range(location.chairs)]
    connection = session.connection()
    lo = start - search.MAX_BUFFER - timedelta(days=1)
    hi = end + search.MAX_BUFFER + timedelta(days=1)
    statement = _facts_direct(connection.dialect.name == "postgresql",
                              chairs=service_type.needs_chair,
                              exclude=exclude_booking_id is not None)
    facts: dict[str, list[Any]] = {}
    for row in statement.all(connection, {
            "provider_id": provider.id, "location_id": location.id,
            "patient_id": visit.patient_id, "lo": lo, "hi": hi,
            "first_day": (start - timedelta(days=2)).date(),
            "last_day": (end + timedelta(days=2)).date(),
            "exclude_booking_id": exclude_booking_id}):
        facts.setdefault(row[0], []).append(row)
    _fill(schedule, facts, provider.id, location.id)
    return schedule


@functools.cache
def _facts_direct(postgres: bool, *, chairs: bool, exclude: bool) -> DirectStatement:
    """``_facts`` compiled once and run without SQLAlchemy's per-execution machinery
    (``DirectStatement``): the statement of every booking's check and of every reschedule."""
    return DirectStatement(_facts(postgres, chairs=chairs, exclude=exclude))


@functools.cache
def _facts(postgres: bool, *, chairs: bool, exclude: bool):  # type: ignore[no-untyped-def]
    """The UNION ALL, built once per shape (building it took longer than running it): its
    columns say which fact, a number, two wall-clock times, a date and two instants (NULL
    where a kind has none; the first branch's types decode every row). No ids: every row is
    of the visit's provider, location or patient (its filters say so), so none is sent or
    decoded."""
    lo, hi = bindparam("lo"), bindparam("hi")
    provider_id, location_id = bindparam("provider_id"), bindparam("location_id")
    instant_type = DateTime(timezone=True) if postgres else UTCDateTime()

    def instant(column):  # type: ignore[no-untyped-def]
        # PostgreSQL: instants arrive as UTC, no per-row decoding (as in load_schedule).
        return type_coerce(column, instant_type)

    def row(kind: str, number=None, t1=None, t2=None, day=None, at1=None, at2=None):  # type: ignore[no-untyped-def]
        def typed(value, type_):  # type: ignore[no-untyped-def]
            return cast(null(), type_) if value is None else value
        return (literal_column(f"'{kind}'", String).label("kind"),
                typed(number, Integer()).label("number"), typed(t1, Time()).label("t1"),
                typed(t2, Time()).label("t2"), typed(day, Date()).label("day"),
                instant(typed(at1, instant_type)).label("at1"),
                instant(typed(at2, instant_type)).label("at2"))

    holding = facts.is_holding()
    not_excluded = Booking.id != bindparam("exclude_booking_id") if exclude else true()
    branches = [
        select(*row("weekly", WeeklyHours.weekday, WeeklyHours.start_time,
                    WeeklyHours.end_time))
        .where(WeeklyHours.provider_id == provider_id,
               WeeklyHours.location_id == location_id),
        select(*row("override", t1=DateOverride.start_time, t2=DateOverride.end_time,
                    day=DateOverride.day))
        .where(DateOverride.provider_id == provider_id,
               DateOverride.location_id == location_id,
               DateOverride.day >= bindparam("first_day"),
               DateOverride.day <= bindparam("last_day")),
        select(*row("time_off", at1=TimeOff.starts_at, at2=TimeOff.ends_at))
        .where(TimeOff.provider_id == provider_id, TimeOff.ends_at > lo,
               TimeOff.starts_at < hi),
        # Connected calendars: their busy time blocks the provider like another booking.
        select(*row("external", at1=ExternalBusy.starts_at, at2=ExternalBusy.ends_at))
        .join(CalendarConnection, CalendarConnection.id == ExternalBusy.connection_id)
        .where(ExternalBusy.provider_id == provider_id, CalendarConnection.active.is_(True),
               ExternalBusy.ends_at > lo, ExternalBusy.starts_at < hi),
        select(*row("stale"))
        .where(CalendarConnection.provider_id == provider_id,
               CalendarConnection.active.is_(True),
               or_(CalendarConnection.stale_since.is_not(None),
                   CalendarConnection.status == SyncStatus.PENDING)),
        # The provider's bookings and the patient's own, each served by its index
        # (ix_bookings_provider_block, ix_bookings_patient_hold_ends).
        select(*row("provider_busy", at1=Booking.provider_starts_at,
                    at2=Booking.provider_ends_at))
        .where(holding, not_excluded, Booking.provider_id == provider_id,
               Booking.provider_ends_at > lo, Booking.provider_starts_at < hi),
        select(*row("patient_busy", at1=Booking.starts_at, at2=Booking.hold_ends_at))
        .where(holding, not_excluded, Booking.patient_id == bindparam("patient_id"),
               Booking.hold_ends_at > lo, Booking.starts_at < hi),
    ]
    if chairs:
        branches.append(
            select(*row("chair", number=Booking.chair_number, at1=Booking.starts_at,
                        at2=Booking.hold_ends_at))
            .where(holding, not_excluded, Booking.location_id == location_id,
                   Booking.chair_number.is_not(None),
                   Booking.hold_ends_at > lo, Booking.starts_at < hi))
    return union_all(*branches)


def _fill(schedule: search.Schedule, facts: dict[str, list[Any]], provider_id: uuid.UUID,
          location_id: uuid.UUID) -> None:
    """The schedule's facts from the rows of ``_facts`` by kind (columns: kind, number, two
    wall-clock times, a date, two instants), each kind as the rows gave it."""

    def intervals(*kinds: str) -> list[engine.Interval]:
        return [engine.Interval(row[5], row[6]) for kind in kinds for row in facts.get(kind, ())]

    if "weekly" in facts:
        schedule.weekly[(provider_id, location_id)].extend(
            engine.WeeklyHours(weekday=row[1], start=row[2], end=row[3])
            for row in facts["weekly"])
    for row in facts.get("override", ()):
        hours = schedule.overrides[(provider_id, location_id)].setdefault(row[4], [])
        if row[2] is not None and row[3] is not None:
            hours.append((row[2], row[3]))
    if "time_off" in facts:
        schedule.time_off[provider_id].extend(intervals("time_off"))
    if "external" in facts or "provider_busy" in facts:
        schedule.provider_busy[provider_id].extend(intervals("external", "provider_busy"))
    if "stale" in facts:
        schedule.stale_sources.add(provider_id)
    schedule.patient_busy.extend(intervals("patient_busy"))
    for row in facts.get("chair", ()):
        chairs = schedule.chairs_busy[location_id]
        if 1 <= row[1] <= len(chairs):
            chairs[row[1] - 1].append(engine.Interval(row[5], row[6]))


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
