"""Providers (clinicians) and their licenses."""

from __future__ import annotations

import enum
import uuid
from datetime import date

from sqlalchemy import CheckConstraint, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base, enum_column
from service.domain.errors import Conflict, register_constraint
from service.domain.records import Record


class Credential(enum.StrEnum):
    MD = "MD"
    DO = "DO"
    NP = "NP"
    PA = "PA"
    CRNA = "CRNA"


class LicenseKind(enum.StrEnum):
    LICENSE = "license"
    TELEHEALTH_REGISTRATION = "telehealth-registration"  # A.R.S. 36-3606


class LicenseStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"


class Provider(Record, Base):
    __tablename__ = "providers"

    name: Mapped[str] = mapped_column(String(200))
    credential: Mapped[Credential] = mapped_column(enum_column(Credential, "credential"))
    npi: Mapped[str] = mapped_column(String(10), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    is_prescriber: Mapped[bool] = mapped_column(default=False)
    is_rems_prescriber: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True, index=True)

    licenses: Mapped[list[License]] = relationship(
        back_populates="provider", order_by="License.expires_on", lazy="selectin"
    )


class License(Record, Base):
    __tablename__ = "licenses"
    __table_args__ = (
        UniqueConstraint("board", "number", name="uq_licenses_board_number"),
        CheckConstraint("expires_on >= issued_on", name="dates"),
    )

    provider_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("providers.id", ondelete="CASCADE"), index=True
    )
    jurisdiction: Mapped[str] = mapped_column(String(5))
    kind: Mapped[LicenseKind] = mapped_column(enum_column(LicenseKind, "license_kind"))
    board: Mapped[str] = mapped_column(String(200))
    number: Mapped[str] = mapped_column(String(50))
    issued_on: Mapped[date] = mapped_column(Date)
    expires_on: Mapped[date] = mapped_column(Date, index=True)
    status: Mapped[LicenseStatus] = mapped_column(enum_column(LicenseStatus, "license_status"))

    provider: Mapped[Provider] = relationship(back_populates="licenses")


register_constraint(
    "uq_providers_npi",
    lambda: Conflict("A provider with this NPI already exists.", code="duplicate_npi"),
)
register_constraint(
    "uq_licenses_board_number",
    lambda: Conflict(
        "This board already has a license with this number.", code="duplicate_license"
    ),
)
