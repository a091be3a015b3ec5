"""Working windows and bookable slots, computed over sorted interval lists.

All instants are timezone-aware UTC. Intervals are half-open ``[start, end)``.
Set operations (merge, subtract, intersect) are linear sweeps over sorted,
merged lists; busy checks use ``bisect`` on merged busy lists.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from service.domain.time import local_to_utc, require_aware, to_utc, zone

__all__ = [
    "Interval",
    "WeeklyHours",
    "DateOverride",
    "SlotRules",
    "merge",
    "subtract",
    "intersect",
    "working_windows",
    "provider_block",
    "visit_block",
    "chair_block",
    "patient_block",
    "find_slots",
    "first_free_chair",
]


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open span of time ``[start, end)`` between two aware instants, stored in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        start = to_utc(require_aware(self.start, "Interval.start"))
        end = to_utc(require_aware(self.end, "Interval.end"))
        if not start < end:
            raise ValueError(
                f"Interval start {start.isoformat()} must be before end {end.isoformat()}"
            )
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @property
    def length(self) -> timedelta:
        """How long the interval lasts."""
        return self.end - self.start

    def overlaps(self, other: Interval) -> bool:
        """Tell whether the two intervals share any instant (touching ends do not overlap)."""
        return self.start < other.end and other.start < self.end

    def contains(self, other: Interval) -> bool:
        """Tell whether ``other`` lies entirely inside this interval."""
        return self.start <= other.start and other.end <= self.end


def _wall_clock_hours(start: time, end: time, what: str) -> None:
    """Validate one pair of local wall-clock hours (naive times, start < end)."""
    if not isinstance(start, time) or not isinstance(end, time):
        raise ValueError(f"{what}: start and end must be times")
    if start.tzinfo is not None or end.tzinfo is not None:
        raise ValueError(f"{what}: hours are local wall-clock times and must not carry tzinfo")
    if not start < end:
        raise ValueError(f"{what}: start {start} must be before end {end}")


@dataclass(frozen=True)
class WeeklyHours:
    """Recurring local working hours on one weekday (0=Monday .. 6=Sunday)."""

    weekday: int
    start: time
    end: time

    def __post_init__(self) -> None:
        weekday = self.weekday
        if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
            raise ValueError(f"weekday must be 0 (Monday) .. 6 (Sunday), got {self.weekday!r}")
        _wall_clock_hours(self.start, self.end, "WeeklyHours")


@dataclass(frozen=True)
class DateOverride:
    """Local hours for one date that replace the weekly hours; no hours means not working."""

    day: date
    hours: tuple[tuple[time, time], ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.day, datetime) or not isinstance(self.day, date):
            raise ValueError("DateOverride.day must be a date")
        hours = tuple((start, end) for start, end in self.hours)
        for start, end in hours:
            _wall_clock_hours(start, end, f"DateOverride {self.day}")
        object.__setattr__(self, "hours", hours)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sort intervals and join those that overlap or touch."""
    merged: list[Interval] = []
    for current in sorted(intervals):
        if merged and current.start <= merged[-1].end:
            if current.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, current.end)
        else:
            merged.append(current)
    return merged


def subtract(base: Iterable[Interval], cut: Iterable[Interval]) -> list[Interval]:
    """Return the parts of ``base`` not covered by ``cut`` (sorted, merged)."""
    base_list = merge(base)
    cut_list = merge(cut)
    result: list[Interval] = []
    j = 0
    for piece in base_list:
        # Cuts ending before this piece cannot touch it or any later piece.
        while j < len(cut_list) and cut_list[j].end <= piece.start:
            j += 1
        cursor = piece.start
        k = j
        while k < len(cut_list) and cut_list[k].start < piece.end:
            if cut_list[k].start > cursor:
                result.append(Interval(cursor, cut_list[k].start))
            cursor = max(cursor, cut_list[k].end)
            if cursor >= piece.end:
                break
            k += 1
        if cursor < piece.end:
            result.append(Interval(cursor, piece.end))
    return result


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """Return the time covered by both ``a`` and ``b`` (sorted, merged)."""
    left = merge(a)
    right = merge(b)
    result: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i].start, right[j].start)
        end = min(left[i].end, right[j].end)
        if start < end:
            result.append(Interval(start, end))
        if left[i].end <= right[j].end:
            i += 1
        else:
            j += 1
    return result


def working_windows(
    weekly: Sequence[WeeklyHours],
    overrides: Sequence[DateOverride],
    time_off: Sequence[Interval],
    zone_name: str,
    first_day: date,
    last_day: date,
) -> list[Interval]:
    """Return the UTC working windows for the local dates ``first_day``..``last_day``.

    Each date uses its override's hours if it has one, otherwise the weekly
    hours for its weekday. Hours are wall-clock times in ``zone_name`` and are
    converted with ``local_to_utc``, so they keep their local time across DST.
    A span made empty or inverted by a DST gap (e.g. 02:30-03:15 on a
    spring-forward day) is dropped. Time off is subtracted and the result merged.
    """
    zone(zone_name)  # fail fast on unknown zones, even for an empty week
    if last_day < first_day:
        raise ValueError(f"last_day {last_day} is before first_day {first_day}")
    by_weekday: dict[int, list[tuple[time, time]]] = {d: [] for d in range(7)}
    for hours in weekly:
        by_weekday[hours.weekday].append((hours.start, hours.end))
    by_day: dict[date, tuple[tuple[time, time], ...]] = {}
    for override in overrides:
        if override.day in by_day:
            raise ValueError(f"more than one override for {override.day}")
        by_day[override.day] = override.hours

    spans: list[Interval] = []
    day = first_day
    while day <= last_day:
        hours_today = by_day[day] if day in by_day else by_weekday[day.weekday()]
        for start, end in hours_today:
            utc_start = local_to_utc(day, start, zone_name)
            utc_end = local_to_utc(day, end, zone_name)
            if utc_start < utc_end:
                spans.append(Interval(utc_start, utc_end))
        day += timedelta(days=1)
    return subtract(spans, time_off)


