"""Use cases for when a provider works: weekly hours, date overrides and time off.

Weekly hours and overrides are local wall-clock hours at a location; a provider cannot be in
two places at once, so no two of their windows on the same weekday (or the same date) may
overlap, whatever the locations. Who sees and changes which schedule is the availability
policy's to say (a provider key: only its own; any other provider is "not found").
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, select

from service.db import utcnow
from service.domain.access.actor import Actor
from service.domain.availability import slots
from service.domain.availability.events import ScheduleOpened
from service.domain.availability.models import DateOverride, TimeOff, WeeklyHours
from service.domain.availability.policy import policy
from service.domain.clinic.models import Location
from service.domain.errors import InvalidInput, NotFound
from service.domain.providers.models import Provider
from service.domain.records import Page, get_or_raise, paginate
from service.domain.time import to_utc
from service.uow import UnitOfWork

MAX_WEEKLY_RULES = 50
MAX_OVERRIDE_WINDOWS = 400
MAX_TIME_OFF = timedelta(days=366)
# New working hours may open slots in the weeks ahead (what the waitlist looks at).
HOURS_CHANGE_REACH = timedelta(days=28)

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# What the use cases return: plain values, safe to read after the unit of work ends ---------


@dataclass(frozen=True)
class Window:
    """Local wall-clock hours ``[start, end)``."""

    start: time
    end: time


@dataclass(frozen=True)
class WeeklyRule:
    """The provider works these local hours at this location every such weekday."""

    id: uuid.UUID
    location_id: uuid.UUID
    weekday: int  # 0 = Monday
    start: time
    end: time


@dataclass(frozen=True)
class DayOverride:
    """On this local date the provider works these hours at this location instead of its
    weekly hours there; no hours: not working there that day."""

    location_id: uuid.UUID
    day: date
    hours: tuple[Window, ...]

    @property
    def is_day_off(self) -> bool:
        return not self.hours


@dataclass(frozen=True)
class Availability:
    """A provider's weekly hours and its date overrides from a given day onwards."""

    provider_id: uuid.UUID
    weekly: tuple[WeeklyRule, ...]
    overrides: tuple[DayOverride, ...]

    def weekly_hours_at(self, location_id: uuid.UUID) -> list[slots.WeeklyHours]:
        """The weekly hours at one location, as the slot engine takes them."""
        return [slots.WeeklyHours(rule.weekday, rule.start, rule.end)
                for rule in self.weekly if rule.location_id == location_id]

    def overrides_at(self, location_id: uuid.UUID) -> list[slots.DateOverride]:
        """The date overrides at one location, as the slot engine takes them."""
        return [slots.DateOverride(o.day, tuple((w.start, w.end) for w in o.hours))
                for o in self.overrides if o.location_id == location_id]


def _provider(uow: UnitOfWork, provider_id: uuid.UUID, *, lock: bool = False) -> Provider:
    if not lock:
        return get_or_raise(uow.session, Provider, provider_id, code="provider_not_found",
                            what="provider")
    # Serializes two replacements of the same schedule (PostgreSQL; SQLite's BEGIN
    # IMMEDIATE already does), so they cannot interleave their deletes and inserts.
    provider = uow.session.scalar(
        select(Provider).where(Provider.id == provider_id).with_for_update())
    if provider is None:
        raise NotFound("No provider with this id.", code="provider_not_found")
    return provider


# Reading a schedule (also for other use cases, inside their unit of work) -----------------


def find_availability(uow: UnitOfWork, provider_id: uuid.UUID, *, since: date) -> Availability:
    """The provider's weekly hours and its overrides on ``since`` or later (queries only)."""
    weekly = uow.session.scalars(
        select(WeeklyHours).where(WeeklyHours.provider_id == provider_id)
        .order_by(WeeklyHours.weekday, WeeklyHours.start_time, WeeklyHours.id))
    rows = uow.session.scalars(
        select(DateOverride)
        .where(DateOverride.provider_id == provider_id, DateOverride.day >= since)
        .order_by(DateOverride.day, DateOverride.start_time, DateOverride.id))
    return Availability(
        provider_id=provider_id,
        weekly=tuple(WeeklyRule(id=r.id, location_id=r.location_id, weekday=r.weekday,
                                start=r.start_time, end=r.end_time) for r in weekly),
        overrides=_group_overrides(rows),
    )


