"""Tests for service.domain.time: zones, UTC conversion and DST rules."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.time import (
    UTC,
    UnknownTimeZone,
    in_zone,
    is_valid_zone,
    local_date_range_to_utc,
    local_to_utc,
    to_utc,
    zone,
)

DENVER = "America/Denver"
PHOENIX = "America/Phoenix"
ZONES = [PHOENIX, DENVER]

# US daylight-saving change dates (spring forward, fall back).
US_DST_DATES = [
    date(2026, 3, 8), date(2026, 11, 1),
    date(2027, 3, 14), date(2027, 11, 7),
    date(2028, 3, 12), date(2028, 11, 5),
]

days = st.one_of(
    st.sampled_from(US_DST_DATES),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)),
)
wall_times = st.times()  # naive, microsecond precision
zones = st.sampled_from(ZONES)
modest = settings(max_examples=150, deadline=None, database=None)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- zone lookup -----------------------------------------------------------

def test_utc_is_the_stdlib_utc() -> None:
    assert UTC is timezone.utc  # noqa: UP017 - the point of the test


@pytest.mark.parametrize("name", [DENVER, PHOENIX, "UTC", "Europe/London"])
def test_zone_known_names(name: str) -> None:
    assert zone(name) == ZoneInfo(name)
    assert is_valid_zone(name)


@pytest.mark.parametrize(
    "name",
    ["", "Nope/Nowhere", "../x", "/etc/passwd", "America", "America/", "a\x00b", " America/Denver"],
)
def test_zone_unknown_names(name: str) -> None:
    with pytest.raises(UnknownTimeZone):
        zone(name)
    assert not is_valid_zone(name)


def test_unknown_zone_is_a_value_error() -> None:
    assert issubclass(UnknownTimeZone, ValueError)


@modest
@given(st.text(max_size=30))
def test_zone_never_raises_anything_but_unknown_zone(name: str) -> None:
    try:
        result = zone(name)
    except UnknownTimeZone:
        assert not is_valid_zone(name)
    else:
        assert isinstance(result, ZoneInfo)
        assert is_valid_zone(name)


# --- to_utc / in_zone ----------------------------------------------------

def test_to_utc_converts_aware() -> None:
    local = datetime(2026, 7, 1, 10, 0, tzinfo=ZoneInfo(PHOENIX))
    result = to_utc(local)
    assert result == utc(2026, 7, 1, 17, 0)
    assert result.tzinfo is UTC


def test_to_utc_rejects_naive() -> None:
    with pytest.raises(ValueError):
        to_utc(datetime(2026, 7, 1, 10, 0))


def test_in_zone_rejects_naive_and_unknown_zone() -> None:
    with pytest.raises(ValueError):
        in_zone(datetime(2026, 7, 1, 10, 0), DENVER)
    with pytest.raises(UnknownTimeZone):
        in_zone(utc(2026, 7, 1, 10, 0), "Mars/Olympus_Mons")


def test_phoenix_ten_am_seen_from_tuba_city() -> None:
    """Tuba City (Navajo Nation) follows America/Denver; Phoenix never changes clocks."""
    july = local_to_utc(date(2026, 7, 15), time(10, 0), PHOENIX)
    january = local_to_utc(date(2027, 1, 15), time(10, 0), PHOENIX)
    assert in_zone(july, DENVER).time() == time(11, 0)
    assert in_zone(january, DENVER).time() == time(10, 0)
    assert in_zone(july, PHOENIX).time() == time(10, 0)
    assert in_zone(january, PHOENIX).time() == time(10, 0)


@modest
@given(
    day=days,
    at=wall_times,
    source=zones,
    shown_in=st.sampled_from(ZONES + ["UTC", "Europe/Berlin"]),
)
def test_showing_in_another_zone_keeps_the_instant(
    day: date, at: time, source: str, shown_in: str
) -> None:
    instant = local_to_utc(day, at, source)
    shown = in_zone(instant, shown_in)
    # Compare instants via UTC or timestamps: PEP 495 makes == between an
    # ambiguous local time (e.g. 01:00 on a fall-back day) and another zone False.
    assert shown.timestamp() == instant.timestamp()
    assert to_utc(shown) == instant
    assert to_utc(shown).tzinfo is UTC


# --- local_to_utc ----------------------------------------------------------

def test_local_to_utc_winter_and_summer() -> None:
    assert local_to_utc(date(2026, 1, 5), time(9, 0), DENVER) == utc(2026, 1, 5, 16, 0)
    assert local_to_utc(date(2026, 7, 6), time(9, 0), DENVER) == utc(2026, 7, 6, 15, 0)
    assert local_to_utc(date(2026, 1, 5), time(9, 0), PHOENIX) == utc(2026, 1, 5, 16, 0)
    assert local_to_utc(date(2026, 7, 6), time(9, 0), PHOENIX) == utc(2026, 7, 6, 16, 0)


def test_local_to_utc_returns_stdlib_utc() -> None:
    assert local_to_utc(date(2026, 7, 6), time(9, 0), DENVER).tzinfo is UTC


def test_local_to_utc_spring_forward_gap_moves_forward() -> None:
    # 02:30 does not exist on 2026-03-08 in Denver: it becomes 03:30 MDT.
    result = local_to_utc(date(2026, 3, 8), time(2, 30), DENVER)
    assert result == utc(2026, 3, 8, 9, 30)
    assert in_zone(result, DENVER).time() == time(3, 30)
    # The edges of the gap.
    assert local_to_utc(date(2026, 3, 8), time(1, 59), DENVER) == utc(2026, 3, 8, 8, 59)
    assert local_to_utc(date(2026, 3, 8), time(2, 0), DENVER) == utc(2026, 3, 8, 9, 0)
    assert local_to_utc(date(2026, 3, 8), time(3, 0), DENVER) == utc(2026, 3, 8, 9, 0)


def test_local_to_utc_fall_back_takes_first_occurrence() -> None:
    # 01:30 happens twice on 2026-11-01 in Denver: first MDT (07:30Z), then MST (08:30Z).
    result = local_to_utc(date(2026, 11, 1), time(1, 30), DENVER)
    assert result == utc(2026, 11, 1, 7, 30)
    assert in_zone(result, DENVER).utcoffset() == timedelta(hours=-6)
    # fold=1 on the input is ignored: still the first occurrence.
    assert local_to_utc(date(2026, 11, 1), time(1, 30, fold=1), DENVER) == result


def test_local_to_utc_phoenix_has_no_gap_or_fold() -> None:
    assert local_to_utc(date(2026, 3, 8), time(2, 30), PHOENIX) == utc(2026, 3, 8, 9, 30)
    assert local_to_utc(date(2026, 11, 1), time(1, 30), PHOENIX) == utc(2026, 11, 1, 8, 30)


def test_local_to_utc_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        local_to_utc(date(2026, 1, 5), time(9, 0, tzinfo=UTC), DENVER)
    with pytest.raises(UnknownTimeZone):
        local_to_utc(date(2026, 1, 5), time(9, 0), "Nope/Nowhere")
    with pytest.raises(ValueError):
        local_to_utc(datetime(2026, 1, 5, 9, 0), time(9, 0), DENVER)  # type: ignore[arg-type]


@modest
@given(day=days, at=wall_times, name=zones)
def test_local_to_utc_round_trips_existing_wall_times(day: date, at: time, name: str) -> None:
    instant = local_to_utc(day, at, name)
    local = in_zone(instant, name)
    if local.replace(tzinfo=None) == datetime.combine(day, at):
        # Existing wall time: round trip is exact, first occurrence if ambiguous.
        assert local.fold == 0
    else:
        # Only a spring-forward gap may move the time, and only forward by the gap.
        gap = ZoneInfo(name).utcoffset(local) - ZoneInfo(name).utcoffset(local - timedelta(hours=2))
        assert gap == timedelta(hours=1)
        assert local.replace(tzinfo=None) == datetime.combine(day, at) + gap


@modest
@given(day=days, a=wall_times, b=wall_times, name=zones)
def test_local_to_utc_is_monotonic_outside_gaps(day: date, a: time, b: time, name: str) -> None:
    a, b = min(a, b), max(a, b)
    ua, ub = local_to_utc(day, a, name), local_to_utc(day, b, name)
    a_exists = in_zone(ua, name).replace(tzinfo=None) == datetime.combine(day, a)
    b_exists = in_zone(ub, name).replace(tzinfo=None) == datetime.combine(day, b)
    if a_exists and b_exists:
        assert ua <= ub


# --- local_date_range_to_utc ----------------------------------------------

def test_local_date_range_on_dst_days() -> None:
    # Spring forward: the local day is 23 hours long.
    start, end = local_date_range_to_utc(date(2026, 3, 8), date(2026, 3, 8), DENVER)
    assert (start, end) == (utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 0))
    assert end - start == timedelta(hours=23)
    # Fall back: 25 hours.
    start, end = local_date_range_to_utc(date(2026, 11, 1), date(2026, 11, 1), DENVER)
    assert end - start == timedelta(hours=25)
    # Phoenix: always 24 hours per day.
    start, end = local_date_range_to_utc(date(2026, 3, 1), date(2026, 3, 31), PHOENIX)
    assert (start, end) == (utc(2026, 3, 1, 7, 0), utc(2026, 4, 1, 7, 0))


def test_local_date_range_rejects_inverted_range() -> None:
    with pytest.raises(ValueError):
        local_date_range_to_utc(date(2026, 3, 9), date(2026, 3, 8), DENVER)


@modest
@given(first=days, extra=st.integers(min_value=0, max_value=40), name=zones)
def test_local_date_range_covers_each_local_day_exactly(first: date, extra: int, name: str) -> None:
    last = first + timedelta(days=extra)
    start, end = local_date_range_to_utc(first, last, name)
    assert start.tzinfo is UTC and end.tzinfo is UTC
    assert in_zone(start, name).date() == first and in_zone(start, name).time() == time(0)
    assert in_zone(end - timedelta(microseconds=1), name).date() == last
    assert in_zone(end, name).date() == last + timedelta(days=1)
    hours = (end - start) / timedelta(hours=1)
    assert abs(hours - 24 * (extra + 1)) <= 1
