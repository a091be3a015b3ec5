"""Treatment protocols as data, and the pure rules that plan and check a series.

A protocol says how many sessions a series has and how they are spaced:

- ``iv-induction``: six IV infusions, at least 2 days apart, all within 21 days;
- ``esketamine-induction``: twice weekly for 4 weeks, then weekly for 4 weeks (12 sessions,
  weeks counted from the first session's day);
- ``booster``: one session, 3 to 6 weeks after the previous treatment session;
- ``home-check-ins``: the pill at home: a telehealth check-in after each prescribed home dose,
  twice weekly for 3 weeks (6 check-ins, at least 2 days apart, within 21 days); booked only
  with an at-home service type (``Protocol.home``);
- ``custom``: an RFC 5545 RRULE (expanded by python-dateutil), with COUNT or UNTIL, at most
  52 sessions within one year.

Everything here works on local calendar dates and wall-clock times in the location's zone and
returns plain values, so hypothesis tests it without a database. ``starts`` turns local dates
into UTC instants with ``local_to_utc``, so a 10:00 series stays at 10:00 across DST changes.
"""

from __future__ import annotations

import enum
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from dateutil.rrule import rrulestr

from service.domain.errors import InvalidInput
from service.domain.time import local_to_utc, zone

__all__ = [
    "CUSTOM",
    "MAX_OCCURRENCES",
    "MAX_SPAN_DAYS",
    "PROTOCOLS",
    "Phase",
    "Problem",
    "Protocol",
    "ProtocolUnsatisfiable",
    "RRuleError",
    "can_complete",
    "check_days",
    "custom_protocol",
    "expand_rrule",
    "fits",
    "plan_days",
    "starts",
    "window_of",
]

CUSTOM = "custom"
MAX_OCCURRENCES = 52
MAX_SPAN_DAYS = 365
MAX_RRULE_LENGTH = 500
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Phase:
    """``per_week`` sessions in each of ``weeks`` consecutive weeks."""

    weeks: int
    per_week: int


@dataclass(frozen=True)
class Protocol:
    code: str
    name: str
    description: str
    sessions: int
    min_gap_days: int = 0  # consecutive sessions at least this many days apart
    window_days: int | None = None  # every session within this many days (day 1 = the first)
    cadence_days: int = 1  # default spacing when no preferred weekdays are given
    phases: tuple[Phase, ...] = ()  # a weekly rhythm, weeks counted from the anchor day
    after_previous: tuple[int, int] | None = None  # (min, max) days after the previous session
    home: bool = False  # telehealth check-ins of a home protocol (an at-home service type)

    @property
    def weeks(self) -> int:
        return sum(phase.weeks for phase in self.phases)

    def per_week(self, week: int) -> int | None:
        """How many sessions week ``week`` (0-based, from the anchor) holds; None: outside."""
        for phase in self.phases:
            if week < phase.weeks:
                return phase.per_week
            week -= phase.weeks
        return None


PROTOCOLS: dict[str, Protocol] = {p.code: p for p in (
    Protocol("iv-induction", name="IV ketamine induction",
             description="Six infusions, at least 2 days apart, all within 21 days.",
             sessions=6, min_gap_days=2, window_days=21, cadence_days=3),
    Protocol("esketamine-induction", name="Esketamine induction",
             description="Twice weekly for 4 weeks, then weekly for 4 weeks (12 sessions, at "
                         "least 2 days apart; weeks count from the first session's day).",
             sessions=12, min_gap_days=2, window_days=56,
             phases=(Phase(weeks=4, per_week=2), Phase(weeks=4, per_week=1))),
    Protocol("booster", name="Booster",
             description="One session, 3 to 6 weeks after the previous treatment session.",
             sessions=1, after_previous=(21, 42)),
    Protocol("home-check-ins", name="Home protocol check-ins (oral or sublingual)",
             description="The pill at home: a telehealth check-in after each prescribed home "
                         "dose, twice weekly for 3 weeks (6 check-ins, at least 2 days apart, "
                         "within 21 days; weeks count from the first check-in's day).",
             sessions=6, min_gap_days=2, window_days=21,
             phases=(Phase(weeks=3, per_week=2),), home=True),
)}


