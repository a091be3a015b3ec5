"""Treatment protocols as data: planning and checking session days, custom RRULEs (pure)."""

from __future__ import annotations

from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.series.protocols import (
    MAX_OCCURRENCES,
    PROTOCOLS,
    ProtocolUnsatisfiable,
    RRuleError,
    can_complete,
    check_days,
    custom_protocol,
    expand_rrule,
    fits,
    plan_days,
    starts,
    window_of,
)

DENVER = "America/Denver"
PHOENIX = "America/Phoenix"
IV = PROTOCOLS["iv-induction"]
ESKETAMINE = PROTOCOLS["esketamine-induction"]
BOOSTER = PROTOCOLS["booster"]
DAY = timedelta(days=1)

days = st.dates(min_value=date(2026, 1, 1), max_value=date(2029, 12, 31))
weekday_sets = st.frozensets(st.integers(min_value=0, max_value=6), max_size=7)
modest = settings(max_examples=200, deadline=None, database=None)


def test_protocols_are_the_clinics_four():
    assert sorted(PROTOCOLS) == ["booster", "esketamine-induction", "home-check-ins",
                                 "iv-induction"]
    assert (IV.sessions, IV.min_gap_days, IV.window_days) == (6, 2, 21)
    assert ESKETAMINE.sessions == 12
    assert [(p.weeks, p.per_week) for p in ESKETAMINE.phases] == [(4, 2), (4, 1)]
    assert (BOOSTER.sessions, BOOSTER.after_previous) == (1, (21, 42))
    home = PROTOCOLS["home-check-ins"]
    assert home.home and not any(p.home for p in (IV, ESKETAMINE, BOOSTER))
    assert (home.sessions, home.min_gap_days, home.window_days) == (6, 2, 21)
    assert [(p.weeks, p.per_week) for p in home.phases] == [(3, 2)]


@modest
@given(first=days, weekdays=weekday_sets)
def test_home_check_ins_keep_twice_weekly_within_three_weeks(first, weekdays):
    home = PROTOCOLS["home-check-ins"]
    try:
        planned = plan_days(home, first, weekdays=weekdays)
    except ProtocolUnsatisfiable:
        return
    assert len(planned) == 6 and planned[0] == first
    assert all((b - a).days >= 2 for a, b in zip(planned, planned[1:], strict=False))
    assert (planned[-1] - first).days < 21


@modest
@given(first=days, weekdays=weekday_sets)
def test_iv_induction_is_six_sessions_two_days_apart_within_21_days(first, weekdays):
    try:
        planned = plan_days(IV, first, weekdays=weekdays)
    except ProtocolUnsatisfiable as refused:
        assert weekdays  # the default cadence always fits; some weekday sets cannot
        assert refused.extras["problems"]
        return
    assert len(planned) == 6 and planned[0] == first and planned == sorted(planned)
    assert all((b - a).days >= 2 for a, b in zip(planned, planned[1:], strict=False))
    assert (planned[-1] - first).days < 21
    assert all(d.weekday() in weekdays for d in planned[1:]) if weekdays else True
    assert check_days(IV, planned) == []


