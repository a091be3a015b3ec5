"""Sending the reminder outbox: claim due rows with a lease, re-check, send, record.

One ``run_once`` drains what is due, batch after batch:

1. Claim (one short transaction): the oldest open rows whose ``next_attempt_at`` has come
   (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so several dispatchers split the work; SQLite:
   the write transaction is ``BEGIN IMMEDIATE``) become ``sending`` under this batch's
   claim token, with ``attempts + 1`` and a lease: ``next_attempt_at = lease_until``, so a
   row whose sender died is claimed again once the lease ends.
2. Send (transactions of at most ~half a second of work each): lock the batch's bookings
   and patients ``FOR SHARE`` (a cancellation, a move or an opt-out waits for the sends in
   flight, and is seen by the next ones), lock the claimed rows still carrying our token
   (``SKIP LOCKED``), re-check each reminder just before sending (booking still active and
   upcoming, consent, contact, quiet hours in the patient's zone), send it, record the
   outcome, commit. A row whose token changed (it was claimed again) is left alone.

A crash between sending and the commit leaves the row ``sending``: it is sent again after
the lease, with the same dedupe key, which the channel uses to drop the duplicate. Failures
are retried with exponential backoff up to ``REMINDER_MAX_ATTEMPTS``, then ``failed``.

Logs carry ids, kinds, channels and outcomes; never names, addresses or message text.

``python -m service.domain.reminders.dispatch`` runs a bare polling loop (used by the
multi-process tests); production runs the same ``Dispatcher`` from ``service.scheduler``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.config import Settings
from service.db import Database, DatabaseTimeouts, utcnow
from service.domain.bookings.models import Booking
from service.domain.clinic.models import ServiceType
from service.domain.patients.models import Patient
from service.domain.providers.licensing import Modality
from service.domain.reminders import content, planning
from service.domain.reminders.channels import Channels, DeliveryError, Outgoing
from service.domain.reminders.models import (
    OPEN_STATUSES,
    Reminder,
    ReminderChannel,
    ReminderStatus,
)
from service.domain.retries import backoff
from service.uow import UnitOfWork

log = logging.getLogger(__name__)

TRANSACTION_BUDGET_SECONDS = 0.5
"""Sends per send transaction stop after this long, so the booking locks stay short."""


@dataclass
class DispatchReport:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    cancelled: int = 0
    deferred: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in vars(self).items() if v)


@dataclass
class Claim:
    token: uuid.UUID
    ids: list[uuid.UUID] = field(default_factory=list)
    booking_of: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)


class Dispatcher:
    def __init__(self, database: Database, settings: Settings, *,
                 channels: Channels | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.database = database
        self.settings = settings
        self.channels = channels or Channels(settings)
        self.clock = clock
        self.quiet = planning.QuietHours(settings.quiet_hours_start, settings.quiet_hours_end)
        self._stopping = False  # a plain flag: safe to set from a signal handler

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self.database.write_sessions, dialect=self.database.dialect)

    def request_stop(self) -> None:
        """Finish the send in flight, give the rest of the batch back, return."""
        self._stopping = True

    # The job ----------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> DispatchReport:
        """Send everything due (``now``: a fixed clock, for tests)."""
        report = DispatchReport()
        batch = max(1, self.settings.reminder_batch_size)
        try:
            while not self._stopping:
                claim = self.claim(now or self.clock(), limit=batch)
                if not claim.ids:
                    break
                report.claimed += len(claim.ids)
                self._send_claimed(claim, now, report)
                if len(claim.ids) < batch:
                    break
        finally:
            self.channels.close()
        if report.claimed:
            log.info("reminders dispatched: %s", report)
        return report

    def claim(self, at: datetime, *, limit: int) -> Claim:
        claim = Claim(token=uuid.uuid4())
        lease_until = at + timedelta(seconds=self.settings.reminder_lease_seconds)
        with self._uow() as uow:
            session = uow.session
            ids = list(session.scalars(
                select(Reminder.id)
                .where(Reminder.status.in_(OPEN_STATUSES), Reminder.next_attempt_at <= at)
                .order_by(Reminder.next_attempt_at, Reminder.id)
                .limit(limit)
                .with_for_update(skip_locked=True)))
            if not ids:
                return claim
            rows = session.execute(
                update(Reminder)
                .where(Reminder.id.in_(ids))
                .values(status=ReminderStatus.SENDING, claim_token=claim.token,
                        lease_until=lease_until, next_attempt_at=lease_until,
                        attempts=Reminder.attempts + 1, updated_at=at)
                .returning(Reminder.id, Reminder.booking_id)
                .execution_options(synchronize_session=False)).all()
            uow.commit()
        claim.booking_of = {row.id: row.booking_id for row in rows}
        claim.ids = [i for i in ids if i in claim.booking_of]
        return claim

    def _send_claimed(self, claim: Claim, now: datetime | None,
                      report: DispatchReport) -> None:
        pending = list(claim.ids)
        down: set[str] = set()  # channels that failed in this batch: do not hammer them
        while pending:
            if self._stopping:
                report.released += self._release(claim.token, pending)
                return
            done: set[uuid.UUID] = set()
            with self._uow() as uow:
                session = uow.session
                booking_ids = sorted({claim.booking_of[i] for i in pending})
                bookings = {b.id: b for b in session.scalars(
                    select(Booking).where(Booking.id.in_(booking_ids))
                    .order_by(Booking.id).with_for_update(read=True))}
                patients = {p.id: p for p in session.scalars(
                    select(Patient)
                    .where(Patient.id.in_(sorted({b.patient_id for b in bookings.values()})))
                    .order_by(Patient.id).with_for_update(read=True))}
                service_types = {t.id: t for t in session.scalars(
                    select(ServiceType).where(ServiceType.id.in_(
                        {b.service_type_id for b in bookings.values()})))}
                rows = {r.id: r for r in session.scalars(
                    select(Reminder)
                    .where(Reminder.id.in_(pending), Reminder.claim_token == claim.token,
                           Reminder.status == ReminderStatus.SENDING)
                    .with_for_update(skip_locked=True))}
                done |= set(pending) - set(rows)  # cancelled or claimed again meanwhile
                latest = self._latest_due_before_reminders(session, booking_ids,
                                                           now or self.clock())
                started = time.monotonic()
                for reminder_id in pending:
                    reminder = rows.get(reminder_id)
                    if reminder is None:
                        continue
                    booking = bookings[reminder.booking_id]
                    if (planning.is_before_kind(reminder.kind) and reminder.due_at
                            < latest.get((reminder.booking_id, reminder.plan_version),
                                         reminder.due_at)):
                        # After downtime, only the latest due "before" reminder goes out.
                        self._finish(reminder, ReminderStatus.SKIPPED, "superseded", report)
                    else:
                        self._handle(reminder, booking, patients[booking.patient_id],
                                     service_types[booking.service_type_id], now, report,
                                     down)
                    done.add(reminder_id)
                    if (self._stopping
                            or time.monotonic() - started > TRANSACTION_BUDGET_SECONDS):
                        break
                uow.commit()
            pending = [i for i in pending if i not in done]

    @staticmethod
    def _latest_due_before_reminders(session: Session, booking_ids: list[uuid.UUID],
                                     at: datetime) -> dict[tuple[uuid.UUID, int], datetime]:
        """(booking, plan version) -> due time of its latest open "before" reminder due."""
        rows = session.execute(
            select(Reminder.booking_id, Reminder.plan_version, func.max(Reminder.due_at))
            .where(Reminder.booking_id.in_(booking_ids),
                   Reminder.status.in_(OPEN_STATUSES),
                   Reminder.kind.startswith(planning.BEFORE_PREFIX, autoescape=True),
                   Reminder.due_at <= at)
            .group_by(Reminder.booking_id, Reminder.plan_version))
        return {(booking_id, version): due for booking_id, version, due in rows}

    def _release(self, token: uuid.UUID, ids: list[uuid.UUID]) -> int:
        """Give claimed, unsent rows back at once (graceful shutdown)."""
        with self._uow() as uow:
            result = uow.session.execute(
                update(Reminder)
                .where(Reminder.id.in_(ids), Reminder.claim_token == token,
                       Reminder.status == ReminderStatus.SENDING)
                .values(status=ReminderStatus.PLANNED, attempts=Reminder.attempts - 1,
                        lease_until=None, claim_token=None, next_attempt_at=self.clock())
                .execution_options(synchronize_session=False))
            uow.commit()
            return result.rowcount or 0

    # One reminder ----------------------------------------------------------------------

    def _handle(self, reminder: Reminder, booking: Booking, patient: Patient,
                service_type: ServiceType, now: datetime | None, report: DispatchReport,
                down: set[str]) -> None:
        at = now or self.clock()
        if reminder.attempts > self.settings.reminder_max_attempts:
            self._finish(reminder, ReminderStatus.FAILED, "attempts_exhausted", report)
            return
        decision = planning.decide(
            reminder.kind, booking_status=booking.status.value, starts_at=booking.starts_at,
            due_at=reminder.due_at, now=at, patient_zone=patient.timezone, quiet=self.quiet,
            contact=planning.Contact(email=patient.email, phone=patient.phone,
                                     sms_consent=patient.sms_consent,
                                     email_consent=patient.email_consent,
                                     sms_opted_out=patient.sms_opted_out_at is not None))
        if decision.action == "cancel":
            self._finish(reminder, ReminderStatus.CANCELLED, decision.reason, report)
            return
        if decision.action == "skip":
            self._finish(reminder, ReminderStatus.SKIPPED, decision.reason, report)
            return
        if decision.action == "defer":
            assert decision.until is not None
            self._again(reminder, decision.until, decision.reason, counted=False)
            reminder.due_at = decision.until
            report.deferred += 1
            log.info("reminder %s deferred by quiet hours", reminder.id)
            return
        channel = decision.channel or "email"
        if channel in down:
            self._again(reminder, at + backoff(
                1, self.settings.reminder_retry_base_seconds), "channel_unavailable",
                counted=False)
            report.retried += 1
            return
        try:
            message = content.render(reminder.kind, content.MessageFacts(
                first_name=patient.first_name, starts_at=booking.starts_at,
                zone=patient.timezone, clinic_name=self.settings.clinic_name,
                clinic_phone=self.settings.clinic_phone,
                in_person=service_type.modality == Modality.IN_PERSON), channel=channel)
        except content.ContentRefused as refused:
            log.error("reminder %s refused by the content check (%s)", reminder.id,
                      refused.reason)
            self._finish(reminder, ReminderStatus.FAILED, "content_refused", report)
            return
        outgoing = Outgoing(reminder_id=str(reminder.id), channel=channel,
                            to=decision.address or "", subject=message.subject,
                            text=message.sms if channel == "sms" else message.email,
                            dedupe_key=reminder.dedupe_key)
        sender = self.channels.for_message(channel)
        try:
            sender.send(outgoing)
        except DeliveryError as error:
            self._failed_attempt(reminder, error, at, report)
            if not error.permanent:
                down.add(channel)
            return
        except Exception as unexpected:  # noqa: BLE001 - one bad send must not undo the batch
            log.error("reminder %s: unexpected %s from the %s channel", reminder.id,
                      type(unexpected).__name__, sender.name)
            self._failed_attempt(reminder, DeliveryError(
                f"{sender.name}_{type(unexpected).__name__}", permanent=False), at, report)
            sender.close()
            return
        reminder.channel = ReminderChannel(sender.name)
        reminder.sent_at = now or self.clock()
        self._finish(reminder, ReminderStatus.SENT, None, report)

    def _failed_attempt(self, reminder: Reminder, error: DeliveryError, at: datetime,
                        report: DispatchReport) -> None:
        if error.permanent or reminder.attempts >= self.settings.reminder_max_attempts:
            self._finish(reminder, ReminderStatus.FAILED, error.reason, report)
            return
        delay = backoff(reminder.attempts, self.settings.reminder_retry_base_seconds)
        self._again(reminder, at + delay, error.reason, counted=True)
        report.retried += 1
        log.warning("reminder %s attempt %d failed (%s); retry in %ds", reminder.id,
                    reminder.attempts, error.reason, delay.total_seconds())

    def _again(self, reminder: Reminder, when: datetime, reason: str | None, *,
               counted: bool) -> None:
        reminder.status = ReminderStatus.PLANNED
        reminder.next_attempt_at = when
        reminder.claim_token = None
        reminder.lease_until = None
        reminder.reason = reason
        if not counted:
            reminder.attempts = max(0, reminder.attempts - 1)

    def _finish(self, reminder: Reminder, status: ReminderStatus, reason: str | None,
                report: DispatchReport) -> None:
        reminder.status = status
        reminder.reason = reason
        reminder.claim_token = None
        reminder.lease_until = None
        setattr(report, status.value, getattr(report, status.value) + 1)
        if status is ReminderStatus.SENT:  # the common case: in the batch summary (INFO)
            log.debug("reminder %s (%s) sent via %s", reminder.id, reminder.kind,
                      reminder.channel)
        else:
            log.info("reminder %s (%s) %s (%s)", reminder.id, reminder.kind, status.value,
                     reason)


# A bare polling loop (the multi-process tests run it) -----------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send due reminders in a polling loop.")
    parser.add_argument("--poll", type=float, default=None,
                        help="seconds between polls (default REMINDER_POLL_SECONDS)")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(process)d %(name)s %(message)s")
    content.check_templates(clinic_name=settings.clinic_name,
                            clinic_phone=settings.clinic_phone)
    import service.models  # noqa: F401 - every mapper, so the metadata is complete

    database = Database.connect(settings.database_url,
                                timeouts=DatabaseTimeouts.from_settings(settings))
    dispatcher = Dispatcher(database, settings)
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        dispatcher.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    poll = settings.reminder_poll_seconds if args.poll is None else args.poll
    log.info("dispatcher polling every %gs (%s channel)", poll, settings.reminder_channel)
    try:
        while not stopping:
            dispatcher.run_once()
            if args.once:
                break
            deadline = time.monotonic() + poll
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.05, poll))
    finally:
        database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
