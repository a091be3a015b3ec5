"""Working windows and bookable slots, computed over sorted interval lists.

All instants are timezone-aware UTC. Intervals are half-open ``[start, end)``.
Set operations (merge, subtract, intersect) are linear sweeps over sorted,
merged lists.

``find_slots`` turns each busy interval into the open range of starts it
forbids and reads the free starts off the gaps between those ranges, so its cost
grows with the number of bookings and of slots found, not with the number of
candidate starts, and no Interval is built per candidate.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter

from service.domain.time import require_aware, to_utc, zone

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
    "iter_slots",
    "first_free_chair",
]


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open span of time ``[start, end)`` between two aware instants, stored in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        start, end = self.start, self.end
        # Fast path: plain datetimes already in UTC (what the database and this module
        # produce) are stored as they are; anything else is checked and converted.
        if not (start.__class__ is datetime and end.__class__ is datetime
                and start.tzinfo is UTC and end.tzinfo is UTC):
            start = to_utc(require_aware(start, "Interval.start"))
            end = to_utc(require_aware(end, "Interval.end"))
            object.__setattr__(self, "start", start)
            object.__setattr__(self, "end", end)
        if not start < end:
            raise ValueError(
                f"Interval start {start.isoformat()} must be before end {end.isoformat()}"
            )

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


_BOUNDS = attrgetter("start", "end")  # the dataclass order, compared in C


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sort intervals and join those that overlap or touch."""
    merged: list[Interval] = []
    for current in sorted(intervals, key=_BOUNDS):
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
    if not cut_list:
        return base_list
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
            # Intervals are immutable: an uncut piece is kept as it is.
            result.append(piece if cursor == piece.start else Interval(cursor, piece.end))
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
            if start == left[i].start and end == left[i].end:
                result.append(left[i])  # immutable: the common part is this very interval
            elif start == right[j].start and end == right[j].end:
                result.append(right[j])
            else:
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
    tz = zone(zone_name)  # fail fast on unknown zones, even for an empty week
    if last_day < first_day:
        raise ValueError(f"last_day {last_day} is before first_day {first_day}")
    # Wall-clock times with fold=0, as ``local_to_utc`` reads them (see its DST rules);
    # combining them with the zone here does the same conversion without re-checking
    # times that WeeklyHours and DateOverride have already validated.
    by_weekday: dict[int, list[tuple[time, time]]] = {d: [] for d in range(7)}
    for hours in weekly:
        by_weekday[hours.weekday].append((hours.start.replace(fold=0),
                                          hours.end.replace(fold=0)))
    by_day: dict[date, list[tuple[time, time]]] = {}
    for override in overrides:
        if override.day in by_day:
            raise ValueError(f"more than one override for {override.day}")
        by_day[override.day] = [(start.replace(fold=0), end.replace(fold=0))
                                for start, end in override.hours]

    combine = datetime.combine
    spans: list[Interval] = []
    day = first_day
    one_day = timedelta(days=1)
    while day <= last_day:
        hours_today = by_day[day] if day in by_day else by_weekday[day.weekday()]
        for start, end in hours_today:
            utc_start = combine(day, start, tz).astimezone(UTC)
            utc_end = combine(day, end, tz).astimezone(UTC)
            if utc_start < utc_end:
                spans.append(Interval(utc_start, utc_end))
        day += one_day
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


Ranges = list[tuple[datetime, datetime]]
_MIN = datetime.min.replace(tzinfo=UTC)


def _forbidden(busy: Iterable[Interval], before: timedelta, after: timedelta,
               low: datetime, high: datetime) -> Ranges:
    """The starts a block ``[s - before, s + after)`` may not take: one open range
    ``(b0 - after, b1 + before)`` per busy ``[b0, b1)`` (the block overlaps the busy interval
    exactly when ``b0 - after < s < b1 + before``), for the busy intervals that can forbid a
    start in ``[low, high]``. Unsorted, unmerged."""
    reach_low, reach_high = low - before, high + after
    return [(i.start - after, i.end + before) for i in busy
            if i.end > reach_low and i.start < reach_high]


def _merged(ranges: Ranges) -> tuple[list[datetime], list[datetime]]:
    """Sort open ranges and join those that overlap (ranges that only touch stay apart: the
    instant between them is free). Returns parallel lists of lows and highs."""
    lows: list[datetime] = []
    highs: list[datetime] = []
    for low, high in sorted(ranges):
        if highs and low < highs[-1]:
            if high > highs[-1]:
                highs[-1] = high
        else:
            lows.append(low)
            highs.append(high)
    return lows, highs


