"""A treatment series: a protocol's sessions for one patient, booked together.

The sessions themselves are ordinary bookings whose ``series_id`` points here; the series
keeps what is needed to judge them against their protocol (which protocol or RRULE, the
planned first start, the previous session a booster counts from).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, enum_column
from service.domain.records import Record


class SeriesStatus(enum.StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"


class TreatmentSeries(Record, Base):
    __tablename__ = "treatment_series"
    __table_args__ = (
        CheckConstraint("planned_sessions >= 1 AND planned_sessions <= 52",
                        name="planned_sessions"),
        CheckConstraint("status <> 'cancelled' OR cancel_reason IS NOT NULL",
                        name="cancel_reason"),
        Index("ix_treatment_series_patient_created", "patient_id", "created_at"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    # None: any licensed provider (each session names its own).
    provider_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("providers.id"),
                                                          index=True)
    service_type_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("service_types.id"))
    location_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("locations.id"))
    protocol: Mapped[str] = mapped_column(String(40))
    rrule: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[SeriesStatus] = mapped_column(enum_column(SeriesStatus, "series_status"),
                                                 index=True)
    planned_sessions: Mapped[int]
    first_start: Mapped[datetime] = mapped_column(UTCDateTime)
    previous_session_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_key_id: Mapped[uuid.UUID | None]



class ProtocolOverrideAction(enum.StrEnum):
    BOOK = "book"  # the series was booked with session starts that break its protocol
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"


class SeriesProtocolOverride(Record, Base):
    """A provider (or an admin) confirmed a change that breaks the series' protocol, and
    said why: kept for the record, shown in the series' answer."""

    __tablename__ = "series_protocol_overrides"
    __table_args__ = (
        CheckConstraint("length(reason) > 0", name="reason"),
        Index("ix_series_protocol_overrides_series", "series_id", "created_at"),
    )

    series_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("treatment_series.id", ondelete="CASCADE"))
    booking_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"))
    action: Mapped[ProtocolOverrideAction] = mapped_column(
        enum_column(ProtocolOverrideAction, "protocol_override_action"))
    rules: Mapped[str] = mapped_column(String(200))  # the broken rules' codes, comma-joined
    issues: Mapped[str] = mapped_column(String(2000))  # what breaks, in words ("; "-joined)
    session_start: Mapped[datetime | None] = mapped_column(UTCDateTime)  # new or cancelled
    reason: Mapped[str] = mapped_column(String(500))
    actor_key_id: Mapped[uuid.UUID | None]
