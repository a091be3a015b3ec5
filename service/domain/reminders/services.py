"""Reminder use cases: planning in the booking's transaction, reads, retry, SMS replies.

The planning functions are handlers of the booking's events (``service/bootstrap.py``): they
run inside the transaction that changes the booking, so the outbox rows commit (or roll
back) with it:

- created: the plan's reminders, version 1 (a hold gets its confirmation when confirmed);
- rescheduled: open rows cancelled ("rescheduled"), the plan again under the next version;
- confirmed: the confirmation of the current version;
- checked in: the open "before" reminders cancelled (the check-in message stays);
- cancelled, no-show: every open row cancelled.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from service.config import Settings
from service.domain.access.actor import Actor
from service.domain.bookings import fresh
from service.domain.bookings.events import (
    BookingCancelled,
    BookingCheckedIn,
    BookingConfirmed,
    BookingCreated,
    BookingNoShow,
    BookingRescheduled,
)
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.bookings.policy import policy as booking_policy
from service.domain.clinic.models import ServiceType
from service.domain.errors import Conflict, NotFound
from service.domain.patients.models import Patient
from service.domain.records import Page, paginate
from service.domain.reminders import deferred, planning
from service.domain.reminders.models import (
    OPEN_STATUSES,
    Reminder,
    ReminderStatus,
    dedupe_key,
)
from service.domain.waitlist.events import WaitlistOffered
from service.uow import UnitOfWork

# Planning: handlers of the booking's events, inside its transaction --------------------------


def quiet_hours(settings: Settings) -> planning.QuietHours:
    return planning.QuietHours(settings.quiet_hours_start, settings.quiet_hours_end)


def plan_new_booking(uow: UnitOfWork, event: BookingCreated, *,
                     quiet: planning.QuietHours) -> None:
    # Written without an ORM instance (``POST /bookings``): it, its service type and its
    # patient are kept on the unit of work; else they are in the session.
    created = fresh.find(uow.memo, event.booking_id)
    booking = (uow.session.get(Booking, event.booking_id) if created is None
               else created.booking)
    # A booking just created has no reminders yet: its plan is the first.
    _plan(uow, booking, version=1, now=event.occurred_at, quiet=quiet,
          confirmation=event.status is BookingStatus.BOOKED,
          parties=None if created is None else (created.service_type, created.patient))


def replan_rescheduled(uow: UnitOfWork, event: BookingRescheduled, *,
                       quiet: planning.QuietHours) -> None:
    session = _written(uow)
    booking = session.get(Booking, event.booking_id)
    _cancel_open(session, booking.id, "rescheduled")
    _plan(uow, booking, version=_current_version(session, booking.id) + 1,
          now=event.occurred_at, quiet=quiet,
          confirmation=event.status is BookingStatus.BOOKED)


def plan_confirmation(uow: UnitOfWork, event: BookingConfirmed, *,
                      quiet: planning.QuietHours) -> None:
    session = _written(uow)
    booking = session.get(Booking, event.booking_id)
    version = _current_version(session, booking.id) or 1
    exists = session.scalar(select(Reminder.id).where(
        Reminder.booking_id == booking.id, Reminder.plan_version == version,
        Reminder.kind == planning.CONFIRMATION))
    if exists is None:
        _plan(uow, booking, version=version, now=event.occurred_at, quiet=quiet,
              only=[planning.CONFIRMATION])


def plan_waitlist_offer(uow: UnitOfWork, event: WaitlistOffered, *,
                        quiet: planning.QuietHours) -> None:
    """The offer message for a slot held for a waitlisted patient, at once (after the
    patient's quiet hours: the hold runs from then); sent like any reminder of the hold."""
    session = _written(uow)
    booking = session.get(Booking, event.booking_id)
    patient = session.get(Patient, booking.patient_id)
    version = _current_version(session, booking.id) or 1
    due = quiet.next_allowed(event.occurred_at, patient.timezone)
    session.add(Reminder(
        booking_id=booking.id, kind=planning.WAITLIST_OFFER, plan_version=version,
        dedupe_key=dedupe_key(booking.id, planning.WAITLIST_OFFER, version),
        status=ReminderStatus.PLANNED, due_at=due, next_attempt_at=due, attempts=0,
        created_at=event.occurred_at, updated_at=event.occurred_at))


def cancel_before_visit(uow: UnitOfWork, event: BookingCheckedIn) -> None:
    """Checked in: the reminders before the visit are moot (the next-day check-in stays)."""
    _cancel_open(_written(uow), event.booking_id, "checked_in",
                 keep_kinds=(planning.NEXT_DAY_CHECK_IN,))


def cancel_on_cancellation(uow: UnitOfWork, event: BookingCancelled) -> None:
    _cancel_open(_written(uow), event.booking_id, "booking_cancelled")


def cancel_on_no_show(uow: UnitOfWork, event: BookingNoShow) -> None:
    _cancel_open(_written(uow), event.booking_id, "booking_no_show")


def _current_version(session: Session, booking_id: uuid.UUID) -> int:
    return session.scalar(select(func.max(Reminder.plan_version))
                          .where(Reminder.booking_id == booking_id)) or 0


def _cancel_open(session: Session, booking_id: uuid.UUID, reason: str, *,
                 keep_kinds: tuple[str, ...] = ()) -> None:
    statement = (update(Reminder)
                 .where(Reminder.booking_id == booking_id, Reminder.status.in_(OPEN_STATUSES))
                 .values(status=ReminderStatus.CANCELLED, reason=reason, lease_until=None,
                         claim_token=None)
                 .execution_options(synchronize_session=False))
    if keep_kinds:
        statement = statement.where(Reminder.kind.not_in(keep_kinds))
    session.execute(statement)


_PLANNED_ROWS = insert(Reminder.__table__)


def _written(uow: UnitOfWork) -> Session:
    """The session, once the reminders planned earlier in this transaction and kept for the
    change feed's statement (``deferred.py``) are written: what follows reads them."""
    rows = deferred.take(uow.memo)
    if rows:
        uow.session.connection().execute(_PLANNED_ROWS, rows)
    return uow.session


def _plan(uow: UnitOfWork, booking: Booking, *, version: int, now: datetime,
          quiet: planning.QuietHours, confirmation: bool = True,
          only: list[str] | None = None, parties: tuple[Any, Any] | None = None) -> None:
    """Plan the booking's reminders (``parties``: its service type and patient, when the
    caller has them; else read from the session)."""
    if parties is None:
        session = uow.session
        service_type = session.get(ServiceType, booking.service_type_id)
        patient = session.get(Patient, booking.patient_id)
    else:
        service_type, patient = parties
    assert service_type is not None and patient is not None
    plan = planning.ReminderPlan.from_json(service_type.reminder_plan)
    if not confirmation:
        plan = planning.ReminderPlan(False, plan.hours_before, plan.next_day_check_in)
    rows = [{"id": uuid.uuid4(), "booking_id": booking.id, "kind": planned.kind,
             "plan_version": version,
             "dedupe_key": dedupe_key(booking.id, planned.kind, version),
             "status": ReminderStatus.SKIPPED if planned.skip_reason else ReminderStatus.PLANNED,
             "reason": planned.skip_reason, "due_at": planned.due_at,
             "next_attempt_at": planned.due_at, "attempts": 0, "created_at": now,
             "updated_at": now}
            for planned in planning.plan_reminders(
                plan, starts_at=booking.starts_at, ends_at=booking.ends_at,
                patient_zone=patient.timezone, now=now, quiet=quiet, kinds=only)]
    if not rows:
        return
    if uow.dialect == "postgresql":
        # Written by the change feed's statement, right before the commit (deferred.py).
        deferred.defer(uow.memo, rows)
        return
    # The booking is flushed (its event was recorded after its flush): the rows go in at
    # once, in one INSERT, without the ORM's unit of work (nothing reads them back as
    # objects in this transaction).
    uow.connection().execute(_PLANNED_ROWS, rows)


# Reads and the retry ---------------------------------------------------------------------


def list_booking_reminders(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                           page: int, page_size: int) -> Page[Reminder]:
    """A booking's reminders, for whoever may see the booking (others: booking_not_found)."""
    with uow:
        booking = booking_policy.load(uow.session, actor, booking_id)
        query = (select(Reminder).where(Reminder.booking_id == booking.id)
                 .order_by(Reminder.plan_version, Reminder.due_at, Reminder.kind))
        return paginate(uow.session, query, page=page, page_size=page_size)


def list_reminders(uow: UnitOfWork, *, page: int, page_size: int,
                   status: list[ReminderStatus] | None = None,
                   due_before: datetime | None = None,
                   booking_id: uuid.UUID | None = None) -> Page[Reminder]:
    query = select(Reminder).order_by(Reminder.due_at, Reminder.id)
    if status:
        query = query.where(Reminder.status.in_(status))
    if due_before is not None:
        query = query.where(Reminder.due_at < due_before)
    if booking_id is not None:
        query = query.where(Reminder.booking_id == booking_id)
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)


