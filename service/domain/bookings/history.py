"""A booking's history: one row per change, written in the transaction of the change.

On PostgreSQL a change's row waits on its unit of work (``defer``, in ``uow.memo``) and is
written by the change feed's statement right before the commit (``written_with_the_feed``,
a data-modifying CTE of ``calendar/sync.py``'s one statement): one round trip fewer a
change, the same rows in the same order (ids follow the changes). Elsewhere it is written at
once.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any

from sqlalchemy import CTE, BigInteger, ForeignKey, Index, Integer, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, enum_column, utcnow
from service.domain import json_rows


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


_DEFERRED = "bookings.history.deferred"


def defer(memo: MutableMapping[object, Any], booking_id: uuid.UUID, kind: BookingEventKind,
          actor_key_id: uuid.UUID | None) -> None:
    """Keep a change's row for the change feed's statement (PostgreSQL)."""
    memo.setdefault(_DEFERRED, []).append((booking_id, kind.value, actor_key_id))


def take_deferred(memo: MutableMapping[object, Any]) -> dict[str, Any]:
    """The parameter of ``written_with_the_feed`` for the rows kept so far (none: an empty
    array, no row), which are then no longer kept."""
    at = utcnow()
    return {"history_rows": json_rows.parameter([
        {"booking_id": booking_id, "kind": kind, "occurred_at": at,
         "actor_key_id": actor_key_id}
        for booking_id, kind, actor_key_id in memo.pop(_DEFERRED, [])])}


def written_with_the_feed() -> CTE:
    """PostgreSQL: the deferred rows as a data-modifying CTE (one JSON parameter, given by
    ``take_deferred``: ``json_rows.py``), inserted in the order the changes happened."""
    rows = json_rows.rows_of(BookingEvent.__table__, "history_rows", alias="history_row")
    return insert(BookingEvent.__table__).from_select(
        ["booking_id", "kind", "occurred_at", "actor_key_id"],
        select(rows.c.booking_id, rows.c.kind, rows.c.occurred_at, rows.c.actor_key_id)
        .order_by(rows.c[json_rows.ORDER])).cte("history")
