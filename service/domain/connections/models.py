"""Connected calendars, the busy intervals they hold, and the write-back outbox.

- ``CalendarConnection``: one of a provider's other calendars. ``kind`` says how its busy
  time arrives: ``ics`` (a secret iCalendar address polled with conditional GET), ``caldav``
  (a CalDAV calendar queried over the sync window) or ``push`` (an integration replaces the
  intervals itself). The address and credentials are one Fernet token (``secret``), never
  readable through the API. Freshness: ``last_synced_at``, ``status``, ``last_error`` (a
  machine code, never a server's answer) and ``stale_since``.
- ``ExternalBusy``: one busy interval, half-open, UTC. Only the interval: never a title, an
  attendee or a description.
- ``CalendarWrite``: the write-back outbox, one row per (connection, booking): "bring this
  visit's copy in that calendar up to date". The sender writes what the booking is at send
  time under the booking's stable UID, and remembers the booking version it wrote, so a visit
  is never written twice for one change.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, enum_column, utcnow
from service.domain.records import Record


class ConnectionKind(enum.StrEnum):
    ICS = "ics"
    CALDAV = "caldav"
    PUSH = "push"


class SyncStatus(enum.StrEnum):
    PENDING = "pending"  # never synced yet
    OK = "ok"
    ERROR = "error"  # the last attempt failed (``last_error``); older intervals are kept


class CalendarConnection(Record, Base):
    __tablename__ = "calendar_connections"
    __table_args__ = (
        CheckConstraint("interval_seconds > 0", name="interval"),
        Index("ix_calendar_connections_due", "active", "next_sync_at"),
    )

    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id"), index=True)
    kind: Mapped[ConnectionKind] = mapped_column(
        enum_column(ConnectionKind, "calendar_connection_kind"))
    label: Mapped[str] = mapped_column(String(100))
    # Fernet token of {"url", "username", "password"} (CALENDAR_SECRET_KEY); push: none.
    secret: Mapped[str | None] = mapped_column(Text)
    include_all_day: Mapped[bool] = mapped_column(default=False)
    write_back: Mapped[bool] = mapped_column(default=False)
    interval_seconds: Mapped[int]
    active: Mapped[bool] = mapped_column(default=True)
    status: Mapped[SyncStatus] = mapped_column(
        enum_column(SyncStatus, "calendar_sync_status"), default=SyncStatus.PENDING)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(64))
    stale_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    busy_count: Mapped[int] = mapped_column(default=0)
    # Conditional GET (ics): what the server answered last time.
    etag: Mapped[str | None] = mapped_column(String(200))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    # Polling (ics, caldav): due time of the next sync; while syncing, the end of the lease.
    next_sync_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claim_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # Failed syncs in a row (reset by a success): the next try waits interval x 2^(n-1), at
    # most interval x 4.
    failures: Mapped[int] = mapped_column(default=0)

    @property
    def interval_minutes(self) -> int:
        return self.interval_seconds // 60

    @property
    def has_secret(self) -> bool:
        return self.secret is not None

    @property
    def stale(self) -> bool:
        return self.stale_since is not None


class ExternalBusy(Base):
    __tablename__ = "external_busy"
    __table_args__ = (
        CheckConstraint("starts_at < ends_at", name="range"),
        Index("ix_external_busy_provider_starts", "provider_id", "starts_at"),
        Index("ix_external_busy_connection_starts", "connection_id", "starts_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("calendar_connections.id", ondelete="CASCADE"))
    provider_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WriteStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DONE = "done"
    FAILED = "failed"


OPEN_WRITE_STATUSES = (WriteStatus.PENDING, WriteStatus.SENDING)


class CalendarWrite(Base):
    __tablename__ = "calendar_writes"
    __table_args__ = (
        UniqueConstraint("connection_id", "booking_id", name="uq_calendar_writes_target"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_calendar_writes_status_next_attempt", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("calendar_connections.id", ondelete="CASCADE"))
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), index=True)
    status: Mapped[WriteStatus] = mapped_column(
        enum_column(WriteStatus, "calendar_write_status"))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    last_error: Mapped[str | None] = mapped_column(String(64))
    written_version: Mapped[int | None]  # the booking version last written (None: never)
    written_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
