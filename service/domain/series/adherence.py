"""Series that keep their protocol: a change to one session is judged against the whole course.

A session of a treatment series is an ordinary booking, rescheduled or cancelled through the
booking endpoints; what the booking alone cannot see is the protocol it belongs to. So the
booking asks here first (inside its own transaction, the series row locked so two changes to
one series are judged one after the other):

- a **reschedule** must leave the moved session keeping the protocol with the others: at
  least the least gap from its neighbours (``protocol_spacing``), the whole course within
  the protocol's days, or a booster within its weeks after the previous session
  (``protocol_window``), no more sessions in a week than the weekly rhythm holds
  (``protocol_rhythm``). A problem the series already had (an earlier confirmed change) is
  not held against a change that does not touch it;
- a **cancellation** must leave room to make the session up: from the first day a make-up
  could be booked (the service type's notice), the missing sessions must still fit the
  protocol's spacing within its window (``protocol_window``).

A change that breaks one answers 409 with the rule's code, the sessions concerned and what
breaks, unless a provider or an admin confirms it with a reason (``override``): the change
goes through and the confirmation is recorded on the series (``SeriesProtocolOverride``),
shown in the series' answer, in the session's history (``booking.protocol_overridden``) and,
for a request, in the audit trail (a ``protocol_override`` row, ``audit/services.py``). A
cancelled series has no protocol left to keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from service.domain.access.actor import Actor
from service.domain.bookings.history import BookingEvent, BookingEventKind
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.clinic.models import Location, ServiceType
from service.domain.errors import Conflict, InvalidInput
from service.domain.series import protocols
from service.domain.series.models import (
    ProtocolOverrideAction,
    SeriesProtocolOverride,
    SeriesStatus,
    TreatmentSeries,
)
from service.domain.series.policy import policy
from service.domain.series.protocols import PROTOCOLS, Problem, ProblemKind, Protocol
from service.domain.time import in_zone
from service.uow import UnitOfWork

# Sessions that count towards the protocol: done or still to come.
KEPT = (BookingStatus.PENDING, BookingStatus.BOOKED, BookingStatus.CHECKED_IN,
        BookingStatus.FULFILLED)

# A protocol problem -> the rule's stable code (service/errors.py).
RULE_OF_PROBLEM = {
    ProblemKind.SPACING: "protocol_spacing",
    ProblemKind.WINDOW: "protocol_window",
    ProblemKind.AFTER_PREVIOUS: "protocol_window",
    ProblemKind.WEEK: "protocol_rhythm",
}
HOW_TO_CONFIRM = ("A provider or an admin may confirm it with override.reason; the "
                  "confirmation is recorded on the series.")


class ProtocolBroken(Conflict):
    """The change breaks the series' protocol (``code``: the first broken rule)."""

    title = "The change breaks the series' protocol"


@dataclass(frozen=True)
class Breach:
    rule: str  # protocol_spacing, protocol_window, protocol_rhythm
    issue: str  # in words
    days: tuple[date, ...]  # the local days of the sessions concerned


def protocol_of(series: TreatmentSeries, zone: str) -> Protocol:
    """The protocol the series follows (a custom RRULE's, expanded from its first start)."""
    if series.rrule:
        local = in_zone(series.first_start, zone)
        return protocols.custom_protocol(
            protocols.expand_rrule(series.rrule, local.date(), local.time(), zone))
    return PROTOCOLS[series.protocol]


def breaches(problems: list[Problem], *, before: list[Problem] | None = None,
             touching: date | None = None) -> list[Breach]:
    """The spacing, window and rhythm problems (not the session count), leaving out those
    the series already had (``before``) and those that do not concern ``touching``."""
    known = set(before or ())
    return [Breach(RULE_OF_PROBLEM[p.kind], p.message, p.days) for p in problems
            if p.kind in RULE_OF_PROBLEM and p not in known
            and (touching is None or touching in p.days)]


def refusal(breached: list[Breach], sessions: list[dict[str, Any]], *, what: str
            ) -> ProtocolBroken:
    rules = sorted({b.rule for b in breached}, key=[b.rule for b in breached].index)
    return ProtocolBroken(
        f"{what} breaks the series' protocol: {'; '.join(b.issue for b in breached)}. "
        f"{HOW_TO_CONFIRM}", code=rules[0], rules=rules,
        issues=[b.issue for b in breached], sessions=sessions)


def confirmed(actor: Actor, override_reason: str | None) -> str | None:
    """The reason of a confirmation the actor may give (None: no confirmation given)."""
    if override_reason is None:
        return None
    policy.require(actor, "override_protocol")
    if not override_reason.strip():
        raise InvalidInput("Confirming a change that breaks the protocol needs a reason.",
                           code="invalid_input", field="override.reason")
    return override_reason.strip()


def record_override(uow: UnitOfWork, actor: Actor, series: TreatmentSeries,
                    action: ProtocolOverrideAction, breached: list[Breach], reason: str, *,
                    now: datetime, booking: Booking | None = None,
                    session_start: datetime | None = None) -> SeriesProtocolOverride:
    record = SeriesProtocolOverride(
        series_id=series.id, booking_id=booking.id if booking is not None else None,
        action=action, rules=",".join(sorted({b.rule for b in breached})),
        issues="; ".join(b.issue for b in breached)[:2000], session_start=session_start,
        reason=reason, actor_key_id=actor.key_id, created_at=now, updated_at=now)
    uow.session.add(record)
    if booking is not None:  # the session's own history says so too
        uow.session.add(BookingEvent(booking_id=booking.id, occurred_at=now,
                                     kind=BookingEventKind.PROTOCOL_OVERRIDDEN,
                                     actor_key_id=actor.key_id))
    return record