RETRYABLE = (ReminderStatus.FAILED, ReminderStatus.SKIPPED)


def retry_reminder(uow: UnitOfWork, reminder_id: uuid.UUID, *, now: datetime) -> Reminder:
    """Queue a failed or skipped reminder again, at once, with a fresh attempt count.

    The dispatcher re-checks it like any other (a visit that passed is skipped again). Sent
    reminders are never sent again; cancelled ones belong to a plan that no longer holds.
    """

    def work() -> Reminder:
        reminder = uow.session.scalar(
            select(Reminder).where(Reminder.id == reminder_id).with_for_update())
        if reminder is None:
            raise NotFound("No reminder with this id.", code="reminder_not_found")
        if reminder.status not in RETRYABLE:
            raise Conflict(f"A {reminder.status.value} reminder cannot be retried; only "
                           "failed or skipped ones.", code="reminder_not_retryable",
                           reminder_status=reminder.status.value)
        reminder.status = ReminderStatus.PLANNED
        reminder.attempts = 0
        reminder.reason = None
        reminder.next_attempt_at = now
        reminder.lease_until = None
        reminder.claim_token = None
        return reminder

    return uow.run(work)


# Replies to the SMS gateway --------------------------------------------------------------

OPT_OUT_WORDS = frozenset({"stop", "stopall", "quit", "end", "revoke", "opt out", "optout",
                           "cancel", "unsubscribe"})
