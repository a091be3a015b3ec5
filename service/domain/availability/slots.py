"""Working windows and bookable slots, computed over sorted interval lists.

All instants are timezone-aware UTC. Intervals are half-open ``[start, end)``.
Set operations (merge, subtract, intersect) are linear sweeps over sorted,
merged lists.

``find_slots`` turns each busy interval into the open range of starts it
forbids and reads the free starts off the gaps between those ranges, so its cost
grows with the number of bookings and of slots found, not with the number of
candidate starts, and no Interval is built per candidate. It counts in integer
microseconds since the epoch (``to_us``): exact for every instant a datetime can
hold, and a datetime is made only for each start handed out (``from_us``).
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import accumulate, repeat
from operator import add, attrgetter, floordiv, ge, itemgetter, le, sub

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
    "free_keys",
    "Spans",
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


# Inside the engine instants are whole microseconds since the Unix epoch (plain integers):
# every instant and length it is given is exact to the microsecond, so integer arithmetic
# gives exactly the answers of datetime arithmetic, at a fraction of its cost. Datetimes are
# made only for the starts actually handed out.

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
_START = attrgetter("start")
_END = attrgetter("end")
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)


def to_us(instant: datetime) -> int:
    """An aware instant as whole microseconds since the Unix epoch (exact)."""
    return (instant - EPOCH) // MICROSECOND


def from_us(us: int) -> datetime:
    """The UTC instant ``us`` microseconds after the Unix epoch."""
    return EPOCH + MICROSECOND * us


_FIRST_US = to_us(datetime.min.replace(tzinfo=UTC))
_LAST_US = to_us(datetime.max.replace(tzinfo=UTC))


class Blocked:
    """The open ranges of starts that busy time forbids to a block ``[s - before, s + after)``
    (``before``, ``after`` in microseconds; ``after`` positive): a busy ``[b0, b1)`` forbids
    ``b0 - after < s < b1 + before``.

    Kept in integer microseconds as two lists, ``lows`` (ascending) and ``reach`` (for each
    range, the highest end of it and of the ranges before it), so a start ``s`` is forbidden
    exactly when ``reach[i - 1] > s`` for ``i = bisect_left(lows, s)``: no merging loop, the
    lists are built by C-level maps. Taken in from the busy intervals in time order only as
    far as a question reaches (``near``): a search that stops after a few days never converts
    the bookings of the weeks after them."""

    __slots__ = ("_busy", "_starts", "_ends", "_next", "_before", "_after", "lows", "reach")

    def __init__(self, busy: Iterable[Interval], before: int, after: int) -> None:
        if isinstance(busy, Spans):  # already sorted integer microseconds: taken as they are
            self._busy: list[Interval] | None = None
            self._starts, self._ends = busy.starts, busy.ends
        else:
            self._busy = sorted(busy, key=_START)
        self._next = 0
        self._before, self._after = before, after
        self.lows: list[int] = []
        self.reach: list[int] = []

    def _upto(self, high: int) -> None:
        """Take in every range that opens before ``high``."""
        if self._busy is None:
            self._upto_us(high)
            return
        busy, index = self._busy, self._next
        if index == len(busy):
            return
        limit = high + self._after  # a range opens before high: its busy interval starts before
        stop = (len(busy) if limit > _LAST_US else index if limit <= _FIRST_US
                else bisect_left(busy, from_us(limit), index, key=_START))
        if stop == index:
            return
        taken = busy[index:stop]
        self._next = stop
        self.lows += map(sub, map(floordiv, map(sub, map(_START, taken), repeat(EPOCH)),
                                  repeat(MICROSECOND)), repeat(self._after))
        ends = map(add, map(floordiv, map(sub, map(_END, taken), repeat(EPOCH)),
                            repeat(MICROSECOND)), repeat(self._before))
        reach = self.reach
        if reach:  # (accumulate gives its initial value first: skipped)
            reach += itertools.islice(accumulate(ends, max, initial=reach[-1]), 1, None)
        else:
            reach += accumulate(ends, max)

    def _upto_us(self, high: int) -> None:
        """``_upto`` of busy time given as ``Spans``: bisection and slices of integers."""
        starts, index = self._starts, self._next
        if index == len(starts):
            return
        stop = bisect_left(starts, high + self._after, index)
        if stop == index:
            return
        self._next = stop
        self.lows += map(sub, starts[index:stop], repeat(self._after))
        before, ends, reach = self._before, self._ends[index:stop], self.reach
        # Busy time rarely overlaps itself: its ends then ascend with its starts, and the
        # running maximum is the ends themselves (a C-level check, not a call of max per
        # range).
        if (not reach or ends[0] + before >= reach[-1]) and all(
                map(le, ends, itertools.islice(ends, 1, None))):
            reach += map(add, ends, repeat(before)) if before else ends
        elif reach:
            reach += itertools.islice(accumulate(map(add, ends, repeat(before)), max,
                                                 initial=reach[-1]), 1, None)
        else:
            reach += accumulate(map(add, ends, repeat(before)), max)

    def upto(self, high: int) -> tuple[list[int], list[int]]:
        """Every range taken in so far (``lows``, ``reach``), at least those opening before
        ``high`` (ranges past ``high`` forbid nothing up to it)."""
        if self._busy is None:
            self._upto_us(high)
        else:
            self._upto(high)
        return self.lows, self.reach

    def near(self, low: int, high: int) -> tuple[list[int], list[int]]:
        """The ranges that may hold some instant of ``[low, high]`` (``lows``, ``reach``).

        (Ranges taken in later open after ``high``: they change nothing up to ``high``.)"""
        self._upto(high)
        lows, reach = self.lows, self.reach
        first = bisect_right(reach, low)  # the ranges before it end at or before low
        stop = bisect_left(lows, high, first)
        return lows[first:stop], reach[first:stop]


class Spans(Sequence[Interval]):
    """Busy intervals held as integer microseconds (``to_us``): ``starts`` ascending (ties by
    end) and ``ends`` paired with them, each ``start < end``. ``Blocked`` takes them as they
    are (no conversion, no sort); read as a sequence they are the ``Interval`` s they stand
    for (built on first read, for callers that need datetimes). Immutable: a schedule whose
    busy time changes is given a new list."""

    __slots__ = ("starts", "ends", "_intervals")

    def __init__(self, starts: list[int], ends: list[int]) -> None:
        self.starts, self.ends = starts, ends
        self._intervals: tuple[Interval, ...] | None = None

    @classmethod
    def of_pairs(cls, pairs: Iterable[tuple[int, int]]) -> Spans:
        """From ``(start, end)`` pairs in any order."""
        ordered = sorted(pairs)
        return cls(list(map(_FIRST, ordered)), list(map(_SECOND, ordered)))

    @property
    def intervals(self) -> tuple[Interval, ...]:
        if self._intervals is None:
            self._intervals = tuple(Interval(from_us(start), from_us(end))
                                    for start, end in zip(self.starts, self.ends))
        return self._intervals

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index):  # type: ignore[no-untyped-def,override]
        return self.intervals[index]

    def __iter__(self) -> Iterator[Interval]:
        return iter(self.intervals)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Spans):
            return self.starts == other.starts and self.ends == other.ends
        if isinstance(other, list | tuple):
            return list(self.intervals) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Spans({list(self.intervals)!r})"


def union(parts: Sequence[tuple[list[int], list[int]]]) -> tuple[list[int], list[int]]:
    """The union of ranges given as (``lows``, ``reach``) lists (see ``Blocked``), the same
    way. (A range's reach stands for its end: the union is the same.)"""
    filled = [part for part in parts if part[0]]
    if len(filled) < 2:
        return filled[0] if filled else ([], [])
    pairs = sorted(itertools.chain.from_iterable(zip(*part) for part in filled))
    return list(map(_FIRST, pairs)), list(accumulate(map(_SECOND, pairs), max))


def _disjoint(lows: list[int], reach: list[int]) -> tuple[list[int], list[int]]:
    """The same ranges merged: disjoint and sorted (ranges that only touch stay apart)."""
    if not lows:
        return [], []
    opens = list(map(ge, lows[1:], reach))  # range k opens a new group: lows[k] >= reach[k-1]
    return ([lows[0], *itertools.compress(lows[1:], opens)],
            [*itertools.compress(reach, opens), reach[-1]])


def all_chairs_taken(chairs: Sequence[Blocked], low: int, high: int
                     ) -> tuple[list[int], list[int]]:
    """The open ranges of starts in ``[low, high]`` at which every chair is taken (each
    chair's ``Blocked`` ranges: the starts its busy time forbids to the chair's block),
    disjoint and sorted (so their ends are their reach)."""
    events: list[tuple[int, int]] = []
    for chair in chairs:
        lows, highs = _disjoint(*chair.near(low, high))
        if not lows:
            return [], []  # a chair never taken then
        events += zip(lows, repeat(1))
        events += zip(highs, repeat(-1))
    events.sort()
    count, taken, opened = len(chairs), 0, 0
    result_lows: list[int] = []
    result_highs: list[int] = []
    index, size = 0, len(events)
    while index < size:
        instant = events[index][0]
        if taken == count:
            result_lows.append(opened)
            result_highs.append(instant)
        # The instant itself is free for every chair with a range starting or ending there.
        while index < size and events[index][0] == instant:
            taken += events[index][1]
            index += 1
        if taken == count:
            opened = instant
    return result_lows, result_highs


def free_runs(window_starts: Sequence[int], window_ends: Sequence[int], lows: Sequence[int],
              reach: Sequence[int], *, duration: int, step: int, low: int, high: int
              ) -> Iterator[tuple[int, int]]:
    """The free starts, as runs ``(first, last)`` of the grid ``first, first + step, ..,
    last``, window by window, in microseconds.

    The candidates of a window are ``window start + k * step`` while the visit fits in it,
    within ``[low, high]``; those inside a forbidden open range (``lows``, ``reach``: see
    ``Blocked``) are skipped, each run of ranges jumped over in one step."""
    count = len(lows)
    for origin, end in zip(window_starts, window_ends):
        top = min(end - duration, high)  # the last start allowed in this window
        if top < low:
            continue
        # The first grid start (origin + k * step) at or after max(origin, low).
        start = origin if low <= origin else origin - ((origin - low) // step) * step
        while start <= top:
            index = bisect_left(lows, start)  # the ranges before it open before start
            if index and reach[index - 1] > start:  # inside one: jump past its reach
                start -= ((start - reach[index - 1]) // step) * step
                continue
            # Free up to the next range's low (itself free: the ranges are open).
            free_until = top if index == count or lows[index] > top else lows[index]
            last = start + ((free_until - start) // step) * step
            yield start, last
            start = last + step


def free_keys(window_starts: Sequence[int], window_ends: Sequence[int], first: int, stop: int,
              lows: Sequence[int], reach: Sequence[int], keys: list[int], *, duration: int,
              step: int, low: int, high: int, rank: int, count: int) -> None:
    """``free_runs`` of the windows ``first..stop - 1``, each free start ``s`` added to
    ``keys`` as ``s * count + rank`` (a merged search's sort key, see ``first_starts``).

    No generator, no slices: one call per pair and span of a search, the ranges walked by
    bisection from where the previous window left off (starts only grow: the windows are
    sorted and apart). ``lows`` and ``reach`` may hold ranges opening after ``high``: they
    forbid nothing up to it."""
    size = len(lows)
    key_step = step * count
    extend = keys.extend
    index = 0
    for window in range(first, stop):
        origin = window_starts[window]
        top = window_ends[window] - duration  # the last start allowed in this window
        if top > high:
            top = high
        if top < low:
            continue
        # The first grid start (origin + k * step) at or after max(origin, low).
        start = origin if low <= origin else origin - ((origin - low) // step) * step
        while start <= top:
            index = bisect_left(lows, start, index)  # the ranges before it open before start
            if index and reach[index - 1] > start:  # inside one: jump past its reach
                start -= ((start - reach[index - 1]) // step) * step
                continue
            # Free up to the next range's low (itself free: the ranges are open).
            free_until = top if index == size or lows[index] > top else lows[index]
            last = start + ((free_until - start) // step) * step
            extend(range(start * count + rank, last * count + rank + 1, key_step))
            start = last + step


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
    are prepared on the first ``next()`` (in integer microseconds, see ``Blocked``); each
    start then costs one addition.

    ``ordered`` (the default) promises ascending unique starts also for overlapping windows
    (they are merged first); ``find_slots`` passes False and sorts itself."""
    earliest_us = to_us(to_utc(earliest))
    latest_us = to_us(to_utc(latest))
    windows = tuple(windows)
    if earliest_us > latest_us or not windows:
        return
    if rules.needs_chair and not chairs_busy:
        return
    if ordered and not _apart(windows):
        windows = tuple(merge(windows))
    duration, step = rules.duration // MICROSECOND, rules.step // MICROSECOND
    before, after = rules.buffer_before // MICROSECOND, rules.buffer_after // MICROSECOND
    held = duration + rules.recovery // MICROSECOND  # the patient's and the chair's block
    starts = [to_us(w.start) for w in windows]
    ends = [to_us(w.end) for w in windows]
    # Every start considered lies in [low, high]: within the bounds and some window.
    low = max(earliest_us, min(starts))
    high = min(latest_us, max(ends) - duration)
    if low > high:
        return
    parts = [Blocked(provider_busy, before, duration + after).near(low, high)]
    if patient_busy:
        parts.append(Blocked(patient_busy, 0, held).near(low, high))
    if rules.needs_chair and chairs_busy:  # (no chairs: returned above)
        parts.append(all_chairs_taken([Blocked(busy, 0, held) for busy in chairs_busy],
                                      low, high))
    lows, highs = union(parts)
    for first, last in free_runs(starts, ends, lows, highs, duration=duration, step=step,
                                 low=low, high=high):
        yield from map(from_us, range(first, last + 1, step))


def first_free_chair(
    start: datetime, rules: SlotRules, chairs_busy: Sequence[Sequence[Interval]]
) -> int | None:
    """Return the index of the lowest-numbered chair free for ``chair_block(start)``, or None."""
    block = chair_block(start, rules)
    for index, busy in enumerate(chairs_busy):
        if not any(block.overlaps(interval) for interval in busy):
            return index
    return None
