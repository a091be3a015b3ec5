"""Reminder planning and the last check before sending (pure: plain values in and out).

A service type's plan (``ServiceType.reminder_plan``) names the reminders of a booking:

- ``confirmation``: at once, when the visit is booked (or a hold is confirmed, or moved);
- ``before_<h>h`` for each of ``hours_before``: h hours before the visit;
- ``next_day_check_in``: a "how are you feeling" message at 10:00 the day after the visit.

Quiet hours (default 21:00-08:00) are wall-clock times in the PATIENT's zone: a reminder
due inside them is deferred to their end, unless that is not before the visit, in which
case it is skipped with a reason. A reminder already past when it is planned is recorded as
skipped with a reason, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from service.domain.time import in_zone, local_to_utc, require_aware, to_utc

CONFIRMATION = "confirmation"
NEXT_DAY_CHECK_IN = "next_day_check_in"
WAITLIST_OFFER = "waitlist_offer"  # a freed slot held for a waitlisted patient
BEFORE_PREFIX = "before_"
CHECK_IN_LOCAL_TIME = time(10, 0)
CHECK_IN_STALE_AFTER = timedelta(hours=24)
"""A check-in message later than this (the dispatcher was down) is no longer sent."""

ACTIVE_STATUSES = frozenset({"pending", "booked"})
VISITED_STATUSES = frozenset({"checked-in", "fulfilled"})
ENDED_STATUSES = {"cancelled": "booking_cancelled", "noshow": "booking_no_show"}

# Reasons (machine codes, never patient data) recorded on skipped / cancelled rows.
PAST_AT_PLANNING = "past_due_at_planning"
QUIET_UNTIL_VISIT = "quiet_hours_until_visit"
VISIT_PASSED = "visit_passed"
BOOKING_NOT_ACTIVE = "booking_not_active"
VISIT_NOT_COMPLETED = "visit_not_completed"
CHECK_IN_STALE = "check_in_stale"
NO_CHANNEL = "no_consented_contact"


def before_kind(hours: int) -> str:
    return f"{BEFORE_PREFIX}{hours}h"


def is_before_kind(kind: str) -> bool:
    return kind.startswith(BEFORE_PREFIX)


@dataclass(frozen=True)
class QuietHours:
    """A daily wall-clock window without messages; it may wrap midnight (21:00-08:00).

    ``start == end`` means no quiet hours at all.
    """

    start: time = time(21, 0)
    end: time = time(8, 0)

    def contains(self, wall: time) -> bool:
        wall = wall.replace(tzinfo=None, fold=0)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end

    def is_quiet(self, instant: datetime, zone_name: str) -> bool:
        return self.contains(in_zone(instant, zone_name).time())

    def next_allowed(self, instant: datetime, zone_name: str) -> datetime:
        """``instant`` if messages are allowed then, else the end of the quiet hours (UTC)."""
        local = in_zone(instant, zone_name)
        if not self.contains(local.time()):
            return to_utc(instant)
        day = local.date()
        if self.start > self.end and local.time().replace(tzinfo=None) >= self.start:
            day += timedelta(days=1)  # evening part of a window that wraps midnight
        return local_to_utc(day, self.end, zone_name)


@dataclass(frozen=True)
class ReminderPlan:
    confirmation: bool = True
    hours_before: tuple[int, ...] = (72, 24, 2)
    next_day_check_in: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ReminderPlan:
        data = data or {}
        hours = data.get("hours_before", cls.hours_before)
        return cls(confirmation=bool(data.get("confirmation", cls.confirmation)),
                   hours_before=tuple(sorted({int(h) for h in hours if int(h) > 0},
                                             reverse=True)),
                   next_day_check_in=bool(data.get("next_day_check_in", False)))


@dataclass(frozen=True)
class PlannedReminder:
    kind: str
    due_at: datetime
    skip_reason: str | None = None  # None: planned; else recorded as skipped


def plan_reminders(plan: ReminderPlan, *, starts_at: datetime, ends_at: datetime,
                   patient_zone: str, now: datetime, quiet: QuietHours,
                   kinds: Iterable[str] | None = None) -> list[PlannedReminder]:
    """The reminders of one booking (version), each planned or skipped with a reason.

    ``kinds`` restricts the plan to these kinds (for example only the confirmation when a
    hold is confirmed); by default every kind of the plan.
    """
    starts_at, ends_at = to_utc(starts_at), to_utc(ends_at)
    now = to_utc(require_aware(now, "now"))
    wanted = None if kinds is None else set(kinds)
    planned: list[PlannedReminder] = []

    def add(kind: str, nominal: datetime, *, before_visit: bool) -> None:
        if wanted is not None and kind not in wanted:
            return
        if nominal < now:
            planned.append(PlannedReminder(kind, nominal, PAST_AT_PLANNING))
            return
        due = quiet.next_allowed(nominal, patient_zone)
        if before_visit and due >= starts_at:
            planned.append(PlannedReminder(kind, due, QUIET_UNTIL_VISIT))
            return
        planned.append(PlannedReminder(kind, due))

    if plan.confirmation:
        add(CONFIRMATION, now, before_visit=True)
    for hours in sorted(set(plan.hours_before), reverse=True):
        add(before_kind(hours), starts_at - timedelta(hours=hours), before_visit=True)
    if plan.next_day_check_in:
        add(NEXT_DAY_CHECK_IN, next_day_check_in_at(ends_at, patient_zone), before_visit=False)
    return planned


def next_day_check_in_at(ends_at: datetime, zone_name: str) -> datetime:
    """10:00 in the patient's zone on the day after the visit ends (there)."""
    day = in_zone(ends_at, zone_name).date() + timedelta(days=1)
    return local_to_utc(day, CHECK_IN_LOCAL_TIME, zone_name)