OPT_IN_WORDS = frozenset({"start", "unstop"})


def keyword(body: str) -> str | None:
    """"opt_out", "opt_in" or None for an SMS body (trimmed, case-insensitive)."""
    word = re.sub(r"[\s\-_]+", " ", body.strip().lower()).strip(" .!")
    if word in OPT_OUT_WORDS:
        return "opt_out"
    if word in OPT_IN_WORDS:
        return "opt_in"
    return None


def receive_sms(uow: UnitOfWork, *, sender: str, body: str, now: datetime) -> str:
    """Apply a STOP-type reply (opt out at once) or START (opt in again) from ``sender``.

    Returns the action taken by keyword ("opt_out", "opt_in" or "none"), the same whether
    or not a patient has this number, so the answer never tells who is a patient.
    """
    action = keyword(body)
    if action is None:
        return "none"
    phone = sender.strip()

    def work() -> None:
        patients = uow.session.scalars(
            select(Patient).where(Patient.phone == phone).with_for_update()).all()
        for patient in patients:
            if action == "opt_out" and patient.sms_opted_out_at is None:
                patient.sms_opted_out_at = now
            elif action == "opt_in" and patient.sms_opted_out_at is not None:
                # START reverses an opt-out (a STOP, or consent withdrawn); a number that
                # never opted out gains no consent by it.
                patient.sms_opted_out_at = None
                patient.sms_consent = True

    uow.run(work)
    return action
