"""Patients: identity, contact, consent and readiness for treatment."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime
from service.domain.records import Record


class Patient(Record, Base):
    __tablename__ = "patients"

    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date] = mapped_column(Date)
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64))
    home_state: Mapped[str | None] = mapped_column(String(2))
    sms_consent: Mapped[bool] = mapped_column(default=False)
    email_consent: Mapped[bool] = mapped_column(default=False)
    sms_opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rems_enrolled: Mapped[bool] = mapped_column(default=False)
    cleared_for_treatment: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True, index=True)
