"""Integration records: calendar feed tokens, the booking change feed, webhook subscriptions
and their delivery outbox.

- ``CalendarFeedToken``: a secret in a feed URL, stored as its SHA-256 only; bound to one
  provider or one patient; revocable.
- ``BookingChange``: one row per booking change, numbered by a gap-free sequence that is
  allocated right before the commit under the ``sync_counters`` row lock, so changes commit
  in sequence order and a reader never sees change n+1 before change n (see ``sync.py``).
- ``WebhookSubscription`` / ``WebhookDelivery`` / ``WebhookAttempt``: who wants which events,
  the outbox rows written in the transaction of the change, and the log of each attempt.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, enum_column, utcnow
from service.domain.records import Record


class CalendarFeedToken(Base):
    __tablename__ = "calendar_feed_tokens"
    __table_args__ = (
        CheckConstraint("(provider_id IS NULL) <> (patient_id IS NULL)", name="one_owner"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    provider_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("providers.id", ondelete="CASCADE"), index=True)
    patient_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_key_id: Mapped[uuid.UUID | None]
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BookingChange(Base):
    __tablename__ = "booking_changes"
    __table_args__ = (Index("ix_booking_changes_booking", "booking_id", "seq"),)

    # Assigned by sync.py (never by the database): gap-free, in commit order.
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=False)
    booking_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    # Shown to clients (who read the feed by seq); the retention purge deletes by it.
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SyncCounter(Base):
    """The last sequence number handed out, per sequence (one row: ``booking_changes``)."""

    __tablename__ = "sync_counters"
    # Updated by every booking (HOT): pages kept mostly free are pruned sooner, so the
    # row's chain of dead versions stays short (migration d7f2b4e91a36).
    __table_args__ = {"postgresql_with": {"fillfactor": 10}}

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class WebhookEvent(enum.StrEnum):
    BOOKING_CREATED = "booking.created"
    BOOKING_RESCHEDULED = "booking.rescheduled"
    BOOKING_CANCELLED = "booking.cancelled"
    BOOKING_NO_SHOW = "booking.no_show"
    SERIES_CREATED = "series.created"
    BOOKING_ATTENTION = "booking.attention"  # a future booking no longer passes a rule
    ALERT_RAISED = "alert.raised"  # an alert for clinic staff and providers
    ALERT_ACKNOWLEDGED = "alert.acknowledged"  # someone took it in hand
    WAITLIST_OFFERED = "waitlist.offered"  # a freed slot is held for a waitlisted patient
    WAITLIST_FILLED = "waitlist.filled"  # the patient accepted it


class WebhookSubscription(Record, Base):
    __tablename__ = "webhook_subscriptions"

    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    # The signing secret must be readable to sign: it is shown once, never listed again.
    secret: Mapped[str] = mapped_column(String(100))
    # After a rotation the previous secret also signs deliveries until it expires.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    description: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True, index=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(64))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_key_id: Mapped[uuid.UUID | None] = mapped_column(index=True)

    def wants(self, event_type: str) -> bool:
        return self.active and event_type in (self.events or [])


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


OPEN_DELIVERY_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


class WebhookDelivery(Base):
    """One event for one subscription: an outbox row, claimed with a lease by the sender."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_webhook_deliveries_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_subscription_created", "subscription_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    # The exact JSON body sent (thin: ids, times, status; never patient data).
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        enum_column(DeliveryStatus, "webhook_delivery_status"))
    attempts: Mapped[int] = mapped_column(default=0)
    # Due time of the next attempt; while sending, the end of the lease.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    last_status_code: Mapped[int | None]
    # A machine code (http_500, timeout, connection_refused, ...), never a response body.
    last_error: Mapped[str | None] = mapped_column(String(64))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redelivery_of: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookAttempt(Base):
    """The delivery log: one row per HTTP attempt."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(64))
    duration_ms: Mapped[int]

