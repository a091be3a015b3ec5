"""The engine that stops at the limit and shares working windows gives the answers of the
engine it replaced (tests/domain/previous_engine.py), on random multi-provider calendars."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from datetime import date, time, timedelta
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.availability import search as search_module
from service.domain.availability.slots import (
    Interval,
    Spans,
    WeeklyHours,
    find_slots,
    iter_slots,
    to_us,
)
from service.domain.providers.licensing import Credential
from service.domain.time import local_date_range_to_utc
from tests.domain import previous_engine
from tests.domain.test_slots import (
    MINUTE,
    ZONES,
    days,
    local_spans,
    offsets_from,
    scheduling_problems,
    weekly_hours,
)

modest = settings(max_examples=120, deadline=None, database=None)


@modest
@given(scheduling_problems(), st.integers(0, 40))
def test_iter_slots_and_find_slots_match_the_previous_engine(p: dict, cut: int) -> None:
    args = {k: v for k, v in p.items() if k != "zone_name"}
    before = previous_engine.find_slots(**args)
    assert find_slots(**args) == before
    # Taken lazily, every prefix is the previous answer's prefix.
    assert list(itertools.islice(iter_slots(**args), cut)) == before[:cut]


credentials = st.lists(st.builds(
    Credential,
    jurisdiction=st.sampled_from(["US-AZ", "US-CA"]),
    kind=st.sampled_from(["license", "telehealth-registration"]),
    status=st.sampled_from(["active", "active", "expired"]),
    issued_on=st.dates(date(2025, 1, 1), date(2027, 6, 1)),
    expires_on=st.dates(date(2026, 1, 1), date(2029, 1, 1)),
).filter(lambda c: c.issued_on <= c.expires_on), min_size=1, max_size=2)


@st.composite
def calendars(draw: st.DrawFn) -> dict:
    """Several providers at one or two locations, sharing a few weekly patterns."""
    zone_name = draw(st.sampled_from(ZONES))
    first_day = draw(days)
    last_day = first_day + timedelta(days=draw(st.integers(0, 4)))
    start, end = local_date_range_to_utc(first_day, last_day, zone_name)
    minutes = (end - start) // MINUTE
    needs_chair = draw(st.booleans())
    service_type = SimpleNamespace(
        modality=draw(st.sampled_from(["telehealth", "in-person"])),
        duration_minutes=5 * draw(st.integers(1, 18)),
        buffer_before_minutes=5 * draw(st.integers(0, 3)),
        buffer_after_minutes=5 * draw(st.integers(0, 3)),
        recovery_minutes=5 * draw(st.integers(0, 3)),
        slot_interval_minutes=5 * draw(st.integers(1, 6)),
        needs_chair=needs_chair)
    locations = [SimpleNamespace(id=uuid.UUID(int=1000 + n), timezone=zone_name)
                 for n in range(draw(st.integers(1, 2)))]
    providers = [SimpleNamespace(id=uuid.UUID(int=n + 1)) for n in range(draw(st.integers(1, 6)))]
    schedule = search_module.Schedule(
        service_type=service_type,  # type: ignore[arg-type]
        locations={loc.id: loc for loc in locations},  # type: ignore[misc]
        providers={p.id: p for p in providers},  # type: ignore[misc]
        start=start, end=end, patient_state=draw(st.sampled_from([None, "AZ", "CA"])))
    patterns = draw(st.lists(weekly_hours(), min_size=1, max_size=2))
    shared_credentials = draw(credentials)
    for provider in providers:
        for location in locations:
            if draw(st.booleans()) or len(patterns) == 1:
                schedule.weekly[(provider.id, location.id)] = draw(st.sampled_from(patterns))
            if draw(st.integers(0, 4)) == 0:
                day = draw(st.sampled_from([first_day, last_day]))
                schedule.overrides[(provider.id, location.id)][day] = draw(
                    st.lists(local_spans(), max_size=2))
        schedule.credentials[provider.id] = (
            shared_credentials if draw(st.booleans()) else draw(credentials))
        schedule.time_off[provider.id] = draw(offsets_from(start, minutes, 600, 2))
        schedule.provider_busy[provider.id] = draw(offsets_from(start, minutes, 120, 8))
    schedule.patient_busy = draw(offsets_from(start, minutes, 120, 3))
    if needs_chair:
        for location in locations:
            schedule.chairs_busy[location.id] = draw(
                st.lists(offsets_from(start, minutes, 240, 4), max_size=2))
    earliest = start + draw(st.integers(-60, minutes)) * MINUTE
    latest = end + draw(st.integers(-minutes - 60, 60)) * MINUTE
    return dict(schedule=schedule, providers=providers, locations=locations,
                earliest=earliest, latest=latest, limit=draw(st.integers(1, 60)))


def assert_search_as_before(c: dict, wanted: int | None = None) -> None:
    """The merged search's first ``limit`` starts, and whether more follow, are the previous
    engine's (whatever the span-sizing hint ``wanted``)."""
    schedule = c["schedule"]
    before, truncated = previous_engine.search(
        schedule, c["providers"], c["locations"], earliest=c["earliest"], latest=c["latest"],
        limit=c["limit"])
    merged = search_module.first_starts(schedule, c["providers"], c["locations"],
                                        earliest=c["earliest"], latest=c["latest"],
                                        wanted=wanted)
    assert list(itertools.islice(merged, c["limit"])) == before
    assert (next(merged, None) is not None) == truncated