def _group_overrides(rows: Iterable[DateOverride]) -> tuple[DayOverride, ...]:
    windows: dict[tuple[date, uuid.UUID], list[Window]] = {}
    for row in rows:
        hours = windows.setdefault((row.day, row.location_id), [])
        if row.start_time is not None and row.end_time is not None:
            hours.append(Window(row.start_time, row.end_time))
    grouped = [DayOverride(location_id=location_id, day=day,
                           hours=tuple(sorted(hours, key=lambda w: w.start)))
               for (day, location_id), hours in windows.items()]
    grouped.sort(key=lambda o: (o.day, o.hours[0].start if o.hours else time.min,
                                str(o.location_id)))
    return tuple(grouped)


def time_off_overlapping(uow: UnitOfWork, provider_id: uuid.UUID, start: datetime,
                         end: datetime) -> list[TimeOff]:
    """The provider's time off that overlaps ``[start, end)`` (queries only)."""
    return list(uow.session.scalars(
        select(TimeOff)
        .where(TimeOff.provider_id == provider_id, TimeOff.starts_at < end,
               TimeOff.ends_at > start)
        .order_by(TimeOff.starts_at, TimeOff.id)))


def get_availability(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID, *,
                     today: date) -> Availability:
    """The provider's weekly hours and its date overrides from today onwards."""
    policy.check_schedule(actor, provider_id, "read")
    with uow:
        _provider(uow, provider_id)
        return find_availability(uow, provider_id, since=today)


# Replacing a schedule -----------------------------------------------------------------------


def _check_window(start: time, end: time, **where: Any) -> None:
    if not start < end:
        raise InvalidInput(f"Hours must end after they start ({start:%H:%M}-{end:%H:%M}).",
                           code="invalid_time_range", **where)


def _check_no_overlap(windows: Sequence[tuple[time, time]], what: str, **where: Any) -> None:
    ordered = sorted(windows)
    for (_, previous_end), (start, _end) in zip(ordered, ordered[1:]):
        if start < previous_end:
            raise InvalidInput(
                f"Two working windows on {what} overlap (ending {previous_end:%H:%M} and "
                f"starting {start:%H:%M}); a provider cannot work two places at once.",
                code="overlapping_hours", **where)


def _check_weekly(weekly: Sequence[dict[str, Any]]) -> None:
    if len(weekly) > MAX_WEEKLY_RULES:
        raise InvalidInput(f"A provider has at most {MAX_WEEKLY_RULES} weekly rules.",
                           code="invalid_input")
    by_weekday: dict[int, list[tuple[time, time]]] = {}
    for rule in weekly:
        weekday = rule["weekday"]
        if not 0 <= weekday <= 6:
            raise InvalidInput("weekday is 0 (Monday) to 6 (Sunday).", code="invalid_input")
        _check_window(rule["start"], rule["end"], weekday=weekday)
        by_weekday.setdefault(weekday, []).append((rule["start"], rule["end"]))
    for weekday, windows in by_weekday.items():
        _check_no_overlap(windows, f"{WEEKDAYS[weekday]}s", weekday=weekday)


def _check_overrides(overrides: Sequence[dict[str, Any]], today: date) -> None:
    windows_count = sum(max(len(o["hours"]), 1) for o in overrides)
    if windows_count > MAX_OVERRIDE_WINDOWS:
        raise InvalidInput(
            f"A provider has at most {MAX_OVERRIDE_WINDOWS} override windows (a day off "
            f"counts as one).", code="invalid_input")
    seen: set[tuple[uuid.UUID, date]] = set()
    by_day: dict[date, list[tuple[time, time]]] = {}
    for override in overrides:
        day, location_id = override["day"], override["location_id"]
        if day < today:
            raise InvalidInput(f"{day.isoformat()} is in the past; only today and later "
                               f"days can be overridden.", code="invalid_input",
                               day=day.isoformat())
        if (location_id, day) in seen:
            raise InvalidInput("Give each location and day once, with all its hours.",
                               code="invalid_input", day=day.isoformat(),
                               location_id=str(location_id))
        seen.add((location_id, day))
        for window in override["hours"]:
            _check_window(window["start"], window["end"], day=day.isoformat())
            by_day.setdefault(day, []).append((window["start"], window["end"]))
    for day, windows in by_day.items():
        _check_no_overlap(windows, day.isoformat(), day=day.isoformat())


def _check_locations(uow: UnitOfWork, location_ids: set[uuid.UUID]) -> None:
    if not location_ids:
        return
    active = set(uow.session.scalars(
        select(Location.id).where(Location.id.in_(location_ids), Location.active.is_(True))))
    missing = sorted(location_ids - active, key=str)
    if missing:
        raise NotFound("No active location with this id.", code="location_not_found",
                       location_id=str(missing[0]))


