"""The slot engine as it was before it stopped at the limit (issue 14), kept verbatim as the
reference the new engine is checked against on random calendars
(tests/domain/test_engine_equality.py): every free start of every pair computed, then merged
and cut at the limit. Datetimes throughout: its helpers, moved here from slots.py when the
engine turned to integer microseconds, are kept verbatim too."""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta

from service.domain.availability.slots import DateOverride as EngineOverride
from service.domain.availability.slots import (
    Interval,
    SlotRules,
    intersect,
    working_windows,
)
from service.domain.providers.licensing import covered_days
from service.domain.time import local_to_utc, to_utc

# The engine's helpers of that time (the engine now works in integer microseconds).

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
    earliest = to_utc(earliest)
    latest = to_utc(latest)
    duration, step = rules.duration, rules.step
    windows = tuple(windows)
    if earliest > latest or not windows:
        return []
    if rules.needs_chair and not chairs_busy:
        return []
    low = max(earliest, min(w.start for w in windows))
    high = min(latest, max(w.end for w in windows) - duration)
    if low > high:
        return []
    held = duration + rules.recovery
    ranges = _forbidden(provider_busy, rules.buffer_before, duration + rules.buffer_after,
                        low, high)
    if patient_busy:
        ranges += _forbidden(patient_busy, timedelta(0), held, low, high)
    if rules.needs_chair and chairs_busy:
        ranges += [r for r in _chairs_taken(chairs_busy, held) if r[1] > low and r[0] < high]
    lows, highs = _merged(ranges)
    count = len(lows)

    found: list[datetime] = []
    ordered = True
    previous_end = _MIN
    for window in windows:
        origin = window.start
        if origin < previous_end:
            ordered = False
        previous_end = max(previous_end, window.end)
        top = min(window.end - duration, high)
        start = origin if low <= origin else origin - ((origin - low) // step) * step
        index = bisect_right(highs, start)
        while start <= top:
            while index < count and highs[index] <= start:
                index += 1
            if index < count and lows[index] < start:
                start -= ((start - highs[index]) // step) * step
                continue
            free_until = top if index == count or lows[index] > top else lows[index]
            steps = (free_until - start) // step + 1
            found += [start + k * step for k in range(steps)]
            start += steps * step
    return found if ordered else sorted(set(found))


def windows(schedule, provider_id, location_id) -> list[Interval]:  # type: ignore[no-untyped-def]
    """``Schedule.windows`` as it was: every pair's windows built from scratch."""
    location = schedule.locations[location_id]
    weekly = schedule.weekly.get((provider_id, location_id), [])
    overrides = schedule.overrides.get((provider_id, location_id), {})
    if not weekly and not overrides:
        return []
    first, last = schedule.local_days(location)
    working = working_windows(
        weekly, [EngineOverride(day=day, hours=tuple(hours)) for day, hours in overrides.items()],
        schedule.time_off.get(provider_id, []), location.timezone, first, last)
    licensed = [
        Interval(local_to_utc(d1, time(0), location.timezone),
                 local_to_utc(d2 + timedelta(days=1), time(0), location.timezone))
        for d1, d2 in covered_days(schedule.credentials.get(provider_id, []), first=first,
                                   last=last, modality=schedule.service_type.modality,
                                   patient_state=schedule.patient_state)
    ]
    return intersect(working, licensed)


def search(schedule, providers, locations, *, earliest, latest, limit):  # type: ignore[no-untyped-def]
    """The search's merge as it was: (starts, truncated)."""
    per_pair = [
        [(start_at, provider.id, location.id) for start_at in find_slots(
            windows=windows(schedule, provider.id, location.id), rules=schedule.rules,
            provider_busy=schedule.provider_busy.get(provider.id, []),
            patient_busy=schedule.patient_busy, chairs_busy=schedule.chairs(location.id),
            earliest=earliest, latest=latest)]
        for location in locations for provider in providers
    ]
    merged = heapq.merge(*per_pair)
    found = list(itertools.islice(merged, limit))
    return found, next(merged, None) is not None
