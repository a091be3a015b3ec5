"""What happens to a booking, as domain events (handled in the transaction of the change).

The booking use cases record one of these on the unit of work for every change, next to
the booking's history row (``history.py``). Bookings does not know who reacts: reminders,
the calendar change feed, webhooks and the clinical follow-up subscribe in
``service/bootstrap.py``. Each event carries what the booking looked like at that moment
(its times and status), so a handler describes the change, not a later state.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from service.domain.bookings.history import BookingEventKind
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.events import Event


@dataclass(frozen=True, kw_only=True)
class BookingChanged(Event):
    """Any change of a booking (the change feed numbers every one)."""

    kind: ClassVar[BookingEventKind]

    booking_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    status: BookingStatus
    actor_key_id: uuid.UUID | None = None

    @classmethod
    def of(cls, booking: Booking, *, occurred_at: datetime,
           actor_key_id: uuid.UUID | None = None, **extra: Any) -> Self:
        return cls(booking_id=booking.id, starts_at=booking.starts_at, ends_at=booking.ends_at,
                   status=booking.status, occurred_at=occurred_at, actor_key_id=actor_key_id,
                   **extra)


@dataclass(frozen=True, kw_only=True)
class BookingCreated(BookingChanged):
    kind = BookingEventKind.CREATED


@dataclass(frozen=True, kw_only=True)
class BookingRescheduled(BookingChanged):
    kind = BookingEventKind.RESCHEDULED

    # The times it moved away from (a freed slot for the waitlist).
    previous_starts_at: datetime | None = None
    previous_ends_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class BookingConfirmed(BookingChanged):
    kind = BookingEventKind.CONFIRMED


@dataclass(frozen=True, kw_only=True)
class BookingCheckedIn(BookingChanged):
    kind = BookingEventKind.CHECKED_IN


@dataclass(frozen=True, kw_only=True)
class BookingCompleted(BookingChanged):
    kind = BookingEventKind.COMPLETED


@dataclass(frozen=True, kw_only=True)
class BookingCancelled(BookingChanged):
    kind = BookingEventKind.CANCELLED


@dataclass(frozen=True, kw_only=True)
class BookingNoShow(BookingChanged):
    kind = BookingEventKind.NO_SHOW


BOOKING_CHANGES: tuple[type[BookingChanged], ...] = (
    BookingCreated, BookingRescheduled, BookingConfirmed, BookingCheckedIn, BookingCompleted,
    BookingCancelled, BookingNoShow)


@dataclass(frozen=True, kw_only=True)
class BookingNeedsAttention(Event):
    """A future booking no longer passes one of the rules it passed when it was made (a gate
    re-checked when its input changed): ``code`` is the rule's error code. Not a change of
    the booking's times or status: the change feed does not number it."""

    booking_id: uuid.UUID
    patient_id: uuid.UUID
    provider_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    status: BookingStatus
    code: str