@modest
@given(first=days, weekdays=weekday_sets)
def test_esketamine_is_twice_weekly_for_four_weeks_then_weekly(first, weekdays):
    try:
        planned = plan_days(ESKETAMINE, first, weekdays=weekdays)
    except ProtocolUnsatisfiable:
        return
    weeks = [(d - first).days // 7 for d in planned]
    assert weeks == [0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7]
    assert all((b - a).days >= 2 for a, b in zip(planned, planned[1:], strict=False))
    assert check_days(ESKETAMINE, planned, anchor=first) == []


def test_esketamine_on_mondays_and_thursdays():
    monday = date(2027, 1, 4)
    planned = plan_days(ESKETAMINE, monday, weekdays={0, 3})
    assert [d.strftime("%a") for d in planned[:8]] == ["Mon", "Thu"] * 4
    assert [d.strftime("%a") for d in planned[8:]] == ["Mon"] * 4


def test_preferred_weekdays_that_cannot_fit_the_window_are_refused():
    with pytest.raises(ProtocolUnsatisfiable) as refused:
        plan_days(IV, date(2027, 1, 4), weekdays={0})
    assert refused.value.code == "protocol_not_satisfiable"
    with pytest.raises(ProtocolUnsatisfiable):
        plan_days(ESKETAMINE, date(2027, 1, 4), weekdays={0, 1})  # Mon+Tue: 1 day apart


@modest
@given(previous=days, offset=st.integers(min_value=0, max_value=60))
def test_booster_is_three_to_six_weeks_after_the_last(previous, offset):
    first = previous + offset * DAY
    if 21 <= offset <= 42:
        assert plan_days(BOOSTER, first, previous=previous) == [first]
    else:
        with pytest.raises(ProtocolUnsatisfiable) as refused:
            plan_days(BOOSTER, first, previous=previous)
        assert refused.value.extras["earliest"] == (previous + 21 * DAY).isoformat()
    assert window_of(BOOSTER, [first], anchor=first, previous=previous) == (
        previous + 21 * DAY, previous + 42 * DAY)


@modest
@given(first=days, weekdays=weekday_sets, index=st.integers(0, 5),
       shift=st.integers(-5, 5))
def test_moving_a_session_keeps_the_protocol_exactly_when_fits_says_so(
        first, weekdays, index, shift):
    try:
        planned = plan_days(IV, first, weekdays=weekdays)
    except ProtocolUnsatisfiable:
        return
    moved = [*planned[:index], planned[index] + shift * DAY, *planned[index + 1:]]
    others = planned[:index] + planned[index + 1:]
    assert fits(IV, moved) == fits(IV, [*others, planned[index] + shift * DAY])
    assert fits(IV, moved) == (check_days(IV, moved) == [])


def test_check_days_names_each_broken_rule():
    start = date(2027, 1, 4)
    kinds = {p.kind for p in check_days(IV, [start, start + DAY, start + 30 * DAY])}
    assert kinds == {"count", "spacing", "window"}
    assert fits(IV, [start, start + 3 * DAY])  # fewer sessions: still on track
    too_many = [start + 7 * DAY, start + 9 * DAY, start + 11 * DAY]
    assert any(p.kind == "week" for p in check_days(ESKETAMINE, too_many, anchor=start))


@modest
@given(first=days, hour=st.integers(6, 20), zone_name=st.sampled_from([DENVER, PHOENIX]),
       count=st.integers(1, MAX_OCCURRENCES))
def test_rrule_sessions_keep_their_local_wall_clock_time(first, hour, zone_name, count):
    rule = f"FREQ=WEEKLY;BYDAY=MO,TH;COUNT={count}"
    local = expand_rrule(rule, first, time(hour), zone_name)
    assert len(local) == count
    assert (local[-1] - first).days <= 365
    for day, instant in zip(local, starts(local, time(hour), zone_name), strict=True):
        shown = instant.astimezone(ZoneInfo(zone_name))
        assert (shown.date(), shown.hour, shown.minute) == (day, hour, 0)
        assert day.weekday() in (0, 3)


def test_rrule_across_the_november_dst_change_keeps_10_local():
    local = expand_rrule("FREQ=WEEKLY;UNTIL=20271116T000000Z", date(2027, 11, 1), time(10),
                         DENVER)
    assert local == [date(2027, 11, 1), date(2027, 11, 8), date(2027, 11, 15)]
    offsets = [s.astimezone(ZoneInfo(DENVER)).utcoffset() for s in starts(local, time(10),
                                                                          DENVER)]
    assert offsets == [timedelta(hours=-6), timedelta(hours=-7), timedelta(hours=-7)]
    assert [s.hour for s in starts(local, time(10), DENVER)] == [16, 17, 17]


@pytest.mark.parametrize("rule, code", [
    ("FREQ=WEEKLY", "rrule_unbounded"),
    ("FREQ=DAILY;COUNT=53", "rrule_too_long"),
    ("FREQ=MONTHLY;COUNT=14", "rrule_too_long"),
    ("FREQ=WEEKLY;UNTIL=20300101", "rrule_too_long"),
    ("FREQ=SOMETIMES;COUNT=2", "invalid_rrule"),
    ("FREQ=HOURLY;COUNT=2", "invalid_rrule"),
    ("FREQ=DAILY;COUNT=2;BYHOUR=9", "invalid_rrule"),
    ("FREQ=WEEKLY;BYDAY=XX;COUNT=2", "invalid_rrule"),
    ("FREQ=WEEKLY;BYMONTHDAY=3;COUNT=2", "invalid_rrule"),
    ("DTSTART:20270101T100000", "invalid_rrule"),
    ("FREQ=WEEKLY;COUNT=0", "invalid_rrule"),
    ("garbage", "invalid_rrule"),
    ("FREQ=DAILY;COUNT=2\nRRULE:FREQ=DAILY", "invalid_rrule"),
])
def test_bad_rrules_have_stable_codes(rule, code):
    with pytest.raises(RRuleError) as refused:
        expand_rrule(rule, date(2027, 1, 4), time(10), PHOENIX)
    assert refused.value.code == code


def test_custom_protocol_spans_the_rule():
    local = expand_rrule("RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=3", date(2027, 1, 4), time(9),
                         PHOENIX)
    protocol = custom_protocol(local)
    assert (protocol.sessions, protocol.window_days) == (3, 29)
    assert check_days(protocol, local) == []


# Room to make a session up ---------------------------------------------------------------


def test_an_iv_course_missing_its_last_session_can_be_made_up_until_day_21():
    first = date(2027, 3, 1)
    kept = [first + k * 3 * DAY for k in range(5)]  # days 1, 4, 7, 10, 13
    assert can_complete(IV, kept, 1, from_day=first + 19 * DAY)  # day 20 (2 after day 13)
    assert can_complete(IV, kept, 1, from_day=first + 20 * DAY)  # day 21, the last
    assert not can_complete(IV, kept, 1, from_day=first + 21 * DAY)  # day 22: too late
    assert not can_complete(IV, kept[:3], 3, from_day=first + 17 * DAY)  # 18, 20, and 22?


def test_a_booster_is_made_up_within_its_weeks_after_the_previous_session():
    previous = date(2027, 3, 1)
    assert can_complete(BOOSTER, [], 1, from_day=previous, previous=previous)
    assert not can_complete(BOOSTER, [], 1, from_day=previous + 43 * DAY, previous=previous)


@modest
@given(first=days, gaps=st.lists(st.integers(min_value=2, max_value=5), max_size=5),
       offset=st.integers(min_value=0, max_value=30), missing=st.integers(0, 6))
def test_room_to_make_up_is_room_for_fewer_and_the_days_found_keep_the_protocol(
        first, gaps, offset, missing):
    kept = [first]
    for gap in gaps:
        kept.append(kept[-1] + gap * DAY)
    if not fits(IV, kept):
        return
    start = first + offset * DAY
    if can_complete(IV, kept, missing, from_day=start):
        assert missing == 0 or can_complete(IV, kept, missing - 1, from_day=start)
        assert len(kept) + missing <= IV.sessions
    assert can_complete(IV, kept, 0, from_day=start)
