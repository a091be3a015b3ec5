"""What a connected calendar blocks (pure: ``service.domain.connections.busy``): recurrence
across the November change, overrides, exclusions, free and cancelled events, all-day
events by choice, floating times; and the secrets' box."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from service.domain.connections import busy
from service.domain.connections.secrets import Sealed, SecretBox, SecretsUnavailable

DENVER = ZoneInfo("America/Denver")
OCTOBER, DECEMBER = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)

VTIMEZONE = """BEGIN:VTIMEZONE
TZID:America/Denver
BEGIN:DAYLIGHT
DTSTART:19700308T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU
TZOFFSETFROM:-0700
TZOFFSETTO:-0600
TZNAME:MDT
END:DAYLIGHT
BEGIN:STANDARD
DTSTART:19701101T020000
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU
TZOFFSETFROM:-0600
TZOFFSETTO:-0700
TZNAME:MST
END:STANDARD
END:VTIMEZONE
"""


def calendar(*events: str, header: str = "") -> bytes:
    body = "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\n" + header + VTIMEZONE
    body += "".join(events) + "END:VCALENDAR\n"
    return body.replace("\n", "\r\n").encode()


def event(uid: str, start: str, end: str, *extra: str) -> str:
    lines = [f"UID:{uid}", f"DTSTART{start}", f"DTEND{end}", "SUMMARY:Private meeting",
             "DESCRIPTION:Nobody outside should read this", *extra]
    return "BEGIN:VEVENT\n" + "\n".join(lines) + "\nEND:VEVENT\n"


# Weekly 10:00-11:00 in Denver on Tuesdays from 20 October 2026; 27 October excluded; the
# 3 November occurrence moved to 14:00; the clocks go back on Sunday 1 November.
WEEKLY = event("weekly@example.com", ";TZID=America/Denver:20261020T100000",
               ";TZID=America/Denver:20261020T110000", "RRULE:FREQ=WEEKLY;COUNT=5",
               "EXDATE;TZID=America/Denver:20261027T100000")
MOVED = event("weekly@example.com", ";TZID=America/Denver:20261103T140000",
              ";TZID=America/Denver:20261103T150000",
              "RECURRENCE-ID;TZID=America/Denver:20261103T100000")


def read(*documents: bytes, include_all_day: bool = False, zone: str = "America/Phoenix"
         ) -> list[busy.Busy]:
    return busy.busy_intervals(documents, start=OCTOBER, end=DECEMBER, default_zone=zone,
                               include_all_day=include_all_day)


def denver(day: int, month: int, hour: int) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=DENVER).astimezone(UTC)


def test_a_weekly_meeting_keeps_its_wall_clock_time_across_the_november_change():
    found = read(calendar(WEEKLY, MOVED))
    assert [(b.start, b.end) for b in found] == [
        (denver(20, 10, 10), denver(20, 10, 11)),  # MDT: 16:00 UTC
        (denver(3, 11, 14), denver(3, 11, 15)),  # the overridden occurrence, MST
        (denver(10, 11, 10), denver(10, 11, 11)),  # MST: 17:00 UTC
        (denver(17, 11, 10), denver(17, 11, 11)),
    ]
    assert found[0].start.hour == 16 and found[2].start.hour == 17
    assert {b.uid for b in found} == {"weekly@example.com"}


def test_free_and_cancelled_events_block_nothing():
    free = event("free@x", ":20261015T150000Z", ":20261015T160000Z", "TRANSP:TRANSPARENT")
    cancelled = event("gone@x", ":20261016T150000Z", ":20261016T160000Z",
                      "STATUS:CANCELLED")
    opaque = event("busy@x", ":20261017T150000Z", ":20261017T160000Z", "TRANSP:OPAQUE")
    assert [b.uid for b in read(calendar(free, cancelled, opaque))] == ["busy@x"]


def test_a_cancelled_occurrence_of_a_series_frees_only_that_day():
    series = event("s@x", ":20261005T150000Z", ":20261005T160000Z", "RRULE:FREQ=DAILY;COUNT=3")
    one_off = event("s@x", ":20261006T150000Z", ":20261006T160000Z",
                    "RECURRENCE-ID:20261006T150000Z", "STATUS:CANCELLED")
    assert [b.start.day for b in read(calendar(series, one_off))] == [5, 7]


def test_all_day_events_block_their_local_days_only_when_the_connection_says_so():
    holiday = event("day@x", ";VALUE=DATE:20261026", ";VALUE=DATE:20261028")
    assert read(calendar(holiday)) == []
    found = read(calendar(holiday), include_all_day=True)
    phoenix = ZoneInfo("America/Phoenix")
    assert [(b.start, b.end) for b in found] == [
        (datetime(2026, 10, 26, tzinfo=phoenix), datetime(2026, 10, 28, tzinfo=phoenix))]


def test_floating_times_are_read_in_the_calendars_x_wr_timezone():
    floating = event("f@x", ":20261110T090000", ":20261110T093000")
    found = read(calendar(floating, header="X-WR-TIMEZONE:America/Denver\n"))
    assert [(b.start, b.end) for b in found] == [
        (datetime(2026, 11, 10, 16, tzinfo=UTC), datetime(2026, 11, 10, 16, 30, tzinfo=UTC))]
    # Without it: the clinic's zone (Phoenix, UTC-7 all year).
    assert read(calendar(floating))[0].start == datetime(2026, 11, 10, 16, tzinfo=UTC)


def test_an_event_with_a_duration_and_one_without_an_end():
    lasting = ("BEGIN:VEVENT\nUID:d@x\nDTSTART:20261012T150000Z\nDURATION:PT90M\n"
               "END:VEVENT\n")
    instant = "BEGIN:VEVENT\nUID:i@x\nDTSTART:20261013T150000Z\nEND:VEVENT\n"
    found = read(calendar(lasting, instant))
    assert [(b.uid, b.end - b.start) for b in found] == [("d@x", timedelta(minutes=90))]


def test_what_is_not_icalendar_is_refused_with_a_code():
    with pytest.raises(busy.UnreadableCalendar) as refused:
        read(b"<html>Sign in</html>")
    assert refused.value.reason == "invalid_icalendar"


instants = st.integers(min_value=0, max_value=2000).map(
    lambda m: datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=5 * m))


@given(st.lists(st.tuples(instants, st.integers(min_value=1, max_value=60)), max_size=40))
def test_merged_intervals_are_sorted_apart_and_cover_the_same_time(pairs):
    items = [busy.Busy(start, start + timedelta(minutes=5 * length)) for start, length in pairs]
    merged = busy.merge(items)
    assert all(a[1] < b[0] for a, b in zip(merged, merged[1:]))

    def covered(moment: datetime) -> bool:
        return any(b.start <= moment < b.end for b in items)

    for item in items:
        assert any(s <= item.start and item.end <= e for s, e in merged)
    for start, end in merged:
        assert covered(start) and covered(end - timedelta(minutes=5))


def test_secrets_are_sealed_and_never_shown():
    box = SecretBox(Fernet.generate_key().decode())
    sealed = box.seal(Sealed(url="https://calendar.example.com/private-abc/basic.ics"))
    assert "private-abc" not in sealed
    opened = box.open(sealed)
    assert opened.url.endswith("basic.ics") and "private-abc" not in repr(opened)
    with pytest.raises(SecretsUnavailable):
        SecretBox(Fernet.generate_key().decode()).open(sealed)  # another key
    with pytest.raises(SecretsUnavailable):
        SecretBox(None).seal(opened)  # no key: fails closed
    with pytest.raises(ValueError):
        SecretBox("not-a-fernet-key")
