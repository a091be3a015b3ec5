"""Busy time out of an iCalendar document (pure): what a connected calendar blocks.

``busy_intervals`` expands the document over a window with ``recurring-ical-events``
(RRULE, RDATE, EXDATE, RECURRENCE-ID overrides; X-WR-TIMEZONE as Google publishes it) and
keeps, of each occurrence, only its UID and its half-open UTC interval:

- ``TRANSP:TRANSPARENT`` ("show me as free") and ``STATUS:CANCELLED`` occurrences block
  nothing;
- all-day events (a DATE start) block their whole local days only when the connection says
  so (``include_all_day``): many calendars use them for reminders and birthdays;
- floating times (no zone) are read in the calendar's X-WR-TIMEZONE, else ``default_zone``;
- an event without an end lasts its DURATION, else nothing (a timed one: RFC 5545 says it
  ends when it starts) or one day (an all-day one).

Titles, attendees, descriptions and locations are never read out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import recurring_ical_events
from icalendar import Calendar

MAX_OCCURRENCES = 20_000  # per document and window; a calendar with more is refused


class UnreadableCalendar(ValueError):
    """Not an iCalendar document, or one too large to expand (``reason``: a machine code)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, order=True)
class Busy:
    start: datetime  # UTC
    end: datetime
    uid: str = ""


def _zone(name: object, default: ZoneInfo) -> ZoneInfo:
    try:
        return ZoneInfo(str(name)) if name else default
    except (ZoneInfoNotFoundError, ValueError):
        return default


def _utc(value: datetime, zone: ZoneInfo) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def parse(documents: Iterable[bytes]) -> list[Calendar]:
    calendars = []
    for document in documents:
        try:
            calendars.extend(Calendar.from_ical(document, multiple=True))
        except (ValueError, KeyError, IndexError):
            raise UnreadableCalendar("invalid_icalendar") from None
    return calendars


def busy_intervals(documents: Iterable[bytes], *, start: datetime, end: datetime,
                   default_zone: str, include_all_day: bool) -> list[Busy]:
    """Every busy occurrence overlapping ``[start, end)``, sorted, UTC."""
    found: list[Busy] = []
    for calendar in parse(documents):
        zone = _zone(calendar.get("X-WR-TIMEZONE"), ZoneInfo(default_zone))
        try:
            occurrences = recurring_ical_events.of(calendar, skip_bad_series=True).between(
                start, end)
        except (ValueError, TypeError, KeyError):
            raise UnreadableCalendar("invalid_recurrence") from None
        for count, event in enumerate(occurrences):
            if count >= MAX_OCCURRENCES:
                raise UnreadableCalendar("too_many_events")
            if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
                continue
            if str(event.get("STATUS", "")).upper() == "CANCELLED":
                continue
            interval = _interval(event, zone, include_all_day=include_all_day)
            if interval is None:
                continue
            first, last = interval
            if first < end and last > start:
                found.append(Busy(first, last, str(event.get("UID", ""))))
    found.sort()
    return found


def _interval(event, zone: ZoneInfo, *,  # type: ignore[no-untyped-def]
              include_all_day: bool) -> tuple[datetime, datetime] | None:
    dtstart = event.get("DTSTART")
    if dtstart is None:
        return None
    first = dtstart.dt
    dtend, duration = event.get("DTEND"), event.get("DURATION")
    if not isinstance(first, datetime):  # a DATE: an all-day event
        if not include_all_day:
            return None
        if dtend is not None and not isinstance(dtend.dt, datetime):
            last_day = dtend.dt
        elif duration is not None:
            last_day = first + max(timedelta(days=duration.dt.days), timedelta(days=1))
        else:
            last_day = first + timedelta(days=1)
        if last_day <= first:
            return None
        return _day_start(first, zone), _day_start(last_day, zone)
    start = _utc(first, zone)
    if dtend is not None and isinstance(dtend.dt, datetime):
        stop = _utc(dtend.dt, zone)
    elif duration is not None:
        stop = start + duration.dt
    else:
        return None
    return (start, stop) if start < stop else None


def merge(intervals: Iterable[Busy]) -> list[tuple[datetime, datetime]]:
    """Overlapping or touching intervals as one (fewer rows, the same busy time)."""
    merged: list[tuple[datetime, datetime]] = []
    for item in sorted(intervals):
        if merged and item.start <= merged[-1][1]:
            if item.end > merged[-1][1]:
                merged[-1] = (merged[-1][0], item.end)
        else:
            merged.append((item.start, item.end))
    return merged
