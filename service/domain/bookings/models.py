"""Bookings: one appointment, with the blocks of time it holds.

A booking holds three blocks, each half-open [start, end):
- the provider block: the visit plus the service type's buffers before and after;
- the patient block: the visit plus recovery or monitoring;
- the chair block (treatments): the visit plus recovery, on one concrete chair.

On PostgreSQL, exclusion constraints (btree_gist, created by the migration) forbid two
non-cancelled bookings with overlapping blocks for the same provider, patient or chair; on
SQLite every write transaction is BEGIN IMMEDIATE, so the Python check is race-free.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, query_expression, relationship

from service.db import Base, UTCDateTime, enum_column, utcnow
from service.domain.clinic.cancellation import CancellationTerms
from service.domain.clinic.models import ServiceType
from service.domain.records import Record


class BookingStatus(enum.StrEnum):
    """FHIR Appointment statuses used by the clinic."""

    PENDING = "pending"
    BOOKED = "booked"
    CHECKED_IN = "checked-in"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    NOSHOW = "noshow"


# The constraints the database enforces on PostgreSQL (see the migration); their names map
# to the domain error a violation means (service/domain/bookings/services.py).
PROVIDER_OVERLAP = "ex_bookings_provider_overlap"
PATIENT_OVERLAP = "ex_bookings_patient_overlap"
CHAIR_OVERLAP = "ex_bookings_chair_overlap"


class Booking(Record, Base):
    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint("starts_at < ends_at", name="visit_order"),
        CheckConstraint("provider_starts_at <= starts_at AND ends_at <= provider_ends_at",
                        name="provider_block"),
        CheckConstraint("ends_at <= hold_ends_at", name="hold_block"),
        CheckConstraint("status <> 'cancelled' OR cancel_reason IS NOT NULL",
                        name="cancel_reason"),
        Index("ix_bookings_provider_starts", "provider_id", "starts_at"),
        # A patient's bookings in time order (lists, feeds, FHIR, the last clearance): kept,
        # though ix_bookings_patient_hold_ends shares its prefix: without it a patient's
        # page reads all of the patient's bookings (measured: 207 buffers for 9, at 200).
        Index("ix_bookings_patient_starts", "patient_id", "starts_at"),
        Index("ix_bookings_updated_at", "updated_at"),
        # Only a series' sessions have a series_id; every query and the foreign key's
        # ON DELETE SET NULL look for one value (which implies NOT NULL): a booking without a
        # series writes no entry here.
        Index("ix_bookings_series_id", "series_id",
              postgresql_where=text("series_id IS NOT NULL"),
              sqlite_where=text("series_id IS NOT NULL")),
        # The slot search's time filters (block end after the range start): served by
        # these, so years of past bookings do not slow a search (issue 14). The providers'
        # also holds the block's start, checked in the index: of the bookings ending after
        # the range starts, only those starting before it ends are read from the table (a
        # week's search does not fetch every later booking).
        Index("ix_bookings_provider_block", "provider_id", "provider_ends_at",
              "provider_starts_at"),
        Index("ix_bookings_patient_hold_ends", "patient_id", "hold_ends_at"),
        Index("ix_bookings_location_hold_ends", "location_id", "hold_ends_at"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id"))
    service_type_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("service_types.id"))
    location_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("locations.id"))
    status: Mapped[BookingStatus] = mapped_column(
        enum_column(BookingStatus, "booking_status"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    provider_starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    provider_ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # End of the patient's and the chair's block (visit + recovery or monitoring).
    hold_ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    chair_number: Mapped[int | None]
    patient_state: Mapped[str | None] = mapped_column(String(2))
    ride_home_confirmed: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str | None] = mapped_column(String(500))
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    late_cancellation: Mapped[bool] = mapped_column(default=False)
    # The fee a late cancellation or a no-show incurred under the service type's policy
    # (cents; NULL: none).
    fee_cents: Mapped[int | None]
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    series_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("treatment_series.id", ondelete="SET NULL"))
    created_by_key_id: Mapped[uuid.UUID | None]
    # A rule the booking passed when made and no longer passes (its error code: clearance
    # withdrawn, license lapsed, ...), found when an input of the gates changed; it blocks
    # check-in until a provider resolves it (NULL: nothing to look at).
    attention: Mapped[str | None] = mapped_column(String(64))
    attention_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attention_resolution: Mapped[str | None] = mapped_column(String(500))
    attention_resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A reading during or after the dose went beyond the clinic's watch limits (the first).
    vitals_alert_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Loaded with the booking (a second SELECT, never locked with it): its cancellation
    # policy is part of every booking answer.
    service_type: Mapped[ServiceType] = relationship(lazy="selectin")
    # The zones its answer is shown in (its location's, its patient's), read in the same
    # statement by the reads that ask for them (``zones.WITH_ZONES``); None otherwise.
    zone_of_location: Mapped[str | None] = query_expression()
    zone_of_patient: Mapped[str | None] = query_expression()

    @property
    def cancellation(self) -> dict[str, Any]:
        """The service type's cancellation policy and what it means for this visit now."""
        return CancellationTerms.of(self.service_type).for_visit(self.starts_at, utcnow())

    @property
    def leaves_at(self) -> datetime:
        """When the patient may leave: the visit plus its monitoring or recovery (the
        patient's block; calendars and FHIR show this whole stay)."""
        return self.hold_ends_at
