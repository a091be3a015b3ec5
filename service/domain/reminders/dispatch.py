"""The reminder outbox: what ``service.domain.outbox.OutboxRunner`` needs to send reminders.

- Due: open rows (planned, or sending with a lost lease) whose ``next_attempt_at`` has come.
- Guarded: the bookings and patients of the reminders being sent are held ``FOR SHARE``
  from before each reminder's last check until its outcome is recorded, so a cancellation,
  a move or an opt-out waits for the sends in flight and is seen by the next ones. The
  check: booking still active and upcoming, consent and contact, quiet hours in the
  patient's zone. After downtime, only the latest due "before" reminder of a booking goes
  out (the others are skipped as superseded).
- Outcomes: sent; failures retried with exponential backoff up to ``REMINDER_MAX_ATTEMPTS``,
  then ``failed``; a refusal for good (an SMTP 5xx, a gateway 4xx) fails at once.

A crash between a send and its commit leaves the row ``sending``: it is sent again after the
lease with the same dedupe key, which the channel uses to drop the duplicate. Logs carry ids,
kinds, channels and outcomes; never names, addresses or message text.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, ColumnElement, Row, Select, Uuid, any_, bindparam, func, select
from sqlalchemy.orm import Session

from service.config import Settings
from service.domain.bookings import instructions
from service.domain.bookings.models import Booking
from service.domain.clinic.models import ServiceType
from service.domain.outbox import (
    Adapter,
    Done,
    Due,
    Postponed,
    Report,
    Result,
    RowUpdate,
    Send,
    Table,
)
from service.domain.patients.models import Patient
from service.domain.providers.licensing import Modality
from service.domain.reminders import content, planning
from service.domain.reminders.channels import EMAIL, SMS, Outgoing
from service.domain.reminders.models import (
    OPEN_STATUSES,
    Reminder,
    ReminderChannel,
    ReminderStatus,
)

log = logging.getLogger(__name__)

TABLE = Table(model=Reminder, open=OPEN_STATUSES, sending=ReminderStatus.SENDING,
              waiting=ReminderStatus.PLANNED)


@dataclass(frozen=True)
class ClaimedReminder:
    id: uuid.UUID
    token: uuid.UUID
    attempt: int
    booking_id: uuid.UUID
    in_person: bool
    superseded: bool  # a later "before" reminder of the booking is due too
    patient_id: uuid.UUID | None = None  # the booking's patient when claimed (guard_keys)
    # The whole stay and how to prepare, from the service type (PHI-free wordings only).
    arrive_early_minutes: int = 0
    with_driver: bool = False
    advice: tuple[str, ...] = ()
    after_care: tuple[str, ...] = ()


class ReminderOutbox:
    name = "reminders"
    title = "reminder outbox"
    summary = "reminders dispatched"
    table = TABLE
    guarded = True

    def __init__(self, settings: Settings, channels: Mapping[str, Adapter]) -> None:
        """``channels``: the adapter for "email" and for "sms" (the same log adapter for
        both when ``REMINDER_CHANNEL=log``)."""
        missing = {EMAIL, SMS} - set(channels)
        if missing:
            raise ValueError(f"no adapter for {', '.join(sorted(missing))}")
        self.settings = settings
        self.channels = dict(channels)
        self.quiet = planning.QuietHours(settings.quiet_hours_start, settings.quiet_hours_end)
        self.poll_seconds = settings.reminder_poll_seconds
        self.lease_seconds = settings.reminder_lease_seconds
        self.batch_size = settings.reminder_batch_size
        self.send_timeout_seconds = settings.channel_timeout_seconds
        self.retry_base_seconds = settings.reminder_retry_base_seconds
        # Sends in flight at once per scheduler (PostgreSQL; the outbox runner's pool).
        self.send_concurrency = settings.reminder_send_concurrency

    # Claim -------------------------------------------------------------------------------

    def load(self, session: Session, due: list[Due], *, token: uuid.UUID, at: datetime,
             report: Report) -> list[ClaimedReminder]:
        rows = {row.id: row for row in session.execute(
            _statements(_dialect(session)).claimed, {"ids": [d.id for d in due]})}
        latest = self._latest_due_before_reminders(
            session, sorted({row.booking_id for row in rows.values()}), at)
        claimed = []
        for d in due:
            row = rows.get(d.id)
            if row is None:
                continue
            superseded = (planning.is_before_kind(row.kind) and row.due_at
                          < latest.get((row.booking_id, row.plan_version), row.due_at))
            claimed.append(ClaimedReminder(
                id=d.id, token=token, attempt=d.attempt, booking_id=row.booking_id,
                in_person=row.modality == Modality.IN_PERSON, superseded=superseded,
                patient_id=row.patient_id,
                arrive_early_minutes=row.arrive_early_minutes or 0,
                with_driver=row.modality == Modality.IN_PERSON and row.needs_clearance,
                advice=tuple(instructions.reminder_wordings(row.preparation)),
                after_care=tuple(instructions.reminder_wordings(row.after_care))))
        return claimed

    @staticmethod
    def _latest_due_before_reminders(session: Session, booking_ids: list[uuid.UUID],
                                     at: datetime) -> dict[tuple[uuid.UUID, int], datetime]:
        """(booking, plan version) -> due time of its latest open "before" reminder due."""
        rows = session.execute(_statements(_dialect(session)).latest_before,
                               {"ids": booking_ids, "at": at})
        return {(booking_id, version): due for booking_id, version, due in rows}

    # Sending -------------------------------------------------------------------------

    @staticmethod
    def guard_keys(item: ClaimedReminder) -> tuple[Hashable, ...]:
        """The rows ``guard`` locks for this reminder: two guards open at once (pooled
        sends) never share one, so a cancellation or an opt-out waits for one guard."""
        return ("booking", item.booking_id), ("patient", item.patient_id)

    def guard(self, session: Session,
              items: list[ClaimedReminder]) -> dict[uuid.UUID, _Guarded]:
        """Lock the bookings, then the patients, of these reminders (``FOR SHARE``, the order
        a cancellation takes them in), then read the reminders still ours: a cancellation, a
        move or an opt-out either committed before (and is seen here) or waits."""
        statements = _statements(_dialect(session))
        booking_ids = sorted({item.booking_id for item in items})
        patient_ids = sorted(session.scalars(statements.lock_bookings, {"ids": booking_ids}))
        patients = {row.id: row for row in session.execute(statements.lock_patients,
                                                           {"ids": patient_ids})}
        rows = session.execute(statements.still_ours, {"ids": [item.id for item in items],
                                                       "token": items[0].token})
        return {row.id: _Guarded(row, patients[row.patient_id]) for row in rows}

    def prepare(self, item: ClaimedReminder, guarded: dict[uuid.UUID, _Guarded], *,
                at: datetime) -> Send | Done | None:
        found = guarded.get(item.id)
        if found is None:  # cancelled or claimed again meanwhile
            return None
        row, patient = found
        if item.superseded:
            return Done(ReminderStatus.SKIPPED.value, "superseded", row=row)
        if row.attempts > self.settings.reminder_max_attempts:
            return Done(ReminderStatus.FAILED.value, "attempts_exhausted", row=row)
        decision = planning.decide(
            row.kind, booking_status=row.status.value, starts_at=row.starts_at,
            due_at=row.due_at, now=at, patient_zone=patient.timezone, quiet=self.quiet,
            contact=planning.Contact(email=patient.email, phone=patient.phone,
                                     sms_consent=patient.sms_consent,
                                     email_consent=patient.email_consent,
                                     sms_opted_out=patient.sms_opted_out_at is not None))
        if decision.action == "cancel":
            return Done(ReminderStatus.CANCELLED.value, decision.reason, row=row)
        if decision.action == "skip":
            return Done(ReminderStatus.SKIPPED.value, decision.reason, row=row)
        if decision.action == "defer":
            return Done("deferred", decision.reason, until=decision.until, row=row)
        channel = decision.channel or EMAIL
        try:
            message = content.render(row.kind, content.MessageFacts(
                first_name=patient.first_name, starts_at=row.starts_at, zone=patient.timezone,
                clinic_name=self.settings.clinic_name, clinic_phone=self.settings.clinic_phone,
                in_person=item.in_person,
                arrive_at=row.starts_at - timedelta(minutes=item.arrive_early_minutes),
                leaves_at=row.hold_ends_at if item.in_person else None,
                with_driver=item.with_driver, advice=item.advice,
                after_care=item.after_care), channel=channel)
        except content.ContentRefused as refused:
            log.error("reminder %s refused by the content check (%s)", item.id,
                      refused.reason)
            return Done(ReminderStatus.FAILED.value, "content_refused", row=row)
        outgoing = Outgoing(reminder_id=str(item.id), channel=channel,
                            to=decision.address or "", subject=message.subject,
                            text=message.sms if channel == SMS else message.email,
                            dedupe_key=row.dedupe_key)
        return Send(outgoing, adapter=self.channels[channel], circuit=channel, row=row)

    def record(self, item: ClaimedReminder, result: Result, *, row: Row[Any],
               at: datetime) -> RowUpdate:
        """``row``: the reminder as ``guard`` read it."""
        if isinstance(result, Done):
            if result.until is not None:  # deferred by quiet hours: not an attempt
                log.info("reminder %s deferred by quiet hours", item.id)
                return self._again(row, result.outcome, result.until, result.reason,
                                   counted=False, due_at=result.until)
            return self._finish(item, row.kind, ReminderStatus(result.outcome), result.reason)
        if isinstance(result, Postponed):
            return self._again(row, "retried", result.until, result.reason, counted=False)
        if result.accepted:
            return self._finish(item, row.kind, ReminderStatus.SENT, None,
                                channel=ReminderChannel(result.channel), sent_at=at)
        assert result.error is not None and result.retry_at is not None
        if result.permanent or row.attempts >= self.settings.reminder_max_attempts:
            return self._finish(item, row.kind, ReminderStatus.FAILED, result.error)
        log.warning("reminder %s attempt %d failed (%s); retry at %s", item.id, row.attempts,
                    result.error, result.retry_at.isoformat())
        return self._again(row, "retried", result.retry_at, result.error, counted=True)

    @staticmethod
    def _again(row: Row[Any], outcome: str, when: datetime, reason: str | None, *,
               counted: bool, **values: Any) -> RowUpdate:
        """Back to planned, for another attempt at ``when`` (``counted``: this one was an
        attempt; otherwise the claim's increment is undone)."""
        if not counted:
            values["attempts"] = row.attempts - 1
        return RowUpdate(outcome, dict(status=ReminderStatus.PLANNED, next_attempt_at=when,
                                       reason=reason, **values))

    @staticmethod
    def _finish(item: ClaimedReminder, kind: str, status: ReminderStatus, reason: str | None,
                **values: Any) -> RowUpdate:
        if status is ReminderStatus.SENT:  # the common case: in the run's summary (INFO)
            log.debug("reminder %s (%s) sent via %s", item.id, kind, values.get("channel"))
        else:
            log.info("reminder %s (%s) %s (%s)", item.id, kind, status.value, reason)
        return RowUpdate(status.value, dict(status=status, reason=reason, **values))


class _Guarded(NamedTuple):
    reminder: Row[Any]  # with its booking's status and start
    patient: Row[Any]


class _Statements(NamedTuple):
    """The outbox's reads, each with its ids as the parameter ``ids``."""

    claimed: Select[Any]  # what a claimed reminder needs (``load``)
    latest_before: Select[Any]  # ``_latest_due_before_reminders``, also with ``at``
    lock_bookings: Select[Any]  # ``guard``: the bookings FOR SHARE, their patients' ids
    lock_patients: Select[Any]  # ``guard``: the patients FOR SHARE
    still_ours: Select[Any]  # ``guard``: the reminders still sending, also with ``token``


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


@functools.cache
def _statements(dialect: str) -> _Statements:
    """Built once per dialect rather than at every claim and guard: SQLAlchemy keeps a
    statement's cache key on it, so a guard's three reads are neither built nor hashed
    again (about 0.3 ms of CPU each time)."""
    return _Statements(
        claimed=select(Reminder.id, Reminder.booking_id, Reminder.kind, Reminder.plan_version,
                       Reminder.due_at, Booking.patient_id, ServiceType.modality,
                       ServiceType.needs_clearance, ServiceType.arrive_early_minutes,
                       ServiceType.preparation, ServiceType.after_care)
        .join(Booking, Booking.id == Reminder.booking_id)
        .join(ServiceType, ServiceType.id == Booking.service_type_id)
        .where(_among(dialect, Reminder.id)),
        latest_before=select(Reminder.booking_id, Reminder.plan_version,
                             func.max(Reminder.due_at))
        .where(_among(dialect, Reminder.booking_id), Reminder.status.in_(OPEN_STATUSES),
               Reminder.kind.startswith(planning.BEFORE_PREFIX, autoescape=True),
               Reminder.due_at <= bindparam("at"))
        .group_by(Reminder.booking_id, Reminder.plan_version),
        lock_bookings=select(Booking.patient_id).where(_among(dialect, Booking.id))
        .order_by(Booking.id).with_for_update(read=True),
        lock_patients=select(Patient.id, Patient.first_name, Patient.timezone, Patient.email,
                             Patient.phone, Patient.sms_consent, Patient.email_consent,
                             Patient.sms_opted_out_at)
        .where(_among(dialect, Patient.id)).order_by(Patient.id).with_for_update(read=True),
        still_ours=select(Reminder.id, Reminder.kind, Reminder.due_at, Reminder.attempts,
                          Reminder.dedupe_key, Booking.status, Booking.starts_at,
                          Booking.patient_id, Booking.hold_ends_at)
        .join(Booking, Booking.id == Reminder.booking_id)
        .where(_among(dialect, Reminder.id), Reminder.claim_token == bindparam("token"),
               Reminder.status == ReminderStatus.SENDING))


def _among(dialect: str, column: Any) -> ColumnElement[bool]:
    """``column`` is one of the parameter ``ids``: on PostgreSQL one array parameter
    (``= ANY``), so the statement's text is the same for any number of ids (compiled,
    converted and prepared once); elsewhere an expanding ``IN``."""
    if dialect == "postgresql":
        return column == any_(bindparam("ids", type_=ARRAY(Uuid)))
    return column.in_(bindparam("ids", expanding=True))  # type: ignore[no-any-return]
