"""The on-call rota and the outbox of urgent alert notices.

``OnCallContact``: who is told of an urgent clinical alert, in ``tier`` order (tier 1 at
once, each next tier when nobody acknowledged the alert within the escalation time), with
the channel addresses the notice goes to (email, SMS, or both).

``AlertNotice``: one message to one contact on one channel for one alert (an outbox row,
sent by the scheduler like the reminders). All the notices of an alert are written when it
is raised, in its transaction: tier 1 due at once, tier n due (n - 1) escalation periods
later; acknowledging the alert cancels those still open, and a notice is checked against the
alert again right before it is sent. The dedupe key ``alert.<alert>.t<tier>.<contact>.
<channel>`` is unique and goes to the channel, so a resend after a crash can be dropped.

Lifecycle: planned -> sending (claimed with a lease) -> sent | planned (retry later) |
failed ; planned or sending -> cancelled (acknowledged) | skipped (contact gone).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, enum_column, utcnow
from service.domain.records import Record

MAX_TIER = 9


class OnCallContact(Record, Base):
    __tablename__ = "on_call_contacts"
    __table_args__ = (
        CheckConstraint(f"tier BETWEEN 1 AND {MAX_TIER}", name="tier_range"),
        CheckConstraint("email IS NOT NULL OR phone IS NOT NULL", name="some_address"),
        Index("ix_on_call_contacts_active_tier", "active", "tier"),
    )

    name: Mapped[str] = mapped_column(String(120))  # as the rota shows it ("Dr. Whitfield")
    tier: Mapped[int]
    provider_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("providers.id"))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(16))  # E.164
    active: Mapped[bool] = mapped_column(default=True)


class NoticeStatus(enum.StrEnum):
    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    FAILED = "failed"


OPEN_NOTICE_STATUSES = (NoticeStatus.PLANNED, NoticeStatus.SENDING)


class NoticeChannel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"


def notice_key(alert_id: uuid.UUID, tier: int, contact_id: uuid.UUID, channel: str) -> str:
    return f"alert.{alert_id}.t{tier}.{contact_id}.{channel}"


class AlertNotice(Base):
    __tablename__ = "alert_notices"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_alert_notices_status_next_attempt", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    alert_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("on_call_contacts.id"))
    tier: Mapped[int]
    escalated: Mapped[bool] = mapped_column(default=False)  # a tier after the first
    channel: Mapped[NoticeChannel] = mapped_column(enum_column(NoticeChannel,
                                                               "notice_channel"))
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    status: Mapped[NoticeStatus] = mapped_column(enum_column(NoticeStatus, "notice_status"))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # A machine code (never message text or an address): why skipped, failed or cancelled.
    reason: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
