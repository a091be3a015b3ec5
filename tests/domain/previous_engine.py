"""The slot engine as it was before it stopped at the limit (issue 14), kept verbatim as the
reference the new engine is checked against on random calendars
(tests/domain/test_engine_equality.py): every free start of every pair computed, then merged
and cut at the limit."""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime, time, timedelta

from service.domain.availability.slots import (
    _MIN,
    Interval,
    SlotRules,
    _chairs_taken,
    _forbidden,
    _merged,
    intersect,
    working_windows,
)
from service.domain.availability.slots import DateOverride as EngineOverride
from service.domain.providers.licensing import covered_days
from service.domain.time import local_to_utc, to_utc


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
