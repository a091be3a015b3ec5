"""Reminder planning and the check before sending (pure): kinds, skips with reasons, quiet
hours in the patient's zone across DST (Navajo Nation: America/Denver; Phoenix: none)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from service.domain.reminders.planning import (
    Contact,
    QuietHours,
    ReminderPlan,
    choose_channel,
    decide,
    next_day_check_in_at,
    plan_reminders,
)
from service.domain.retries import backoff

DENVER = "America/Denver"  # the Navajo Nation observes DST
PHOENIX = "America/Phoenix"  # the rest of Arizona does not
QUIET = QuietHours(time(21, 0), time(8, 0))
modest = settings(max_examples=200, deadline=None, database=None)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def plan(starts_at: datetime, now: datetime, zone: str = PHOENIX, **plan_fields):
    return {p.kind: p for p in plan_reminders(
        ReminderPlan(**plan_fields), starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=1), patient_zone=zone, now=now, quiet=QUIET)}


# Planning ------------------------------------------------------------------------------


def test_default_plan_confirms_at_once_and_reminds_72_24_2_hours_before():
    start = datetime(2026, 12, 10, 13, 0, tzinfo=ZoneInfo(PHOENIX))
    now = utc(2026, 12, 1, 17, 0)  # 10:00 in Phoenix
    planned = plan(start, now)
    assert list(planned) == ["confirmation", "before_72h", "before_24h", "before_2h"]
    assert planned["confirmation"].due_at == now
    assert planned["before_72h"].due_at == start - timedelta(hours=72)
    assert planned["before_2h"].due_at == start - timedelta(hours=2)
    assert all(p.skip_reason is None for p in planned.values())


def test_a_reminder_already_past_at_booking_time_is_skipped_with_a_reason():
    start = datetime(2026, 12, 10, 13, 0, tzinfo=ZoneInfo(PHOENIX))
    now = start - timedelta(hours=30)  # booked 30 hours ahead: the 72 h reminder is past
    planned = plan(start, now)
    assert planned["before_72h"].skip_reason == "past_due_at_planning"
    assert planned["before_24h"].skip_reason is None
    assert planned["before_2h"].skip_reason is None


def test_next_day_check_in_is_at_ten_the_day_after_in_the_patients_zone():
    start = datetime(2026, 7, 14, 15, 0, tzinfo=ZoneInfo(PHOENIX))
    planned = plan(start, start - timedelta(days=5), zone=DENVER, next_day_check_in=True)
    due = planned["next_day_check_in"].due_at.astimezone(ZoneInfo(DENVER))
    assert (due.date().isoformat(), due.time()) == ("2026-07-15", time(10, 0))


def test_a_check_in_after_a_late_evening_visit_goes_the_next_local_day():
    # 23:30 UTC on Jan 14 is 16:30 in Denver: the check-in is Jan 15, 10:00 MST = 17:00Z.
    assert next_day_check_in_at(utc(2026, 1, 14, 23, 30), DENVER) == utc(2026, 1, 15, 17, 0)


def test_quiet_hours_defer_a_reminder_to_the_morning_in_the_patients_zone():
    # A 09:00 Phoenix visit: the 24 h reminder at 09:00 is fine; the 2 h one at 07:00 is
    # quiet and moves to 08:00, still before the visit.
    start = datetime(2026, 12, 10, 9, 0, tzinfo=ZoneInfo(PHOENIX))
    planned = plan(start, start - timedelta(days=5))
    assert planned["before_2h"].due_at == datetime(2026, 12, 10, 8, 0,
                                                   tzinfo=ZoneInfo(PHOENIX))
    assert planned["before_2h"].skip_reason is None


def test_quiet_hours_until_the_visit_skip_it_with_a_reason():
    start = datetime(2026, 12, 10, 8, 0, tzinfo=ZoneInfo(PHOENIX))  # 2 h before is 06:00
    planned = plan(start, start - timedelta(days=5))
    assert planned["before_2h"].skip_reason == "quiet_hours_until_visit"


def test_a_confirmation_booked_at_night_waits_for_the_morning():
    start = datetime(2026, 12, 10, 13, 0, tzinfo=ZoneInfo(PHOENIX))
    night = datetime(2026, 12, 1, 23, 15, tzinfo=ZoneInfo(PHOENIX))
    planned = plan(start, night)
    assert planned["confirmation"].due_at == datetime(2026, 12, 2, 8, 0,
                                                      tzinfo=ZoneInfo(PHOENIX))


def test_plan_from_json_drops_duplicates_and_sorts():
    parsed = ReminderPlan.from_json({"confirmation": False, "hours_before": [2, 24, 24, 72]})
    assert parsed == ReminderPlan(False, (72, 24, 2), False)
    assert ReminderPlan.from_json(None) == ReminderPlan()


# Quiet hours across the Navajo Nation's DST ---------------------------------------------


@pytest.mark.parametrize(("instant", "zone", "expected"), [
    # 14:30Z: 07:30 MST in Phoenix all year (quiet until 08:00 MST = 15:00Z) ...
    (utc(2026, 1, 14, 14, 30), PHOENIX, utc(2026, 1, 14, 15, 0)),
    (utc(2026, 7, 14, 14, 30), PHOENIX, utc(2026, 7, 14, 15, 0)),
    # ... in Denver 07:30 MST in winter (quiet), but 08:30 MDT in summer (allowed).
    (utc(2026, 1, 14, 14, 30), DENVER, utc(2026, 1, 14, 15, 0)),
    (utc(2026, 7, 14, 14, 30), DENVER, utc(2026, 7, 14, 14, 30)),
    # 03:30Z: 20:30 MST in Phoenix (allowed) but 21:30 MDT in summer Denver (quiet until
    # 08:00 MDT = 14:00Z).
    (utc(2026, 7, 15, 3, 30), PHOENIX, utc(2026, 7, 15, 3, 30)),
    (utc(2026, 7, 15, 3, 30), DENVER, utc(2026, 7, 15, 14, 0)),
    # The spring-forward night in Denver: quiet from 21:00 MST (04:00Z) to 08:00 MDT
    # (14:00Z), ten hours, not eleven.
    (utc(2026, 3, 8, 4, 30), DENVER, utc(2026, 3, 8, 14, 0)),
    # The fall-back night: 21:00 MDT (03:00Z) to 08:00 MST (15:00Z), twelve hours.
    (utc(2026, 11, 1, 3, 30), DENVER, utc(2026, 11, 1, 15, 0)),
    (utc(2026, 11, 1, 8, 30), DENVER, utc(2026, 11, 1, 15, 0)),  # 01:30 MST, 2nd time
])
def test_quiet_hours_across_dst(instant, zone, expected):
    assert QUIET.next_allowed(instant, zone) == expected


def test_a_2h_reminder_for_a_phoenix_visit_differs_by_season_for_a_navajo_patient():
    # A 09:30 Phoenix visit is 10:30 for a Tuba City (America/Denver) patient in July and
    # 09:30 in January; the 2 h reminder (07:30 Phoenix) is allowed in July for them (08:30
    # MDT) and deferred to 08:00 MST in January, like for a Phoenix patient all year.
    july = datetime(2026, 7, 14, 9, 30, tzinfo=ZoneInfo(PHOENIX))
    january = datetime(2026, 1, 14, 9, 30, tzinfo=ZoneInfo(PHOENIX))
    navajo_july = plan(july, july - timedelta(days=5), zone=DENVER)["before_2h"]
    navajo_january = plan(january, january - timedelta(days=5), zone=DENVER)["before_2h"]
    phoenix_july = plan(july, july - timedelta(days=5), zone=PHOENIX)["before_2h"]
    assert navajo_july.due_at == july - timedelta(hours=2)
    assert navajo_january.due_at == utc(2026, 1, 14, 15, 0)
    assert phoenix_july.due_at == datetime(2026, 7, 14, 8, 0, tzinfo=ZoneInfo(PHOENIX))


instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31),
                        timezones=st.just(UTC))
clock = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


@modest
@given(instant=instants, zone=st.sampled_from([PHOENIX, DENVER, "America/New_York", "UTC"]),
       start=clock, end=st.builds(time, st.integers(4, 11), st.sampled_from([0, 30])))
def test_next_allowed_is_the_first_instant_outside_quiet_hours(instant, zone, start, end):
    quiet = QuietHours(start, end)
    allowed = quiet.next_allowed(instant, zone)
    assert allowed >= instant
    assert not quiet.is_quiet(allowed, zone)
    if not quiet.is_quiet(instant, zone):
        assert allowed == instant
    else:
        assert quiet.is_quiet(allowed - timedelta(minutes=1), zone)
        assert allowed - instant <= timedelta(hours=25)


@modest
@given(now=instants, hours=st.lists(st.integers(1, 336), max_size=6),
       lead=st.integers(0, 400 * 60), zone=st.sampled_from([PHOENIX, DENVER]))
def test_every_planned_reminder_is_due_before_the_visit_outside_quiet_hours(now, hours, lead,
                                                                            zone):
    start = now + timedelta(minutes=lead)
    planned = plan_reminders(ReminderPlan(True, tuple(hours), True), starts_at=start,
                             ends_at=start + timedelta(hours=1), patient_zone=zone, now=now,
                             quiet=QUIET)
    kinds = [p.kind for p in planned]
    assert len(kinds) == len(set(kinds)) == 2 + len(set(hours))  # nothing silently dropped
    for reminder in planned:
        if reminder.skip_reason is None:
            assert reminder.due_at >= now
            assert not QUIET.is_quiet(reminder.due_at, zone)
            if reminder.kind != "next_day_check_in":
                assert reminder.due_at < start


# The check before sending ----------------------------------------------------------------

CONTACT = Contact(email="a@example.com", phone="+16025550111", sms_consent=True,
                  email_consent=True, sms_opted_out=False)
START = utc(2026, 12, 10, 20, 0)  # 13:00 in Phoenix
DAY_BEFORE = utc(2026, 12, 9, 20, 0)


def check(kind="before_24h", *, status="booked", now=DAY_BEFORE, contact=CONTACT,
          zone=PHOENIX, due_at=None):
    return decide(kind, booking_status=status, starts_at=START, due_at=due_at or now, now=now,
                  patient_zone=zone, quiet=QUIET, contact=contact)


def test_an_active_upcoming_booking_is_sent_by_sms_with_consent():
    decision = check()
    assert (decision.action, decision.channel, decision.address) == ("send", "sms",
                                                                     "+16025550111")


@pytest.mark.parametrize(("status", "action", "reason"), [
    ("cancelled", "cancel", "booking_cancelled"),
    ("noshow", "cancel", "booking_no_show"),
    ("checked-in", "skip", "booking_not_active"),
    ("fulfilled", "skip", "booking_not_active"),
    ("pending", "send", None),
])
def test_the_booking_must_still_be_active(status, action, reason):
    decision = check(status=status)
    assert (decision.action, decision.reason) == (action, reason)


def test_a_visit_that_has_passed_is_skipped():
    assert check(now=START + timedelta(minutes=1)).reason == "visit_passed"


def test_the_check_in_needs_a_visit_that_happened():
    after = utc(2026, 12, 11, 17, 0)
    assert check("next_day_check_in", status="fulfilled", now=after).action == "send"
    assert check("next_day_check_in", status="booked", now=after).reason == "visit_not_completed"
    stale = check("next_day_check_in", status="fulfilled", now=after + timedelta(days=2),
                  due_at=after)
    assert stale.reason == "check_in_stale"


def test_channel_follows_consent_opt_out_and_contact():
    opted_out = Contact("a@example.com", "+16025550111", True, True, sms_opted_out=True)
    assert choose_channel(opted_out) == ("email", "a@example.com")
    no_phone = Contact("a@example.com", None, True, True, False)
    assert choose_channel(no_phone) == ("email", "a@example.com")
    sms_only_consent_opted_out = Contact("a@example.com", "+16025550111", True, False, True)
    assert choose_channel(sms_only_consent_opted_out) is None
    assert check(contact=sms_only_consent_opted_out).reason == "no_consented_contact"
    email_without_consent = Contact("a@example.com", "+16025550111", False, False, False)
    assert choose_channel(email_without_consent) is None


def test_quiet_hours_at_send_time_defer_or_skip():
    night = utc(2026, 12, 9, 5, 0)  # 22:00 in Phoenix
    deferred = check(now=night)
    assert deferred.action == "defer"
    assert deferred.until == utc(2026, 12, 9, 15, 0)  # 08:00 in Phoenix
    early_visit_night = check(now=utc(2026, 12, 10, 14, 0), zone=PHOENIX)  # 07:00
    assert early_visit_night.action == "defer"
    # A Navajo (Denver) patient in summer: 14:30Z is 08:30 MDT, allowed.
    summer = decide("before_2h", booking_status="booked", starts_at=utc(2026, 7, 14, 17, 0),
                    due_at=utc(2026, 7, 14, 14, 30), now=utc(2026, 7, 14, 14, 30),
                    patient_zone=DENVER, quiet=QUIET, contact=CONTACT)
    assert summer.action == "send"


def test_quiet_hours_reaching_the_visit_skip_at_send_time():
    start = utc(2026, 12, 10, 15, 0)  # 08:00 in Phoenix
    decision = decide("before_2h", booking_status="booked", starts_at=start, due_at=start,
                      now=utc(2026, 12, 10, 13, 0), patient_zone=PHOENIX, quiet=QUIET,
                      contact=CONTACT)
    assert (decision.action, decision.reason) == ("skip", "quiet_hours_until_visit")


def test_backoff_is_exponential_and_capped():
    assert [backoff(n, 60).total_seconds() for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert backoff(30, 60) == timedelta(hours=1)


@given(st.integers(1, 40), st.floats(0.01, 600))
def test_backoff_never_shrinks(attempts, base):
    assume(attempts > 1)
    assert backoff(attempts, base) >= backoff(attempts - 1, base)