def _all_chairs_taken(chairs_busy: Sequence[Sequence[Interval]], held: timedelta) -> Ranges:
    """The open ranges of starts at which every chair is taken for ``[s, s + held)``."""
    events: list[tuple[datetime, int]] = []
    for busy in chairs_busy:
        lows, highs = _merged([(i.start - held, i.end) for i in busy])
        if not lows:
            return []  # a chair that is never taken
        events += [(low, 1) for low in lows]
        events += [(high, -1) for high in highs]
    events.sort()
    chairs, taken, opened, result = len(chairs_busy), 0, _MIN, []
    index, count = 0, len(events)
    while index < count:
        instant = events[index][0]
        if taken == chairs:
            result.append((opened, instant))
        # The instant itself is free for every chair with a range starting or ending there.
        while index < count and events[index][0] == instant:
            taken += events[index][1]
            index += 1
        if taken == chairs:
            opened = instant
    return result

# The chairs of a location are the same for every provider searched there, and a search
# calls find_slots once per provider: their combined availability is kept for the last
# chairs seen. The memo is compared by content (immutable Intervals; tuple comparison tries
# identity first), so a changed list of chairs is never answered from it. On a match the
# newest snapshot is kept, so the next calls of the same search compare by identity only.
_chairs_memo: list[tuple[timedelta, tuple[tuple[Interval, ...], ...], Ranges] | None] = [None]


def _chairs_taken(chairs_busy: Sequence[Sequence[Interval]], held: timedelta) -> Ranges:
    snapshot = tuple(map(tuple, chairs_busy))
    memo = _chairs_memo[0]
    if memo is not None and memo[0] == held and memo[1] == snapshot:
        taken = memo[2]
    else:
        taken = _all_chairs_taken(snapshot, held)
    _chairs_memo[0] = (held, snapshot, taken)
    return taken


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
    windows = tuple(windows)
    found = list(iter_slots(windows=windows, rules=rules, provider_busy=provider_busy,
                            patient_busy=patient_busy, chairs_busy=chairs_busy,
                            earliest=earliest, latest=latest, ordered=False))
    return found if _apart(windows) else sorted(set(found))


def _apart(windows: Sequence[Interval]) -> bool:
    """Sorted and apart (touching is fine): the starts come out sorted and unique."""
    return all(a.end <= b.start for a, b in zip(windows, windows[1:]))


def iter_slots(
    *,
    windows: Sequence[Interval],
    rules: SlotRules,
    provider_busy: Sequence[Interval],
    patient_busy: Sequence[Interval] = (),
    chairs_busy: Sequence[Sequence[Interval]] | None = None,
    earliest: datetime,
    latest: datetime,
    ordered: bool = True,
) -> Iterator[datetime]:
    """``find_slots``, one start at a time: a caller that needs only the first few (a search
    with a limit) stops early and the later starts are never computed. The forbidden ranges
    are prepared on the first ``next()``; each start then costs one addition.

    ``ordered`` (the default) promises ascending unique starts also for overlapping windows
    (they are merged first); ``find_slots`` passes False and sorts itself."""
    earliest = to_utc(earliest)
    latest = to_utc(latest)
    duration, step = rules.duration, rules.step
    windows = tuple(windows)
    if earliest > latest or not windows:
        return
    if rules.needs_chair and not chairs_busy:
        return
    if ordered and not _apart(windows):
        windows = tuple(merge(windows))
    # Every start considered lies in [low, high]: within the bounds and some window.
    low = max(earliest, min(w.start for w in windows))
    high = min(latest, max(w.end for w in windows) - duration)
    if low > high:
        return
    held = duration + rules.recovery  # the patient's and the chair's block
    ranges = _forbidden(provider_busy, rules.buffer_before, duration + rules.buffer_after,
                        low, high)
    if patient_busy:
        ranges += _forbidden(patient_busy, timedelta(0), held, low, high)
    if rules.needs_chair and chairs_busy:  # (no chairs: returned above)
        ranges += [r for r in _chairs_taken(chairs_busy, held) if r[1] > low and r[0] < high]
    lows, highs = _merged(ranges)
    count = len(lows)

    for window in windows:
        origin = window.start
        top = min(window.end - duration, high)  # the last start allowed in this window
        if top < low:
            continue
        # The first grid start (origin + k * step) at or after max(origin, low).
        start = origin if low <= origin else origin - ((origin - low) // step) * step
        index = bisect_right(highs, start)
        while start <= top:
            # Invariant: the ranges before ``index`` end at or before ``start``.
            while index < count and highs[index] <= start:
                index += 1
            if index < count and lows[index] < start:  # inside (low, high): jump past it
                start -= ((start - highs[index]) // step) * step
                continue
            free_until = top if index == count or lows[index] > top else lows[index]
            while start <= free_until:
                yield start
                start += step


def first_free_chair(
    start: datetime, rules: SlotRules, chairs_busy: Sequence[Sequence[Interval]]
) -> int | None:
    """Return the index of the lowest-numbered chair free for ``chair_block(start)``, or None."""
    block = chair_block(start, rules)
    for index, busy in enumerate(chairs_busy):
        if not any(block.overlaps(interval) for interval in busy):
            return index
    return None
