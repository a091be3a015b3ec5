"""Tests for service.domain.availability.slots: interval laws, working windows, slots."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.availability.slots import (
    DateOverride,
    Interval,
    SlotRules,
    WeeklyHours,
    chair_block,
    find_slots,
    first_free_chair,
    intersect,
    merge,
    patient_block,
    provider_block,
    subtract,
    visit_block,
    working_windows,
)
from service.domain.time import UTC, in_zone, local_date_range_to_utc, local_to_utc, to_utc

DENVER = "America/Denver"
PHOENIX = "America/Phoenix"
ZONES = [PHOENIX, DENVER]
US_DST_DATES = [
    date(2026, 3, 8), date(2026, 11, 1),
    date(2027, 3, 14), date(2027, 11, 7),
    date(2028, 3, 12), date(2028, 11, 5),
]
MINUTE = timedelta(minutes=1)
WEEKDAYS = range(7)
modest = settings(max_examples=150, deadline=None, database=None)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def mins(n: int) -> timedelta:
    return timedelta(minutes=n)


def hours(a: float, b: float) -> tuple[time, time]:
    return (time(int(a), int(a * 60) % 60), time(int(b), int(b * 60) % 60))


NINE_TO_FIVE = [WeeklyHours(d, time(9), time(17)) for d in WEEKDAYS]


def phoenix_windows(
    first: date,
    last: date,
    overrides: list[DateOverride] | None = None,
    time_off: list[Interval] | None = None,
) -> list[Interval]:
    """09:00-17:00 every day in Phoenix, with optional overrides and time off."""
    return working_windows(NINE_TO_FIVE, overrides or [], time_off or [], PHOENIX, first, last)


# --- strategies ------------------------------------------------------------

days = st.one_of(
    st.sampled_from(US_DST_DATES),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)),
)
zones = st.sampled_from(ZONES)

GRID_ORIGIN = utc(2026, 3, 8)


@st.composite
def grid_intervals(draw: st.DrawFn, max_size: int = 8) -> list[Interval]:
    """Intervals on an integer-minute grid near a DST change, for the set laws."""
    spans = draw(
        st.lists(
            st.tuples(st.integers(0, 200), st.integers(1, 60)),
            max_size=max_size,
        )
    )
    return [Interval(GRID_ORIGIN + a * MINUTE, GRID_ORIGIN + (a + n) * MINUTE) for a, n in spans]


def covered_minutes(intervals: list[Interval]) -> set[int]:
    """Model: the set of grid minutes covered (endpoints are whole minutes)."""
    cells: set[int] = set()
    for i in intervals:
        cells.update(range((i.start - GRID_ORIGIN) // MINUTE, (i.end - GRID_ORIGIN) // MINUTE))
    return cells


def is_normalised(intervals: list[Interval]) -> bool:
    """Sorted, non-overlapping and non-touching."""
    return all(a.end < b.start for a, b in zip(intervals, intervals[1:]))


@st.composite
def local_spans(draw: st.DrawFn) -> tuple[time, time]:
    """Wall-clock hours on a 5-minute grid anywhere in the day (may touch DST hours)."""
    start = draw(st.integers(0, 24 * 12 - 2))
    end = draw(st.integers(start + 1, 24 * 12 - 1))
    return (time(start // 12, start % 12 * 5), time(end // 12, end % 12 * 5))


@st.composite
def weekly_hours(draw: st.DrawFn) -> list[WeeklyHours]:
    result = []
    for weekday in WEEKDAYS:
        for start, end in draw(st.lists(local_spans(), min_size=weekday % 2, max_size=2)):
            result.append(WeeklyHours(weekday, start, end))
    return result


def offsets_from(
    origin: datetime, max_minutes: int, max_len: int, max_size: int
) -> st.SearchStrategy[list[Interval]]:
    return st.lists(
        st.tuples(st.integers(-120, max_minutes), st.integers(5, max_len)).map(
            lambda t: Interval(origin + t[0] * MINUTE, origin + (t[0] + t[1]) * MINUTE)
        ),
        max_size=max_size,
    )


@st.composite
def slot_rules(draw: st.DrawFn) -> SlotRules:
    five = lambda lo, hi: st.integers(lo, hi).map(lambda n: timedelta(minutes=5 * n))  # noqa: E731
    return SlotRules(
        duration=draw(five(1, 24)),
        buffer_before=draw(five(0, 6)),
        buffer_after=draw(five(0, 6)),
        recovery=draw(five(0, 6)),
        step=draw(five(1, 12)),
        needs_chair=draw(st.booleans()),
    )


@st.composite
def scheduling_problems(draw: st.DrawFn) -> dict:
    """A random provider calendar over a few local days, with bookings and chairs."""
    zone_name = draw(zones)
    first_day = draw(days)
    last_day = first_day + timedelta(days=draw(st.integers(0, 3)))
    range_start, range_end = local_date_range_to_utc(first_day, last_day, zone_name)
    minutes = (range_end - range_start) // MINUTE
    weekly = draw(weekly_hours())
    override_days = draw(st.lists(st.sampled_from([first_day, last_day]), unique=True, max_size=2))
    overrides = [
        DateOverride(d, tuple(draw(st.lists(local_spans(), max_size=2)))) for d in override_days
    ]
    time_off = draw(offsets_from(range_start, minutes, 600, 3))
    windows = working_windows(weekly, overrides, time_off, zone_name, first_day, last_day)
    rules = draw(slot_rules())
    chairs = draw(st.lists(offsets_from(range_start, minutes, 240, 6), max_size=3))
    # Often the whole range, sometimes a random (possibly empty) part of it.
    earliest = range_start + draw(st.one_of(st.just(-60), st.integers(-60, minutes))) * MINUTE
    latest = range_end + draw(st.one_of(st.just(60), st.integers(-minutes - 60, 60))) * MINUTE
    return dict(
        zone_name=zone_name,
        windows=windows,
        rules=rules,
        provider_busy=draw(offsets_from(range_start, minutes, 240, 12)),
        patient_busy=draw(offsets_from(range_start, minutes, 240, 4)),
        chairs_busy=chairs,
        earliest=earliest,
        latest=latest,
    )


def reference_slots(p: dict) -> list[datetime]:
    """Obviously-correct slot search by linear scans, to check find_slots against."""
    rules: SlotRules = p["rules"]
    found = set()
    for window in p["windows"]:
        start = window.start
        while start + rules.duration <= window.end:
            if (
                p["earliest"] <= start <= p["latest"]
                and not any(provider_block(start, rules).overlaps(b) for b in p["provider_busy"])
                and not any(patient_block(start, rules).overlaps(b) for b in p["patient_busy"])
                and (
                    not rules.needs_chair
                    or any(
                        not any(chair_block(start, rules).overlaps(b) for b in chair)
                        for chair in p["chairs_busy"]
                    )
                )
            ):
                found.add(start)
            start += rules.step
    return sorted(found)


def shown_in(intervals: list[Interval], zone_name: str) -> list[Interval]:
    return [Interval(in_zone(i.start, zone_name), in_zone(i.end, zone_name)) for i in intervals]


# --- Interval ----------------------------------------------------------------

def test_interval_rejects_naive_and_empty() -> None:
    with pytest.raises(ValueError):
        Interval(datetime(2026, 1, 1, 9), datetime(2026, 1, 1, 10))
    with pytest.raises(ValueError):
        Interval(utc(2026, 1, 1, 9), datetime(2026, 1, 1, 10))
    with pytest.raises(ValueError):
        Interval(utc(2026, 1, 1, 9), utc(2026, 1, 1, 9))
    with pytest.raises(ValueError):
        Interval(utc(2026, 1, 1, 10), utc(2026, 1, 1, 9))


def test_interval_is_stored_in_utc() -> None:
    denver = ZoneInfo(DENVER)
    i = Interval(datetime(2026, 7, 1, 9, tzinfo=denver), datetime(2026, 7, 1, 10, tzinfo=denver))
    assert i.start == utc(2026, 7, 1, 15) and i.start.tzinfo is UTC
    assert i.end.tzinfo is UTC
    assert i == Interval(utc(2026, 7, 1, 15), utc(2026, 7, 1, 16))
    assert i.length == timedelta(hours=1)


def test_interval_overlaps_and_contains_are_half_open() -> None:
    a = Interval(utc(2026, 1, 1, 9), utc(2026, 1, 1, 10))
    b = Interval(utc(2026, 1, 1, 10), utc(2026, 1, 1, 11))
    c = Interval(utc(2026, 1, 1, 9, 30), utc(2026, 1, 1, 10, 30))
    assert not a.overlaps(b) and not b.overlaps(a)
    assert a.overlaps(c) and c.overlaps(b)
    assert a.contains(a)
    assert Interval(utc(2026, 1, 1, 9), utc(2026, 1, 1, 11)).contains(c)
    assert not a.contains(c)


# --- merge / subtract / intersect laws ------------------------------------

@modest
@given(grid_intervals(max_size=12))
def test_merge_is_idempotent_sorted_and_keeps_coverage(xs: list[Interval]) -> None:
    merged = merge(xs)
    assert merge(merged) == merged
    assert merge(reversed(xs)) == merged
    assert is_normalised(merged)
    assert covered_minutes(merged) == covered_minutes(xs)


def test_merge_joins_touching_intervals() -> None:
    a = Interval(utc(2026, 1, 1, 9), utc(2026, 1, 1, 10))
    b = Interval(utc(2026, 1, 1, 10), utc(2026, 1, 1, 11))
    assert merge([b, a]) == [Interval(utc(2026, 1, 1, 9), utc(2026, 1, 1, 11))]
    assert merge([]) == []


@modest
@given(grid_intervals(), grid_intervals())
def test_subtract_laws(base: list[Interval], cut: list[Interval]) -> None:
    rest = subtract(base, cut)
    assert is_normalised(rest)
    # Disjoint from the cut and contained in the base...
    assert not any(r.overlaps(c) for r in rest for c in cut)
    assert all(any(b.contains(r) for b in merge(base)) for r in rest)
    # ...and exactly the base minus the cut.
    assert covered_minutes(rest) == covered_minutes(base) - covered_minutes(cut)
    # What was cut plus what remains is the base again.
    assert merge(rest + intersect(base, cut)) == merge(base)
    assert subtract(base, []) == merge(base)
    assert subtract(base, base) == []


@modest
@given(grid_intervals(), grid_intervals(), grid_intervals())
def test_intersect_laws(a: list[Interval], b: list[Interval], c: list[Interval]) -> None:
    ab = intersect(a, b)
    assert ab == intersect(b, a)
    assert is_normalised(ab)
    assert covered_minutes(ab) == covered_minutes(a) & covered_minutes(b)
    assert intersect(ab, c) == intersect(a, intersect(b, c))
    assert intersect(a, a) == merge(a)
    assert intersect(a, []) == []


# --- working windows: examples -------------------------------------------------

def test_denver_spring_forward_day_keeps_local_hours() -> None:
    windows = working_windows(NINE_TO_FIVE, [], [], DENVER, date(2026, 3, 8), date(2026, 3, 8))
    assert windows == [Interval(utc(2026, 3, 8, 15), utc(2026, 3, 8, 23))]
    assert in_zone(windows[0].start, DENVER).time() == time(9)
    assert in_zone(windows[0].end, DENVER).time() == time(17)
    assert windows[0].length == timedelta(hours=8)


def test_denver_fall_back_day_keeps_local_hours() -> None:
    windows = working_windows(NINE_TO_FIVE, [], [], DENVER, date(2026, 11, 1), date(2026, 11, 1))
    assert windows == [Interval(utc(2026, 11, 1, 16), utc(2026, 11, 2, 0))]
    assert in_zone(windows[0].start, DENVER).time() == time(9)
    assert in_zone(windows[0].end, DENVER).time() == time(17)
    assert windows[0].length == timedelta(hours=8)


def test_denver_across_both_changes_neither_drops_nor_duplicates_hours() -> None:
    spring, autumn = (date(2026, 3, 7), date(2026, 3, 9)), (date(2026, 10, 31), date(2026, 11, 2))
    for first, last in [spring, autumn]:
        windows = working_windows(NINE_TO_FIVE, [], [], DENVER, first, last)
        assert len(windows) == 3
        assert sum((w.length for w in windows), timedelta()) == timedelta(hours=24)
        for offset, w in enumerate(windows):
            assert in_zone(w.start, DENVER).date() == first + timedelta(days=offset)
            assert in_zone(w.start, DENVER).time() == time(9)
            assert in_zone(w.end, DENVER).time() == time(17)
    winter = working_windows(NINE_TO_FIVE, [], [], DENVER, date(2026, 1, 6), date(2026, 1, 6))
    summer = working_windows(NINE_TO_FIVE, [], [], DENVER, date(2026, 7, 7), date(2026, 7, 7))
    assert winter == [Interval(utc(2026, 1, 6, 16), utc(2026, 1, 7, 0))]
    assert summer == [Interval(utc(2026, 7, 7, 15), utc(2026, 7, 7, 23))]


@pytest.mark.parametrize(
    "day",
    [date(2026, 1, 6), date(2026, 3, 8), date(2026, 7, 7), date(2026, 11, 1), date(2027, 3, 14)],
)
def test_phoenix_is_sixteen_to_midnight_utc_all_year(day: date) -> None:
    windows = working_windows(NINE_TO_FIVE, [], [], PHOENIX, day, day)
    next_day = day + timedelta(days=1)
    sixteen = utc(day.year, day.month, day.day, 16)
    midnight = utc(next_day.year, next_day.month, next_day.day, 0)
    assert windows == [Interval(sixteen, midnight)]


def test_working_window_inside_spring_forward_gap() -> None:
    # 01:00-04:00 on the spring-forward day is only 2 real hours.
    weekly = [WeeklyHours(6, time(1), time(4))]
    windows = working_windows(weekly, [], [], DENVER, date(2026, 3, 8), date(2026, 3, 8))
    assert windows == [Interval(utc(2026, 3, 8, 8), utc(2026, 3, 8, 10))]
    # 02:30-03:15 maps to 09:30Z-09:15Z: inverted, so the day has no window.
    weekly = [WeeklyHours(6, time(2, 30), time(3, 15))]
    assert working_windows(weekly, [], [], DENVER, date(2026, 3, 8), date(2026, 3, 8)) == []


def test_override_replaces_weekday_hours() -> None:
    override = DateOverride(date(2026, 7, 8), (hours(7, 11), hours(13, 15)))
    windows = phoenix_windows(date(2026, 7, 7), date(2026, 7, 9), overrides=[override])
    assert windows == [
        Interval(utc(2026, 7, 7, 16), utc(2026, 7, 8, 0)),
        Interval(utc(2026, 7, 8, 14), utc(2026, 7, 8, 18)),
        Interval(utc(2026, 7, 8, 20), utc(2026, 7, 8, 22)),
        Interval(utc(2026, 7, 9, 16), utc(2026, 7, 10, 0)),
    ]


def test_override_adds_hours_on_a_day_off() -> None:
    weekdays_only = [WeeklyHours(d, time(9), time(17)) for d in range(5)]
    saturday = date(2026, 7, 11)
    assert working_windows(weekdays_only, [], [], PHOENIX, saturday, saturday) == []
    override = DateOverride(saturday, (hours(10, 12),))
    windows = working_windows(weekdays_only, [override], [], PHOENIX, saturday, saturday)
    assert windows == [Interval(utc(2026, 7, 11, 17), utc(2026, 7, 11, 19))]


def test_empty_override_removes_the_day() -> None:
    day_off = DateOverride(date(2026, 7, 8), ())
    windows = phoenix_windows(date(2026, 7, 7), date(2026, 7, 9), overrides=[day_off])
    worked = [in_zone(w.start, PHOENIX).date() for w in windows]
    assert worked == [date(2026, 7, 7), date(2026, 7, 9)]


def test_time_off_cuts_the_window() -> None:
    lunch = Interval(utc(2026, 7, 7, 19), utc(2026, 7, 7, 20))  # 12:00-13:00 Phoenix
    windows = phoenix_windows(date(2026, 7, 7), date(2026, 7, 7), time_off=[lunch])
    assert windows == [
        Interval(utc(2026, 7, 7, 16), utc(2026, 7, 7, 19)),
        Interval(utc(2026, 7, 7, 20), utc(2026, 7, 8, 0)),
    ]
    whole_day = Interval(utc(2026, 7, 7, 7), utc(2026, 7, 8, 7))
    assert phoenix_windows(date(2026, 7, 7), date(2026, 7, 7), time_off=[whole_day]) == []


def test_split_weekly_hours_and_validation() -> None:
    weekly = [WeeklyHours(1, time(8), time(12)), WeeklyHours(1, time(12), time(16))]
    windows = working_windows(weekly, [], [], PHOENIX, date(2026, 7, 7), date(2026, 7, 7))
    assert windows == [Interval(utc(2026, 7, 7, 15), utc(2026, 7, 7, 23))]  # touching hours merge
    with pytest.raises(ValueError):
        WeeklyHours(7, time(9), time(17))
    with pytest.raises(ValueError):
        WeeklyHours(0, time(17), time(9))
    with pytest.raises(ValueError):
        DateOverride(date(2026, 7, 7), ((time(12), time(11)),))
    with pytest.raises(ValueError):
        working_windows(NINE_TO_FIVE, [], [], "Nope/Nowhere", date(2026, 7, 7), date(2026, 7, 7))
    with pytest.raises(ValueError):
        working_windows(NINE_TO_FIVE, [], [], PHOENIX, date(2026, 7, 8), date(2026, 7, 7))
    with pytest.raises(ValueError):
        twice = [
            DateOverride(date(2026, 7, 7), ()),
            DateOverride(date(2026, 7, 7), (hours(9, 10),)),
        ]
        phoenix_windows(date(2026, 7, 7), date(2026, 7, 7), overrides=twice)


# --- working windows: properties -------------------------------------------------

@modest
@given(
    zone_name=zones,
    first_day=days,
    extra=st.integers(0, 6),
    spans=st.lists(
        st.tuples(st.integers(6 * 12, 20 * 12), st.integers(1, 12 * 3)), min_size=1, max_size=3
    ),
)
def test_daytime_hours_keep_their_local_time_every_day(
    zone_name: str, first_day: date, extra: int, spans: list[tuple[int, int]]
) -> None:
    """Hours away from the 02:00 DST change start and end at their wall-clock time."""
    local = [(time(s // 12, s % 12 * 5), time((s + n) // 12, (s + n) % 12 * 5)) for s, n in spans]
    weekly = [WeeklyHours(d, a, b) for d in WEEKDAYS for a, b in local]
    last_day = first_day + timedelta(days=extra)
    windows = working_windows(weekly, [], [], zone_name, first_day, last_day)
    day_count = extra + 1
    per_day = covered_local(local)
    assert len(windows) == day_count * len(per_day)
    for w in windows:
        start, end = in_zone(w.start, zone_name), in_zone(w.end, zone_name)
        assert start.date() == end.date()
        assert (start.time(), end.time()) in per_day
        wall_length = datetime.combine(date.min, end.time()) - datetime.combine(
            date.min, start.time()
        )
        assert w.length == wall_length
    range_start, range_end = local_date_range_to_utc(first_day, last_day, zone_name)
    assert all(range_start <= w.start and w.end <= range_end for w in windows)


def covered_local(local: list[tuple[time, time]]) -> list[tuple[time, time]]:
    """Merge wall-clock spans of one day the way windows merge (touching joins)."""
    merged: list[list[time]] = []
    for a, b in sorted(local):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


# --- find_slots: examples ------------------------------------------------------

PHX_DAY = date(2026, 7, 7)  # Tuesday; 09:00-17:00 Phoenix is 16:00Z-00:00Z
PHX_WINDOWS = working_windows(NINE_TO_FIVE, [], [], PHOENIX, PHX_DAY, PHX_DAY)
DAY_START, DAY_END = utc(2026, 7, 7, 16), utc(2026, 7, 8, 0)
HALF_HOUR = SlotRules(duration=timedelta(minutes=30), step=timedelta(minutes=30))


def slots(**overrides) -> list[datetime]:
    args = dict(
        windows=PHX_WINDOWS, rules=HALF_HOUR, provider_busy=[], earliest=DAY_START, latest=DAY_END
    )
    args.update(overrides)
    return find_slots(**args)


def test_free_day_offers_every_step_that_fits() -> None:
    result = slots()
    assert result == [DAY_START + k * timedelta(minutes=30) for k in range(16)]
    assert all(s.tzinfo is UTC for s in result)
    hourly_step = slots(rules=SlotRules(duration=timedelta(minutes=45), step=timedelta(minutes=60)))
    assert hourly_step == [DAY_START + k * timedelta(hours=1) for k in range(8)]


def test_candidates_align_to_window_start() -> None:
    windows = [Interval(utc(2026, 7, 7, 16, 10), utc(2026, 7, 7, 17, 10))]
    assert slots(windows=windows) == [utc(2026, 7, 7, 16, 10), utc(2026, 7, 7, 16, 40)]


def test_provider_busy_blocks_overlapping_slots() -> None:
    booking = Interval(utc(2026, 7, 7, 18), utc(2026, 7, 7, 19))
    result = slots(provider_busy=[booking])
    assert utc(2026, 7, 7, 17, 30) in result
    assert utc(2026, 7, 7, 18) not in result and utc(2026, 7, 7, 18, 30) not in result
    assert utc(2026, 7, 7, 19) in result


def test_buffers_block_neighbours() -> None:
    booking = Interval(utc(2026, 7, 7, 18), utc(2026, 7, 7, 18, 30))
    after = SlotRules(duration=mins(30), buffer_after=mins(15), step=mins(15))
    result = slots(rules=after, provider_busy=[booking])
    assert utc(2026, 7, 7, 17, 30) not in result  # its buffer would run into the booking
    assert utc(2026, 7, 7, 17, 15) in result
    before = SlotRules(duration=mins(30), buffer_before=mins(15), step=mins(15))
    result = slots(rules=before, provider_busy=[booking])
    assert utc(2026, 7, 7, 18, 30) not in result
    assert utc(2026, 7, 7, 18, 45) in result
    expected = Interval(utc(2026, 7, 7, 18, 15), utc(2026, 7, 7, 19))
    assert provider_block(utc(2026, 7, 7, 18, 30), before) == expected


def test_buffers_may_reach_outside_the_window_but_the_visit_may_not() -> None:
    rules = SlotRules(duration=timedelta(minutes=30), buffer_before=timedelta(minutes=15),
                      buffer_after=timedelta(minutes=15), step=timedelta(minutes=30))
    result = slots(rules=rules)
    assert result[0] == DAY_START and result[-1] == DAY_END - timedelta(minutes=30)


def test_recovery_blocks_patient_and_chair_but_not_provider() -> None:
    rules = SlotRules(duration=mins(30), recovery=mins(30), step=mins(30))
    assert visit_block(DAY_START, rules) == Interval(DAY_START, DAY_START + timedelta(minutes=30))
    assert chair_block(DAY_START, rules) == Interval(DAY_START, DAY_START + timedelta(hours=1))
    assert patient_block(DAY_START, rules) == chair_block(DAY_START, rules)
    assert provider_block(DAY_START, rules) == visit_block(DAY_START, rules)
    other = Interval(utc(2026, 7, 7, 18), utc(2026, 7, 7, 19))
    # The provider being busy at 18:00 does not stop a 17:30 visit (recovery is not theirs).
    assert utc(2026, 7, 7, 17, 30) in slots(rules=rules, provider_busy=[other])
    # The patient being busy at 18:00 does: they are still recovering.
    assert utc(2026, 7, 7, 17, 30) not in slots(rules=rules, patient_busy=[other])
    assert utc(2026, 7, 7, 17) in slots(rules=rules, patient_busy=[other])


def test_chair_service_needs_a_free_chair() -> None:
    rules = SlotRules(duration=timedelta(minutes=30), step=timedelta(minutes=30), needs_chair=True)
    all_day = [Interval(DAY_START, DAY_END)]
    assert slots(rules=rules, chairs_busy=[all_day, all_day]) == []
    assert slots(rules=rules, chairs_busy=[]) == []
    assert slots(rules=rules, chairs_busy=None) == []
    assert slots(rules=rules, chairs_busy=[all_day, []]) == slots()
    assert first_free_chair(DAY_START, rules, [all_day, []]) == 1
    assert first_free_chair(DAY_START, rules, [all_day, all_day]) is None
    assert first_free_chair(DAY_START, rules, [[], []]) == 0
    # Without needs_chair, chairs are ignored.
    assert slots(chairs_busy=[all_day]) == slots()


def test_chair_recovery_uses_chair_block() -> None:
    rules = SlotRules(duration=timedelta(minutes=30), recovery=timedelta(minutes=30),
                      step=timedelta(minutes=30), needs_chair=True)
    chair0 = [Interval(utc(2026, 7, 7, 18), utc(2026, 7, 7, 19))]
    chair1 = [Interval(utc(2026, 7, 7, 17), utc(2026, 7, 7, 17, 30))]
    assert first_free_chair(utc(2026, 7, 7, 17, 30), rules, [chair0, chair1]) == 1
    assert first_free_chair(utc(2026, 7, 7, 16, 30), rules, [chair0, chair1]) == 0
    assert first_free_chair(utc(2026, 7, 7, 16, 45), rules, [chair0, chair1]) == 0
    assert utc(2026, 7, 7, 17, 30) in slots(rules=rules, chairs_busy=[chair0, chair1])
    assert utc(2026, 7, 7, 17, 30) not in slots(rules=rules, chairs_busy=[chair0, chair0])


def test_earliest_and_latest_trim_inclusively() -> None:
    result = slots(earliest=utc(2026, 7, 7, 18, 10), latest=utc(2026, 7, 7, 19, 30))
    assert result == [utc(2026, 7, 7, 18, 30), utc(2026, 7, 7, 19), utc(2026, 7, 7, 19, 30)]
    assert slots(earliest=utc(2026, 7, 7, 19), latest=utc(2026, 7, 7, 18)) == []
    # earliest/latest may be given in any zone.
    phoenix = ZoneInfo(PHOENIX)
    assert slots(earliest=datetime(2026, 7, 7, 11, 10, tzinfo=phoenix),
                 latest=datetime(2026, 7, 7, 12, 30, tzinfo=phoenix)) == result


def test_find_slots_rejects_naive_bounds() -> None:
    with pytest.raises(ValueError):
        slots(earliest=datetime(2026, 7, 7, 16))
    with pytest.raises(ValueError):
        slots(latest=datetime(2026, 7, 8))


def test_overlapping_windows_give_no_duplicates() -> None:
    windows = [
        Interval(DAY_START, DAY_START + timedelta(hours=2)),
        Interval(DAY_START + timedelta(hours=1), DAY_START + timedelta(hours=3)),
    ]
    result = slots(windows=windows)
    assert result == sorted(set(result))
    assert len(result) == 6


def test_slot_rules_validation() -> None:
    with pytest.raises(ValueError):
        SlotRules(duration=timedelta(0))
    with pytest.raises(ValueError):
        SlotRules(duration=timedelta(minutes=30), step=timedelta(0))
    with pytest.raises(ValueError):
        SlotRules(duration=timedelta(minutes=30), buffer_before=timedelta(minutes=-5))


def test_phoenix_visit_seen_from_tuba_city() -> None:
    """A 10:00 Phoenix slot is 11:00 in Tuba City (America/Denver) in July, 10:00 in January."""
    for day, denver_time in [(date(2026, 7, 7), time(11)), (date(2027, 1, 12), time(10))]:
        windows = working_windows(NINE_TO_FIVE, [], [], PHOENIX, day, day)
        found = find_slots(windows=windows, rules=HALF_HOUR, provider_busy=[],
                           earliest=windows[0].start, latest=windows[-1].end)
        ten = local_to_utc(day, time(10), PHOENIX)
        assert ten in found
        assert in_zone(ten, DENVER).time() == denver_time


def test_many_bookings_stay_fast() -> None:
    """Thousands of busy intervals over a month: bisect keeps this quick."""
    first, last = date(2026, 3, 1), date(2026, 3, 31)
    windows = working_windows(NINE_TO_FIVE, [], [], DENVER, first, last)
    busy = [
        Interval(w.start + k * mins(40), w.start + k * mins(40) + mins(20))
        for w in windows
        for k in range(12)
    ]
    rules = SlotRules(duration=timedelta(minutes=15), step=timedelta(minutes=5))
    found = find_slots(windows=windows, rules=rules, provider_busy=busy,
                       earliest=windows[0].start, latest=windows[-1].end)
    assert found and not any(provider_block(s, rules).overlaps(b) for s in found[:50] for b in busy)


# --- find_slots: properties ------------------------------------------------------

@modest
@given(scheduling_problems())
def test_offered_slots_respect_every_rule(p: dict) -> None:
    rules: SlotRules = p["rules"]
    found = find_slots(**{k: v for k, v in p.items() if k != "zone_name"})
    assert found == sorted(set(found))
    for s in found:
        assert s.tzinfo is UTC
        assert p["earliest"] <= s <= p["latest"]
        assert any(w.contains(visit_block(s, rules)) for w in p["windows"])
        assert not any(provider_block(s, rules).overlaps(b) for b in p["provider_busy"])
        assert not any(patient_block(s, rules).overlaps(b) for b in p["patient_busy"])
        if rules.needs_chair:
            chair = first_free_chair(s, rules, p["chairs_busy"])
            assert chair is not None
            assert not any(chair_block(s, rules).overlaps(b) for b in p["chairs_busy"][chair])
    # Nothing bookable is missed either.
    assert found == reference_slots(p)


@modest
@given(scheduling_problems(), st.sampled_from(ZONES + ["UTC", "Pacific/Chatham"]))
def test_slots_do_not_depend_on_the_zone_they_are_shown_in(p: dict, other: str) -> None:
    args = {k: v for k, v in p.items() if k != "zone_name"}
    found = find_slots(**args)
    # Showing the answer in another zone and converting back gives the same instants.
    assert [to_utc(in_zone(s, other)) for s in found] == found
    # Feeding the same instants expressed in another zone gives the same answer.
    moved = dict(
        args,
        windows=shown_in(args["windows"], other),
        provider_busy=shown_in(args["provider_busy"], other),
        patient_busy=shown_in(args["patient_busy"], other),
        chairs_busy=[shown_in(c, other) for c in args["chairs_busy"]],
        earliest=in_zone(args["earliest"], other),
        latest=in_zone(args["latest"], other),
    )
    assert find_slots(**moved) == found


@modest
@given(zone_name=zones, first_day=days, extra=st.integers(0, 3), weekly=weekly_hours(),
       time_off=st.lists(st.tuples(st.integers(0, 4 * 24 * 60), st.integers(5, 600)), max_size=3))
def test_working_windows_are_normalised_and_respect_time_off(
    zone_name: str,
    first_day: date,
    extra: int,
    weekly: list[WeeklyHours],
    time_off: list[tuple[int, int]],
) -> None:
    last_day = first_day + timedelta(days=extra)
    range_start, range_end = local_date_range_to_utc(first_day, last_day, zone_name)
    off = [Interval(range_start + a * MINUTE, range_start + (a + n) * MINUTE) for a, n in time_off]
    windows = working_windows(weekly, [], off, zone_name, first_day, last_day)
    assert is_normalised(windows)
    assert all(w.start.tzinfo is UTC for w in windows)
    assert not any(w.overlaps(o) for w in windows for o in off)
    # Every window starts and ends on one of the configured wall-clock times (or a
    # cut made by time off, or a time moved forward by a DST gap).
    assert all(range_start <= w.start and w.end <= range_end + timedelta(hours=1) for w in windows)
    assert subtract(working_windows(weekly, [], [], zone_name, first_day, last_day), off) == windows
