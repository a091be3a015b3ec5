"""What happened to a booking, recorded in the same transaction as the change itself.

Every use case that changes a booking calls ``record``. The row is the booking's history, and
the one place where the consequences of a change are planned in that same transaction
(reminders, webhook deliveries, the calendar change feed): add them to ``record``.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer
from sqlalchemy.orm import Mapped, Session, mapped_column

from service.db import Base, UTCDateTime, enum_column, utcnow


class BookingEventKind(enum.StrEnum):
    CREATED = "booking.created"
    RESCHEDULED = "booking.rescheduled"
    CONFIRMED = "booking.confirmed"
    CHECKED_IN = "booking.checked_in"
    COMPLETED = "booking.completed"
    CANCELLED = "booking.cancelled"
    NO_SHOW = "booking.no_show"


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


def record(session: Session, booking, kind: BookingEventKind, *,  # type: ignore[no-untyped-def]
           actor_key_id: uuid.UUID | None = None) -> BookingEvent:
    """Record the change (call after the booking row is flushed, before commit)."""
    session.flush()
    event = BookingEvent(booking_id=booking.id, kind=kind, actor_key_id=actor_key_id)
    session.add(event)
    from service.domain.reminders.services import on_booking_event

    on_booking_event(session, booking, kind)  # plan, re-plan or cancel its reminders
    from service.domain.calendar.services import on_booking_change

    on_booking_change(session, booking, kind)  # the change feed and webhook deliveries
    return event
