"""When a provider works: weekly hours per location, date overrides and time off.

Weekly hours and overrides are local wall-clock times in the location's zone, so 09:00 stays
09:00 across DST changes; time off is a pair of instants (UTC).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, String, Time
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime
from service.domain.records import Record


class WeeklyHours(Record, Base):
    __tablename__ = "weekly_hours"
    __table_args__ = (
        CheckConstraint("weekday >= 0 AND weekday <= 6", name="weekday"),
        CheckConstraint("start_time < end_time", name="order"),
        Index("ix_weekly_hours_provider_weekday", "provider_id", "weekday"),
    )

    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    location_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("locations.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int]  # 0 = Monday
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)


class DateOverride(Record, Base):
    """On this local date, the provider works these hours at this location instead of the
    weekly hours (a row with no times: not working that day)."""

    __tablename__ = "date_overrides"
    __table_args__ = (
        CheckConstraint(
            "(start_time IS NULL AND end_time IS NULL) OR (start_time < end_time)",
            name="order"),
        Index("ix_date_overrides_provider_day", "provider_id", "day"),
    )

    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    location_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("locations.id", ondelete="CASCADE"), index=True)
    day: Mapped[date] = mapped_column(Date)
    start_time: Mapped[time | None] = mapped_column(Time)
    end_time: Mapped[time | None] = mapped_column(Time)


class TimeOff(Record, Base):
    __tablename__ = "time_off"
    __table_args__ = (
        CheckConstraint("starts_at < ends_at", name="order"),
        Index("ix_time_off_provider_starts", "provider_id", "starts_at"),
    )

    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(200))


class ScheduleVersion(Base):
    """A counter per scope (``provider:<id>``, ``patient:<id>``, ``chairs:<location id>``)
    bumped in the very transaction of every change that can change the slots of that scope:
    bookings, weekly hours, overrides, time off, licenses (availability/versions.py). A cached
    search answer is used only while the versions it was computed under are still current."""

    __tablename__ = "schedule_versions"
    # Two rows updated by every booking (HOT): half of each page kept free, so pages are
    # pruned sooner and update chains stay short (migration d7f2b4e91a36).
    __table_args__ = {"postgresql_with": {"fillfactor": 50}}

    scope: Mapped[str] = mapped_column(String(60), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
