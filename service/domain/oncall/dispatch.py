"""The alert notice outbox: what ``service.domain.outbox.OutboxRunner`` needs to tell the
on-call rota of an urgent alert (the scheduler's ``alert-notices`` job).

- Due: open notices (planned, or sending with a lost lease) whose ``next_attempt_at`` has
  come: tier 1 at once, each next tier one escalation period later (``models.py``).
- Guarded: the alert of each notice is held ``FOR SHARE`` from before its last check until
  its outcome is recorded, so an acknowledgement waits for the sends in flight and is seen
  by the next ones: a notice of an acknowledged alert is cancelled, never sent.
- No quiet hours and no consent rules: the contacts are the clinic's own clinicians, on
  call. A contact deactivated (or its address removed) since the alert was raised is
  skipped.
- Outcomes: sent; failures retried with exponential backoff (``REMINDER_RETRY_BASE_SECONDS``)
  up to ``REMINDER_MAX_ATTEMPTS``, then failed; a refusal for good fails at once.

The message is the same for every alert and names nobody: "Urgent clinical alert: open the
console." (``NOTICE_TEXT``), never a patient, a reading, a score or a diagnosis. Logs carry
ids, tiers, channels and outcomes only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from service.config import Settings
from service.domain.consultations.models import Alert
from service.domain.oncall.models import (
    OPEN_NOTICE_STATUSES,
    AlertNotice,
    NoticeChannel,
    NoticeStatus,
    OnCallContact,
)
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
from service.domain.reminders import content
from service.domain.reminders.channels import EMAIL, SMS, Outgoing

log = logging.getLogger(__name__)

TABLE = Table(model=AlertNotice, open=OPEN_NOTICE_STATUSES, sending=NoticeStatus.SENDING,
              waiting=NoticeStatus.PLANNED)

NOTICE_SUBJECT = "Urgent clinical alert"
NOTICE_TEXT = ("Urgent clinical alert at {clinic}: open the console to review and "
               "acknowledge it.")
ESCALATED_TEXT = ("Urgent clinical alert at {clinic}, not yet acknowledged: open the console "
                  "to review and acknowledge it.")


def notice_text(*, clinic_name: str, escalated: bool) -> str:
    """The whole message (email body and SMS): no patient, no value, no clinical word."""
    text = (ESCALATED_TEXT if escalated else NOTICE_TEXT).format(clinic=clinic_name)
    content.check(text, "alert notice")
    return text


@dataclass(frozen=True)
class ClaimedNotice:
    id: uuid.UUID
    token: uuid.UUID
    attempt: int
    alert_id: uuid.UUID


class AlertNoticeOutbox:
    name = "alert-notices"
    title = "urgent alert notices to the on-call rota"
    summary = "alert notices dispatched"
    table = TABLE
    guarded = True

    def __init__(self, settings: Settings, channels: Mapping[str, Adapter]) -> None:
        """``channels``: the reminder channels' adapters for "email" and "sms"."""
        missing = {EMAIL, SMS} - set(channels)
        if missing:
            raise ValueError(f"no adapter for {', '.join(sorted(missing))}")
        self.settings = settings
        self.channels = dict(channels)
        self.poll_seconds = settings.alert_poll_seconds
        self.lease_seconds = settings.reminder_lease_seconds
        self.batch_size = settings.reminder_batch_size
        self.send_timeout_seconds = settings.channel_timeout_seconds
        self.retry_base_seconds = settings.reminder_retry_base_seconds

    def load(self, session: Session, due: list[Due], *, token: uuid.UUID, at: datetime,
             report: Report) -> list[ClaimedNotice]:
        alerts = dict(session.execute(select(AlertNotice.id, AlertNotice.alert_id)
                                      .where(AlertNotice.id.in_([d.id for d in due]))).all())
        return [ClaimedNotice(id=d.id, token=token, attempt=d.attempt, alert_id=alerts[d.id])
                for d in due if d.id in alerts]

    def guard(self, session: Session, items: list[ClaimedNotice]) -> dict[uuid.UUID, Row[Any]]:
        """Lock the alerts (``FOR SHARE``: an acknowledgement waits), then read the notices
        still ours with their alert and contact."""
        alert_ids = sorted({item.alert_id for item in items})
        session.execute(select(Alert.id).where(Alert.id.in_(alert_ids)).order_by(Alert.id)
                        .with_for_update(read=True)).all()
        rows = session.execute(
            select(AlertNotice.id, AlertNotice.channel, AlertNotice.escalated,
                   AlertNotice.attempts, AlertNotice.dedupe_key, Alert.acknowledged_at,
                   OnCallContact.active, OnCallContact.email, OnCallContact.phone)
            .join(Alert, Alert.id == AlertNotice.alert_id)
            .join(OnCallContact, OnCallContact.id == AlertNotice.contact_id)
            .where(AlertNotice.id.in_([item.id for item in items]),
                   AlertNotice.claim_token == items[0].token,
                   AlertNotice.status == NoticeStatus.SENDING))
        return {row.id: row for row in rows}

    def prepare(self, item: ClaimedNotice, guarded: dict[uuid.UUID, Row[Any]], *,
                at: datetime) -> Send | Done | None:
        row = guarded.get(item.id)
        if row is None:  # cancelled or claimed again meanwhile
            return None
        if row.acknowledged_at is not None:
            return Done(NoticeStatus.CANCELLED.value, "acknowledged", row=row)
        if row.attempts > self.settings.reminder_max_attempts:
            return Done(NoticeStatus.FAILED.value, "attempts_exhausted", row=row)
        address = row.email if row.channel is NoticeChannel.EMAIL else row.phone
        if not row.active or not address:
            return Done(NoticeStatus.SKIPPED.value, "contact_unavailable", row=row)
        try:
            text = notice_text(clinic_name=self.settings.clinic_name, escalated=row.escalated)
        except content.ContentRefused:
            log.error("alert notice %s refused by the content check", item.id)
            return Done(NoticeStatus.FAILED.value, "content_refused", row=row)
        channel = row.channel.value
        outgoing = Outgoing(reminder_id=str(item.id), channel=channel, to=address,
                            subject=NOTICE_SUBJECT, text=text, dedupe_key=row.dedupe_key)
        return Send(outgoing, adapter=self.channels[channel], circuit=channel, row=row)

    def record(self, item: ClaimedNotice, result: Result, *, row: Row[Any],
               at: datetime) -> RowUpdate:
        if isinstance(result, Done):
            log.info("alert notice %s %s (%s)", item.id, result.outcome, result.reason)
            return RowUpdate(result.outcome, {"status": NoticeStatus(result.outcome),
                                              "reason": result.reason, "updated_at": at})
        if isinstance(result, Postponed):
            return RowUpdate("retried", {"status": NoticeStatus.PLANNED,
                                         "attempts": row.attempts - 1,
                                         "next_attempt_at": result.until,
                                         "reason": result.reason, "updated_at": at})
        if result.accepted:
            return RowUpdate("sent", {"status": NoticeStatus.SENT, "sent_at": at,
                                      "reason": None, "updated_at": at})
        assert result.error is not None and result.retry_at is not None
        if result.permanent or row.attempts >= self.settings.reminder_max_attempts:
            log.warning("alert notice %s failed (%s)", item.id, result.error)
            return RowUpdate("failed", {"status": NoticeStatus.FAILED, "reason": result.error,
                                        "updated_at": at})
        log.warning("alert notice %s attempt %d failed (%s); retry at %s", item.id,
                    row.attempts, result.error, result.retry_at.isoformat())
        return RowUpdate("retried", {"status": NoticeStatus.PLANNED,
                                     "next_attempt_at": result.retry_at,
                                     "reason": result.error, "updated_at": at})