def custom_protocol(days: Sequence[date]) -> Protocol:
    """The protocol a custom recurrence defines: its sessions, within the span it covers."""
    span = (max(days) - min(days)).days + 1 if days else 1
    return Protocol(code=CUSTOM, name="Custom recurrence",
                    description="Sessions as an RFC 5545 RRULE gives them.",
                    sessions=len(days), window_days=span)


class ProtocolUnsatisfiable(InvalidInput):
    code = "protocol_not_satisfiable"
    title = "The series cannot keep its protocol"


class RRuleError(InvalidInput):
    code = "invalid_rrule"
    title = "The recurrence rule cannot be used"


# Checking a set of session days ---------------------------------------------------------


class ProblemKind(enum.StrEnum):
    COUNT = "count"
    SPACING = "spacing"
    WINDOW = "window"
    WEEK = "week"
    AFTER_PREVIOUS = "after_previous"


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    message: str
    days: tuple[date, ...] = ()  # the session days the problem is about


def check_days(protocol: Protocol, days: Iterable[date], *, anchor: date | None = None,
               previous: date | None = None, complete: bool = True) -> list[Problem]:
    """What breaks the protocol in these session days (empty: they keep it).

    ``anchor`` is the day the weeks of a weekly rhythm count from (default: the first day);
    ``previous`` is the previous treatment session (for ``after_previous``). With
    ``complete=False`` having fewer sessions than the protocol is not a problem.
    """
    ordered = sorted(days)
    problems: list[Problem] = []
    count = len(ordered)
    if count > protocol.sessions or (complete and count < protocol.sessions):
        problems.append(Problem(ProblemKind.COUNT,
                                f"{count} of {protocol.sessions} sessions"))
    if not ordered:
        return problems
    gap = protocol.min_gap_days
    for earlier, later in itertools.pairwise(ordered):
        if (later - earlier).days < gap:
            problems.append(Problem(ProblemKind.SPACING,
                                    f"{earlier} and {later} are less than {gap} days apart",
                                    (earlier, later)))
    if protocol.window_days is not None:
        span = (ordered[-1] - ordered[0]).days + 1
        if span > protocol.window_days:
            problems.append(Problem(ProblemKind.WINDOW,
                                    f"the sessions span {span} days, more than "
                                    f"{protocol.window_days}", (ordered[0], ordered[-1])))
    if protocol.phases:
        start = anchor or ordered[0]
        per_week = Counter((day - start).days // 7 for day in ordered)
        for week, held in sorted(per_week.items()):
            allowed = protocol.per_week(week) if week >= 0 else None
            those = tuple(day for day in ordered if (day - start).days // 7 == week)
            if allowed is None:
                problems.append(Problem(ProblemKind.WINDOW,
                                        f"{held} session(s) outside the protocol's "
                                        f"{protocol.weeks} weeks", those))
            elif held > allowed:
                problems.append(Problem(ProblemKind.WEEK,
                                        f"week {week + 1} has {held} sessions, at most "
                                        f"{allowed}", those))
    if protocol.after_previous is not None and previous is not None:
        least, most = protocol.after_previous
        for day in ordered:
            if not least <= (day - previous).days <= most:
                problems.append(Problem(ProblemKind.AFTER_PREVIOUS,
                                        f"{day} is not {least} to {most} days after the "
                                        f"previous session ({previous})", (day,)))
    return problems


def fits(protocol: Protocol, days: Iterable[date], *, anchor: date | None = None,
         previous: date | None = None) -> bool:
    """Do these days keep the protocol's spacing and window (fewer sessions allowed)?"""
    return not check_days(protocol, days, anchor=anchor, previous=previous, complete=False)


def can_complete(protocol: Protocol, days: Iterable[date], missing: int, *, from_day: date,
                 anchor: date | None = None, previous: date | None = None) -> bool:
    """Can ``missing`` more sessions, on days from ``from_day`` on, join these days and the
    whole course still keep the protocol's spacing, window and rhythm? (Earliest day first:
    with a least gap and a window, the earliest choices leave the most room.)"""
    chosen = sorted(days)
    if missing <= 0:
        return True
    for offset in range(MAX_SPAN_DAYS + 1):
        day = from_day + offset * DAY
        if fits(protocol, [*chosen, day], anchor=anchor, previous=previous):
            chosen.append(day)
            missing -= 1
            if missing == 0:
                return True
    return False


def window_of(protocol: Protocol, days: Sequence[date], *, anchor: date,
              previous: date | None = None) -> tuple[date, date] | None:
    """The first and last day the protocol's sessions may fall on."""
    if protocol.after_previous is not None and previous is not None:
        least, most = protocol.after_previous
        return previous + least * DAY, previous + most * DAY
    first = min(days) if days else anchor
    if protocol.phases:
        return anchor, anchor + (7 * protocol.weeks - 1) * DAY
    if protocol.window_days is not None:
        return first, first + (protocol.window_days - 1) * DAY
    return None


# Planning a series -----------------------------------------------------------------------


def _preferred(day: date, weekdays: frozenset[int]) -> bool:
    return not weekdays or day.weekday() in weekdays


def plan_days(protocol: Protocol, first_day: date, *, weekdays: Iterable[int] = (),
              previous: date | None = None) -> list[date]:
    """The session days of a series starting on ``first_day``.

    Later sessions fall on ``weekdays`` (0 = Monday) when given, else every
    ``cadence_days``; a weekly rhythm takes its sessions week by week. Raises
    ``ProtocolUnsatisfiable`` when the days cannot keep the protocol.
    """
    preferred = frozenset(weekdays)
    if protocol.phases:
        days = _weekly_days(protocol, first_day, preferred)
    else:
        step = max(protocol.min_gap_days, 1 if preferred else protocol.cadence_days, 1) * DAY
        days = [first_day]
        while len(days) < protocol.sessions:
            day = days[-1] + step
            while not _preferred(day, preferred):
                day += DAY
            days.append(day)
    problems = check_days(protocol, days, anchor=first_day, previous=previous)
    if problems:
        extras = {}
        if protocol.after_previous is not None and previous is not None:
            earliest, latest = window_of(protocol, days, anchor=first_day, previous=previous)
            extras = {"earliest": earliest.isoformat(), "latest": latest.isoformat()}
        raise ProtocolUnsatisfiable(
            f"These days break the {protocol.code} protocol: "
            f"{'; '.join(p.message for p in problems)}.",
            problems=[p.message for p in problems], **extras)
    return days


def _weekly_days(protocol: Protocol, first_day: date, preferred: frozenset[int]) -> list[date]:
    days: list[date] = []
    for week in range(protocol.weeks):
        wanted = protocol.per_week(week) or 0
        week_start = first_day + 7 * week * DAY
        if preferred:
            options = [week_start + k * DAY for k in range(7)
                       if (week_start + k * DAY).weekday() in preferred]
        else:
            options = [week_start + k * (7 // wanted) * DAY for k in range(wanted)]
        if week == 0:
            options = [first_day] + [d for d in options if d > first_day]
        chosen: list[date] = []
        for day in options:
            last = chosen[-1] if chosen else (days[-1] if days else None)
            if last is None or (day - last).days >= protocol.min_gap_days:
                chosen.append(day)
            if len(chosen) == wanted:
                break
        days += chosen  # too few shows up as a problem in check_days
    return days


def starts(days: Iterable[date], at: time, zone_name: str) -> list[datetime]:
    """The UTC instants of the local wall-clock time ``at`` on each day, DST included."""
    return [local_to_utc(day, at, zone_name) for day in days]


# Custom recurrences ----------------------------------------------------------------------

ALLOWED_FREQUENCIES = frozenset({"DAILY", "WEEKLY", "MONTHLY"})
ALLOWED_PARTS = frozenset({"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "WKST",
                           "BYMONTHDAY", "BYSETPOS"})
MONTHLY_PARTS = frozenset({"BYMONTHDAY", "BYSETPOS"})


def _rule_parts(rule: str) -> tuple[str, dict[str, str]]:
    """Split ``NAME=value;...`` to see which parts are used (dateutil does the parsing)."""
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[len("RRULE:"):]
    if not text or len(text) > MAX_RRULE_LENGTH or any(c in text for c in "\r\n"):
        raise RRuleError(f"Give one RRULE line of at most {MAX_RRULE_LENGTH} characters, "
                         "e.g. FREQ=WEEKLY;BYDAY=MO,TH;COUNT=8 (the series' first start is "
                         "its DTSTART).")
    parts: dict[str, str] = {}
    for item in text.split(";"):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise RRuleError(f"'{item[:40]}' is not a NAME=value part of an RRULE.")
        parts[name.strip().upper()] = value.strip()
    return text, parts


def expand_rrule(rule: str, first_day: date, at: time, zone_name: str) -> list[date]:
    """The local days an RRULE gives from ``first_day`` at ``at`` in ``zone_name``.

    The rule must end (COUNT or UNTIL: ``rrule_unbounded``), give at most 52 sessions within
    one year (``rrule_too_long``), repeat at most daily and never set the hour itself (the
    series' time does); anything dateutil cannot read is ``invalid_rrule``.
    """
    text, parts = _rule_parts(rule)
    unsupported = sorted(set(parts) - ALLOWED_PARTS)
    if unsupported:
        raise RRuleError(f"A treatment series cannot use {', '.join(unsupported)} (allowed: "
                         f"{', '.join(sorted(ALLOWED_PARTS))}).")
    frequency = parts.get("FREQ", "").upper()
    if frequency not in ALLOWED_FREQUENCIES:
        raise RRuleError("FREQ must be DAILY, WEEKLY or MONTHLY for a treatment series.")
    if frequency != "MONTHLY" and MONTHLY_PARTS & set(parts):
        raise RRuleError("BYMONTHDAY and BYSETPOS are for FREQ=MONTHLY rules.")
    if "COUNT" not in parts and "UNTIL" not in parts:
        raise RRuleError("The rule never ends: give COUNT or UNTIL.", code="rrule_unbounded",
                         title="The recurrence has no end")
    # UNTIL in UTC (…Z) needs a zone-aware DTSTART, a floating UNTIL a floating one (RFC 5545);
    # either way dateutil keeps the wall-clock time of DTSTART.
    aware = parts.get("UNTIL", "").upper().endswith("Z")
    dtstart = datetime.combine(first_day, at, tzinfo=zone(zone_name) if aware else None)
    try:
        recurrence = rrulestr(text, dtstart=dtstart, forceset=False)
        limit = first_day + MAX_SPAN_DAYS * DAY
        days: list[date] = []
        for occurrence in recurrence:
            day = occurrence.date()
            if day > limit or len(days) == MAX_OCCURRENCES:
                raise RRuleError(
                    f"A series holds at most {MAX_OCCURRENCES} sessions within one year.",
                    code="rrule_too_long", title="The recurrence is too long",
                    max_occurrences=MAX_OCCURRENCES, max_days=MAX_SPAN_DAYS)
            days.append(day)
    except RRuleError:
        raise
    except (ValueError, TypeError, OverflowError, IndexError, KeyError) as exc:
        raise RRuleError(f"Not a valid RRULE: {str(exc)[:120]}") from None
    if not days:
        raise RRuleError("The rule gives no session from the first start on.")
    return days
