"""The waitlist: patients waiting for a kind of visit, the slots that free up, the offers.

- ``WaitlistEntry``: what a patient waits for (a service type, optionally providers and a
  location, a date range, preferred weekdays and times of day, a series session that must
  keep its protocol window by ``keep_by``), its place in the queue (``position``, first come
  unless staff reorder) and its status.
- ``WaitlistOpening``: a slot that freed up (a cancellation, a reschedule away, new working
  hours, time off removed, an offer released), queued for the scheduler's ``waitlist`` job,
  which claims it with ``FOR UPDATE SKIP LOCKED`` (SQLite: ``BEGIN IMMEDIATE``) and offers
  it in the same short transaction.
- ``WaitlistOffer``: one slot offered to one entry, held for the patient as a ``pending``
  booking (``booking_id``) under the bookings' own constraints until accepted, declined or
  expired. A partial unique index keeps at most one open offer per opening.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime

from sqlalchemy import JSON, CheckConstraint, Date, ForeignKey, Index, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, enum_column, utcnow
from service.domain.records import Record


class EntryStatus(enum.StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"  # an offer is open (held for the patient)
    FILLED = "filled"  # an offer was accepted
    EXPIRED = "expired"  # the date range ended
    WITHDRAWN = "withdrawn"


OPEN_ENTRY_STATUSES = (EntryStatus.WAITING, EntryStatus.OFFERED)


class TimeOfDay(enum.StrEnum):
    """Parts of the day, in the location's zone: [06:00, 12:00), [12:00, 17:00),
    [17:00, 22:00)."""

    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"


class OpeningCause(enum.StrEnum):
    CANCELLED = "cancelled"
    RESCHEDULED = "rescheduled"
    HOURS_CHANGED = "hours_changed"
    TIME_OFF_REMOVED = "time_off_removed"


class OpeningStatus(enum.StrEnum):
    OPEN = "open"
    OFFERED = "offered"
    UNMATCHED = "unmatched"


class OfferStatus(enum.StrEnum):
    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"


class WaitlistEntry(Record, Base):
    __tablename__ = "waitlist_entries"
    __table_args__ = (
        CheckConstraint("earliest_date <= latest_date", name="date_range"),
        Index("ix_waitlist_entries_status_position", "status", "position", "created_at"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), index=True)
    service_type_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("service_types.id"))
    # Empty: any provider of the clinic who offers the service.
    provider_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    location_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("locations.id"))
    earliest_date: Mapped[date] = mapped_column(Date)
    latest_date: Mapped[date] = mapped_column(Date)
    # ISO weekdays 1 (Monday) .. 7 and TimeOfDay values; empty: any.
    weekdays: Mapped[list[int]] = mapped_column(JSON, default=list)
    times_of_day: Mapped[list[str]] = mapped_column(JSON, default=list)
    # A series session: the series and the last day that keeps its protocol window
    # (clinical priority for slots on or before it).
    series_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("treatment_series.id", ondelete="SET NULL"))
    keep_by: Mapped[date | None] = mapped_column(Date)
    patient_state: Mapped[str | None] = mapped_column(String(2))
    ride_home_confirmed: Mapped[bool] = mapped_column(default=False)
    position: Mapped[int] = mapped_column(default=0)
    status: Mapped[EntryStatus] = mapped_column(enum_column(EntryStatus, "waitlist_status"))
    created_by_key_id: Mapped[uuid.UUID | None]


class WaitlistOpening(Base):
    __tablename__ = "waitlist_openings"
    __table_args__ = (
        CheckConstraint("starts_at < ends_at", name="window"),
        Index("ix_waitlist_openings_status_freed", "status", "freed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id"))
    # None: any location where the provider works (new hours, time off removed).
    location_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("locations.id"))
    # The window of starts that freed up, half-open.
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cause: Mapped[OpeningCause] = mapped_column(enum_column(OpeningCause, "opening_cause"))
    status: Mapped[OpeningStatus] = mapped_column(
        enum_column(OpeningStatus, "opening_status"))
    freed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WaitlistOffer(Record, Base):
    __tablename__ = "waitlist_offers"
    __table_args__ = (
        # Held for one patient at a time: one open offer per opening.
        Index("uq_waitlist_offers_open_per_opening", "opening_id", unique=True,
              sqlite_where=text("status = 'offered'"),
              postgresql_where=text("status = 'offered'")),
        Index("ix_waitlist_offers_status_expires", "status", "expires_at"),
    )

    entry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("waitlist_entries.id"), index=True)
    opening_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("waitlist_openings.id"))
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), index=True)
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[OfferStatus] = mapped_column(enum_column(OfferStatus, "offer_status"))
    freed_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the opening freed up
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