# The check right before sending --------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """What decides the channel: consent, opt-out and contact data (never logged)."""

    email: str | None
    phone: str | None
    sms_consent: bool
    email_consent: bool
    sms_opted_out: bool


def choose_channel(contact: Contact) -> tuple[str, str] | None:
    """("sms", phone) with SMS consent and no opt-out, else ("email", address) with email
    consent, else None."""
    if contact.sms_consent and not contact.sms_opted_out and contact.phone:
        return "sms", contact.phone
    if contact.email_consent and contact.email:
        return "email", contact.email
    return None


@dataclass(frozen=True)
class Decision:
    action: str  # send, skip, cancel, defer
    reason: str | None = None
    channel: str | None = None
    address: str | None = None
    until: datetime | None = None


def decide(kind: str, *, booking_status: str, starts_at: datetime, due_at: datetime,
           now: datetime, patient_zone: str, quiet: QuietHours, contact: Contact) -> Decision:
    """Whether a claimed reminder goes out now, re-checked against the current state."""
    now = to_utc(now)
    if booking_status in ENDED_STATUSES:
        return Decision("cancel", ENDED_STATUSES[booking_status])
    if kind == NEXT_DAY_CHECK_IN:
        if booking_status not in VISITED_STATUSES:
            return Decision("skip", VISIT_NOT_COMPLETED)
        if now > due_at + CHECK_IN_STALE_AFTER:
            return Decision("skip", CHECK_IN_STALE)
    else:
        if booking_status not in ACTIVE_STATUSES:
            return Decision("skip", BOOKING_NOT_ACTIVE)
        if now >= starts_at:
            return Decision("skip", VISIT_PASSED)
    chosen = choose_channel(contact)
    if chosen is None:
        return Decision("skip", NO_CHANNEL)
    if quiet.is_quiet(now, patient_zone):
        until = quiet.next_allowed(now, patient_zone)
        if kind != NEXT_DAY_CHECK_IN and until >= starts_at:
            return Decision("skip", QUIET_UNTIL_VISIT)
        return Decision("defer", "deferred_quiet_hours", until=until)
    return Decision("send", channel=chosen[0], address=chosen[1])