def overrides_of(uow: UnitOfWork, series: TreatmentSeries) -> list[SeriesProtocolOverride]:
    return list(uow.session.scalars(
        select(SeriesProtocolOverride).where(SeriesProtocolOverride.series_id == series.id)
        .order_by(SeriesProtocolOverride.created_at, SeriesProtocolOverride.id)))


# The course a session belongs to ----------------------------------------------------------


@dataclass
class _Course:
    series: TreatmentSeries
    zone: str
    protocol: Protocol
    anchor: date
    previous: date | None
    others: list[Booking]  # the other kept sessions, by start

    def day(self, instant: datetime) -> date:
        return in_zone(instant, self.zone).date()

    @property
    def other_days(self) -> list[date]:
        return [self.day(b.starts_at) for b in self.others]

    def sessions(self, days: tuple[date, ...], moved: Booking, moved_start: datetime
                 ) -> list[dict[str, Any]]:
        """The sessions on these days, numbered in the course's order after the change."""
        course = sorted([*((b, b.starts_at) for b in self.others), (moved, moved_start)],
                        key=lambda pair: (pair[1], str(pair[0].id)))
        return [{"index": number, "booking_id": str(b.id),
                 "start": in_zone(start, self.zone).isoformat()}
                for number, (b, start) in enumerate(course, start=1)
                if self.day(start) in days]


def _course(uow: UnitOfWork, booking: Booking) -> _Course | None:
    """The active series of a session, locked, with its other kept sessions; None when the
    booking is not a session of an active series."""
    if booking.series_id is None:
        return None
    session = uow.session
    series = session.scalar(select(TreatmentSeries).where(TreatmentSeries.id == booking.series_id)
                            .with_for_update())
    if series is None or series.status is not SeriesStatus.ACTIVE:
        return None
    zone = session.get(Location, series.location_id).timezone
    others = list(session.scalars(
        select(Booking).where(Booking.series_id == series.id, Booking.id != booking.id,
                              Booking.status.in_(KEPT))
        .order_by(Booking.starts_at, Booking.id)))
    previous = (in_zone(series.previous_session_at, zone).date()
                if series.previous_session_at else None)
    return _Course(series=series, zone=zone, protocol=protocol_of(series, zone),
                   anchor=in_zone(series.first_start, zone).date(), previous=previous,
                   others=others)


# The checks the booking asks for ---------------------------------------------------------


def keep_on_reschedule(uow: UnitOfWork, actor: Actor, booking: Booking, start: datetime, *,
                       override_reason: str | None, now: datetime) -> None:
    """Moving a session to ``start`` must keep the protocol with the other sessions, unless
    a provider or an admin confirms it (recorded)."""
    reason = confirmed(actor, override_reason)
    course = _course(uow, booking)
    if course is None:
        return
    protocol, days = course.protocol, course.other_days
    old, new = course.day(booking.starts_at), course.day(start)
    check = {"anchor": course.anchor, "previous": course.previous, "complete": False}
    broken = breaches(protocols.check_days(protocol, [*days, new], **check),
                      before=protocols.check_days(protocol, [*days, old], **check),
                      touching=new)
    if not broken:
        return
    if reason is None:
        concerned = tuple(sorted({d for b in broken for d in b.days}))
        raise refusal(broken, course.sessions(concerned, booking, start),
                      what="Moving this session")
    record_override(uow, actor, course.series, ProtocolOverrideAction.RESCHEDULE, broken,
                    reason, now=now, booking=booking, session_start=start)


def keep_on_cancel(uow: UnitOfWork, actor: Actor, booking: Booking, *,
                   override_reason: str | None, now: datetime) -> None:
    """Cancelling a session must leave room to make it up within the protocol's window and
    spacing (from the first day the service type's notice allows), unless a provider or an
    admin confirms it (recorded). Already too late before the cancellation: not held against
    it."""
    reason = confirmed(actor, override_reason)
    course = _course(uow, booking)
    if course is None:
        return
    series = course.series
    notice = uow.session.get(ServiceType, series.service_type_id).min_notice_minutes
    earliest = course.day(now + timedelta(minutes=notice))
    days = course.other_days
    missing = series.planned_sessions - len(days)  # with this session cancelled
    room = {"from_day": earliest, "anchor": course.anchor, "previous": course.previous}
    if not protocols.can_complete(course.protocol, days, missing, **room):
        kept = [*days, course.day(booking.starts_at)]
        if not protocols.can_complete(course.protocol, kept, missing - 1, **room):
            return  # the course could not be completed before this cancellation either
        window = protocols.window_of(course.protocol, kept, anchor=course.anchor,
                                     previous=course.previous)
        last = f" (its last day is {window[1]})" if window else ""
        broken = [Breach("protocol_window",
                         f"without this session, {missing} session(s) cannot be made up from "
                         f"{earliest} within the protocol's window{last} and spacing",
                         (course.day(booking.starts_at),))]
        if reason is None:
            raise refusal(broken, course.sessions(broken[0].days, booking, booking.starts_at),
                          what="Cancelling this session")
        record_override(uow, actor, series, ProtocolOverrideAction.CANCEL, broken, reason,
                        now=now, booking=booking, session_start=booking.starts_at)
