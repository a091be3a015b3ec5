"""Reminders: the outbox rows the scheduler process sends.

One row per (booking, kind, plan version). Rows are written in the same transaction as the
booking change that causes them (handlers of its events, ``reminders/services.py``); rescheduling
bumps the plan version (old rows cancelled, new rows planned). The dedupe key
``<booking>.<kind>.v<version>`` is unique (the database holds (booking, plan version, kind)
unique: the same rule, the key is made of exactly these) and goes to the channel (SMTP
Message-ID, the SMS gateway's Idempotency-Key), so a resend after a crash can be dropped
there.

Lifecycle: planned -> sending (claimed with a lease) -> sent | planned (retry later) |
failed (attempts exhausted, or refused for good) | skipped (with a reason) ; planned or
sending -> cancelled (the booking was cancelled, moved or checked in).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, enum_column, utcnow


class ReminderStatus(enum.StrEnum):
    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    FAILED = "failed"


OPEN_STATUSES = (ReminderStatus.PLANNED, ReminderStatus.SENDING)
"""A row in one of these statuses may still be sent."""


class ReminderChannel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"
    LOG = "log"


def dedupe_key(booking_id: uuid.UUID, kind: str, plan_version: int) -> str:
    """The key the channel sees; dots and hyphens only, so it is a valid Message-ID part."""
    return f"{booking_id}.{kind}.v{plan_version}"


class Reminder(Base):
    __tablename__ = "reminders"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts"),
        CheckConstraint("plan_version > 0", name="plan_version"),
        # One row per (booking, plan version, kind): the dedupe key's uniqueness (the key is
        # ``dedupe_key()`` of these), and the booking's rows by plan version (its prefix), in
        # one index instead of two: a booking's reminders write one index entry fewer each.
        Index("uq_reminders_booking_plan_kind", "booking_id", "plan_version", "kind",
              unique=True),
        # The dispatcher's claim: open rows whose next attempt is due, oldest first.
        Index("ix_reminders_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_reminders_due_at", "due_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    booking_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    plan_version: Mapped[int]
    dedupe_key: Mapped[str] = mapped_column(String(100))  # dedupe_key(): unique, see above
    status: Mapped[ReminderStatus] = mapped_column(
        enum_column(ReminderStatus, "reminder_status"))
    # When the reminder is meant to go out (UTC), after any quiet-hours deferral.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When a dispatcher may next claim the row: due_at, a retry's backoff, or (while
    # sending) the end of the lease, so a crashed sender's row is claimed again.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    channel: Mapped[ReminderChannel | None] = mapped_column(
        enum_column(ReminderChannel, "reminder_channel"))
    # A machine code (never message text or contact data): why skipped, failed or cancelled.
    reason: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
