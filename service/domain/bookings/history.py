"""A booking's history: one row per change, written in the transaction of the change."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, enum_column, utcnow


class BookingEventKind(enum.StrEnum):
    CREATED = "booking.created"
    RESCHEDULED = "booking.rescheduled"
    CONFIRMED = "booking.confirmed"
    CHECKED_IN = "booking.checked_in"
    COMPLETED = "booking.completed"
    CANCELLED = "booking.cancelled"
    NO_SHOW = "booking.no_show"
    # A provider (or an admin) confirmed a change that breaks its series' protocol, with a
    # reason (kept on the series' overrides); history only, no webhook or feed event.
    PROTOCOL_OVERRIDDEN = "booking.protocol_overridden"


class BookingEvent(Base):
    __tablename__ = "booking_events"
    __table_args__ = (Index("ix_booking_events_booking", "booking_id", "id"),)

    # BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite: both autoincrement.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    booking_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"))
    kind: Mapped[BookingEventKind] = mapped_column(enum_column(BookingEventKind, "kind"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_key_id: Mapped[uuid.UUID | None]