@modest
@given(calendars())
def test_search_stops_at_the_limit_with_the_previous_answers(c: dict) -> None:
    schedule = c["schedule"]
    assert_search_as_before(c)
    # Shared windows are the windows each pair had on its own.
    for provider in c["providers"]:
        for location in c["locations"]:
            assert schedule.windows(provider.id, location.id) == previous_engine.windows(
                schedule, provider.id, location.id)


@modest
@given(calendars(), st.integers(1, 80))
def test_spans_sized_by_the_starts_wanted_give_the_same_answers(c: dict, wanted: int) -> None:
    """Spans sized by the starts found so far (a hint below, at or above the limit) change
    which starts are computed together, never which are found."""
    assert_search_as_before(c, wanted=wanted)
    assert_search_as_before(c, wanted=c["limit"] + 1)


MICROSECOND = timedelta(microseconds=1)
fraction = st.integers(-999_999, 999_999)  # up to a second either way, to the microsecond


@st.composite
def fine_calendars(draw: st.DrawFn) -> dict:
    """``calendars`` with instants off the minute grid: every busy interval, time off, the
    bounds and the working hours moved by up to a second, to the microsecond (the engine
    counts in integer microseconds: its answers must stay exactly those of datetimes)."""
    c = draw(calendars())
    schedule = c["schedule"]

    def moved(intervals: list[Interval]) -> list[Interval]:
        result = []
        for interval in intervals:
            start = interval.start + draw(fraction) * MICROSECOND
            end = interval.end + draw(fraction) * MICROSECOND
            result.append(Interval(start, end) if start < end else interval)
        return result

    def finer(at: time) -> time:
        return at.replace(second=draw(st.integers(0, 59)),
                          microsecond=draw(st.integers(0, 999_999)))

    for pair, hours in list(schedule.weekly.items()):
        schedule.weekly[pair] = [WeeklyHours(h.weekday, finer(h.start), finer(h.end))
                                 for h in hours]
    for provider_id in list(schedule.provider_busy):
        schedule.provider_busy[provider_id] = moved(schedule.provider_busy[provider_id])
        schedule.time_off[provider_id] = moved(schedule.time_off[provider_id])
    schedule.patient_busy = moved(schedule.patient_busy)
    for location_id, chairs in list(schedule.chairs_busy.items()):
        schedule.chairs_busy[location_id] = [moved(chair) for chair in chairs]
    c["earliest"] += draw(fraction) * MICROSECOND
    c["latest"] += draw(fraction) * MICROSECOND
    return c


@modest
@given(fine_calendars())
def test_integer_engine_gives_the_datetime_answers_off_the_minute_grid(c: dict) -> None:
    schedule = c["schedule"]
    assert_search_as_before(c)
    # One pair at a time (the booking's re-check): every start the datetime engine finds,
    # and each of them on its own.
    for provider in c["providers"]:
        for location in c["locations"]:
            windows = previous_engine.windows(schedule, provider.id, location.id)
            assert schedule.windows(provider.id, location.id) == windows
            found = previous_engine.find_slots(
                windows=windows, rules=schedule.rules,
                provider_busy=schedule.provider_busy.get(provider.id, []),
                patient_busy=schedule.patient_busy, chairs_busy=schedule.chairs(location.id),
                earliest=c["earliest"], latest=c["latest"])
            assert schedule.find(provider.id, location.id, earliest=c["earliest"],
                                 latest=c["latest"]) == found
            for start in found[:3]:
                assert schedule.find(provider.id, location.id, earliest=start,
                                     latest=start) == [start]


def _as_spans(intervals: Sequence[Interval]) -> Spans:
    return Spans.of_pairs((to_us(i.start), to_us(i.end)) for i in intervals)


@modest
@given(fine_calendars())
def test_busy_time_as_integer_spans_gives_the_same_answers(c: dict) -> None:
    """``load_schedule`` hands busy time over as ``Spans`` (sorted integer microseconds):
    the engine's answers are those of the same intervals as datetimes."""
    schedule = c["schedule"]
    before, truncated = previous_engine.search(
        schedule, c["providers"], c["locations"], earliest=c["earliest"], latest=c["latest"],
        limit=c["limit"])
    for provider_id in list(schedule.provider_busy):
        schedule.provider_busy[provider_id] = _as_spans(schedule.provider_busy[provider_id])
    schedule.patient_busy = _as_spans(schedule.patient_busy)
    for location_id, chairs in list(schedule.chairs_busy.items()):
        schedule.chairs_busy[location_id] = [_as_spans(chair) for chair in chairs]
    merged = search_module.first_starts(schedule, c["providers"], c["locations"],
                                        earliest=c["earliest"], latest=c["latest"])
    assert list(itertools.islice(merged, c["limit"])) == before
    assert (next(merged, None) is not None) == truncated
    for busy in schedule.provider_busy.values():  # read back as the intervals they stand for
        assert list(busy) == sorted(busy, key=lambda i: (i.start, i.end))