def replace_availability(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID, *,
                         weekly: list[dict[str, Any]], overrides: list[dict[str, Any]],
                         today: date) -> Availability:
    """Replace all the provider's weekly hours and all its overrides from today onwards.

    ``weekly``: ``{location_id, weekday, start, end}``; ``overrides``: ``{location_id, day,
    hours: [{start, end}]}``, where no hours means not working there that day. Past
    overrides are kept as history.
    """
    policy.check_schedule(actor, provider_id, "change")
    _check_weekly(weekly)
    _check_overrides(overrides, today)

    def work() -> Availability:
        _provider(uow, provider_id, lock=True)
        _check_locations(uow, {r["location_id"] for r in weekly}
                         | {o["location_id"] for o in overrides})
        session = uow.session
        session.execute(delete(WeeklyHours).where(WeeklyHours.provider_id == provider_id))
        session.execute(delete(DateOverride).where(DateOverride.provider_id == provider_id,
                                                   DateOverride.day >= today))
        session.add_all(WeeklyHours(provider_id=provider_id, location_id=r["location_id"],
                                    weekday=r["weekday"], start_time=r["start"],
                                    end_time=r["end"]) for r in weekly)
        for override in overrides:
            windows = override["hours"] or [{"start": None, "end": None}]
            session.add_all(DateOverride(provider_id=provider_id,
                                         location_id=override["location_id"],
                                         day=override["day"], start_time=w["start"],
                                         end_time=w["end"]) for w in windows)
        session.flush()
        availability = find_availability(uow, provider_id, since=today)
        now = utcnow()
        uow.record(ScheduleOpened(provider_id=provider_id, starts_at=now,
                                  ends_at=now + HOURS_CHANGE_REACH, cause="hours_changed",
                                  occurred_at=now))
        return availability

    return uow.run(work)


# Time off -----------------------------------------------------------------------------------


def list_time_off(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID, *, page: int,
                  page_size: int, ends_after: datetime | None = None) -> Page[TimeOff]:
    """The provider's time off, earliest first (only what ends after ``ends_after``)."""
    policy.check_schedule(actor, provider_id, "read_time_off")
    query = (policy.visible(actor, select(TimeOff)).where(TimeOff.provider_id == provider_id)
             .order_by(TimeOff.starts_at, TimeOff.id))
    if ends_after is not None:
        query = query.where(TimeOff.ends_at > ends_after)
    with uow:
        _provider(uow, provider_id)
        return paginate(uow.session, query, page=page, page_size=page_size)


def _time_off(uow: UnitOfWork, provider_id: uuid.UUID, time_off_id: uuid.UUID) -> TimeOff:
    record = uow.session.get(TimeOff, time_off_id)
    if record is None or record.provider_id != provider_id:
        _provider(uow, provider_id)
        raise NotFound("No time off with this id for this provider.",
                       code="time_off_not_found")
    return record


def get_time_off(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID,
                 time_off_id: uuid.UUID) -> TimeOff:
    policy.check_schedule(actor, provider_id, "read_time_off")
    with uow:
        return _time_off(uow, provider_id, time_off_id)


def add_time_off(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID, *,
                 starts_at: datetime, ends_at: datetime, reason: str | None = None
                 ) -> TimeOff:
    """Block ``[starts_at, ends_at)`` for the provider (vacation, training, ...)."""
    policy.check_schedule(actor, provider_id, "change")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise InvalidInput("Give times with an offset.", code="invalid_input")
    if not starts_at < ends_at:
        raise InvalidInput("Time off must end after it starts.", code="invalid_time_range")
    if ends_at - starts_at > MAX_TIME_OFF:
        raise InvalidInput(f"One time off lasts at most {MAX_TIME_OFF.days} days; record "
                           f"a longer absence as several.", code="range_too_long")

    def work() -> TimeOff:
        _provider(uow, provider_id)
        record = TimeOff(provider_id=provider_id, starts_at=to_utc(starts_at),
                         ends_at=to_utc(ends_at), reason=reason or None)
        uow.session.add(record)
        return record

    return uow.run(work)


def remove_time_off(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID,
                    time_off_id: uuid.UUID) -> None:
    policy.check_schedule(actor, provider_id, "change")

    def work() -> None:
        record = _time_off(uow, provider_id, time_off_id)
        uow.session.delete(record)
        now = utcnow()
        if record.ends_at > now:
            uow.record(ScheduleOpened(provider_id=provider_id,
                                      starts_at=max(record.starts_at, now),
                                      ends_at=record.ends_at, cause="time_off_removed",
                                      occurred_at=now))

    uow.run(work)