@dataclass(frozen=True)
class SlotRules:
    """How a service occupies time: visit length, buffers, recovery and slot step."""

    duration: timedelta
    buffer_before: timedelta = timedelta(0)
    buffer_after: timedelta = timedelta(0)
    recovery: timedelta = timedelta(0)
    step: timedelta = timedelta(minutes=15)
    needs_chair: bool = False

    def __post_init__(self) -> None:
        for name in ("duration", "buffer_before", "buffer_after", "recovery", "step"):
            if not isinstance(getattr(self, name), timedelta):
                raise ValueError(f"SlotRules.{name} must be a timedelta")
        if self.duration <= timedelta(0):
            raise ValueError("SlotRules.duration must be positive")
        if self.step <= timedelta(0):
            raise ValueError("SlotRules.step must be positive")
        for name in ("buffer_before", "buffer_after", "recovery"):
            if getattr(self, name) < timedelta(0):
                raise ValueError(f"SlotRules.{name} must not be negative")


def provider_block(start: datetime, rules: SlotRules) -> Interval:
    """Time the provider is held: ``[start - buffer_before, start + duration + buffer_after)``."""
    return Interval(start - rules.buffer_before, start + rules.duration + rules.buffer_after)


def visit_block(start: datetime, rules: SlotRules) -> Interval:
    """The visit itself: ``[start, start + duration)``."""
    return Interval(start, start + rules.duration)


def chair_block(start: datetime, rules: SlotRules) -> Interval:
    """Time the chair is held: ``[start, start + duration + recovery)``."""
    return Interval(start, start + rules.duration + rules.recovery)


def patient_block(start: datetime, rules: SlotRules) -> Interval:
    """Time the patient is held: the visit plus recovery, same as the chair."""
    return chair_block(start, rules)


class _BusyTimes:
    """Merged busy intervals with O(log n) overlap checks."""

    def __init__(self, busy: Iterable[Interval]) -> None:
        merged = merge(busy)
        self._starts = [interval.start for interval in merged]
        self._ends = [interval.end for interval in merged]

    def is_free(self, block: Interval) -> bool:
        """Tell whether ``block`` overlaps none of the busy intervals."""
        # The last busy interval starting before block.end has the latest end
        # of all such intervals (merged lists are disjoint and sorted).
        i = bisect_left(self._starts, block.end) - 1
        return i < 0 or self._ends[i] <= block.start


def _ceil_steps(span: timedelta, step: timedelta) -> int:
    """Smallest k with k * step >= span."""
    return -((-span) // step)


def find_slots(
    *,
    windows: Sequence[Interval],
    rules: SlotRules,
    provider_busy: Sequence[Interval],
    patient_busy: Sequence[Interval] = (),
    chairs_busy: Sequence[Sequence[Interval]] | None = None,
    earliest: datetime,
    latest: datetime,
) -> list[datetime]:
    """Return the bookable start instants (UTC, ascending, unique).

    Candidates are ``window.start + k * step`` for each window while the visit
    fits in that window, limited to ``earliest <= start <= latest``. A
    candidate is kept when its provider block overlaps no ``provider_busy``
    interval (other bookings' provider blocks, buffers included), its patient
    block overlaps no ``patient_busy`` interval and, if the service needs a
    chair, at least one chair in ``chairs_busy`` (one busy list per chair) is
    free for its chair block. No chairs means no slots for such services.
    ``earliest > latest`` gives no slots.
    """
    earliest = to_utc(earliest)
    latest = to_utc(latest)
    if earliest > latest:
        return []
    chairs: list[_BusyTimes] = []
    if rules.needs_chair:
        if not chairs_busy:
            return []
        chairs = [_BusyTimes(busy) for busy in chairs_busy]
    provider = _BusyTimes(provider_busy)
    patient = _BusyTimes(patient_busy)

    found: set[datetime] = set()
    for window in windows:
        last_start = min(window.end - rules.duration, latest)
        if last_start < window.start or last_start < earliest:
            continue
        first_k = _ceil_steps(earliest - window.start, rules.step) if earliest > window.start else 0
        last_k = (last_start - window.start) // rules.step
        for k in range(first_k, last_k + 1):
            start = window.start + k * rules.step
            if start in found:
                continue
            if not provider.is_free(provider_block(start, rules)):
                continue
            if not patient.is_free(patient_block(start, rules)):
                continue
            if rules.needs_chair:
                block = chair_block(start, rules)
                if not any(chair.is_free(block) for chair in chairs):
                    continue
            found.add(start)
    return sorted(found)


def first_free_chair(
    start: datetime, rules: SlotRules, chairs_busy: Sequence[Sequence[Interval]]
) -> int | None:
    """Return the index of the lowest-numbered chair free for ``chair_block(start)``, or None."""
    block = chair_block(start, rules)
    for index, busy in enumerate(chairs_busy):
        if not any(block.overlaps(interval) for interval in busy):
            return index
    return None
