"""Clinic sites (and the virtual telehealth location) and the services they offer."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, enum_column
from service.domain.errors import Conflict, register_constraint
from service.domain.providers.licensing import Modality
from service.domain.records import Record


class LocationKind(enum.StrEnum):
    CLINIC = "clinic"
    VIRTUAL = "virtual"


class Location(Record, Base):
    __tablename__ = "locations"
    __table_args__ = (CheckConstraint("chairs >= 0 AND chairs <= 100", name="chairs"),)

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[LocationKind] = mapped_column(enum_column(LocationKind, "location_kind"))
    timezone: Mapped[str] = mapped_column(String(64))
    address_line1: Mapped[str | None] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str | None] = mapped_column(String(2))
    postal_code: Mapped[str | None] = mapped_column(String(10))
    chairs: Mapped[int] = mapped_column(default=0)
    rems_certified: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True, index=True)


class Route(enum.StrEnum):
    """How a treatment's medicine is given (None on a service type: no dose, e.g. a
    consultation)."""

    IV = "iv"
    INTRANASAL = "intranasal"  # esketamine nasal spray (Spravato, under the REMS)
    ORAL = "oral"
    SUBLINGUAL = "sublingual"


# Routes a patient may take at home under a prescribed home protocol (the pill); an IV
# infusion and esketamine are given in the clinic only.
HOME_ROUTES = frozenset({Route.ORAL, Route.SUBLINGUAL})

# The least monitoring (recovery_minutes) a dose given in the clinic is followed by, per route:
# esketamine's 120 minutes are the REMS label's; the others the clinic's standard.
MIN_MONITORING_MINUTES: dict[Route, int] = {
    Route.IV: 30,
    Route.INTRANASAL: 120,
    Route.ORAL: 60,
    Route.SUBLINGUAL: 60,
}


DEFAULT_REMINDER_PLAN: dict[str, Any] = {
    "confirmation": True,
    "hours_before": [72, 24, 2],
    "next_day_check_in": False,
}


class CancellationOutcome(enum.StrEnum):
    """What a late cancellation or a no-show means for the patient."""

    NONE = "none"  # nothing recorded
    FLAG = "flag"  # the booking is marked (late_cancellation / noshow), no fee
    FEE = "fee"  # marked, and the fee amount is recorded on the booking


class ServiceType(Record, Base):
    __tablename__ = "service_types"
    __table_args__ = (
        CheckConstraint("duration_minutes > 0 AND duration_minutes <= 720",
                        name="duration"),
        CheckConstraint(
            "recovery_minutes >= 0 AND buffer_before_minutes >= 0 AND buffer_after_minutes >= 0"
            " AND min_notice_minutes >= 0 AND horizon_days > 0 AND slot_interval_minutes > 0"
            " AND late_cancel_hours >= 0",
            name="non_negative",
        ),
        CheckConstraint("arrive_early_minutes >= 0 AND arrive_early_minutes <= 240",
                        name="arrive_early"),
        CheckConstraint("patient_notice_hours >= 0 AND patient_notice_hours <= 720"
                        " AND late_cancel_fee_cents >= 0 AND late_cancel_fee_cents <= 10000000"
                        " AND no_show_fee_cents >= 0 AND no_show_fee_cents <= 10000000",
                        name="cancellation_policy"),
    )

    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    modality: Mapped[Modality] = mapped_column(enum_column(Modality, "modality"))
    duration_minutes: Mapped[int]
    recovery_minutes: Mapped[int] = mapped_column(default=0)
    buffer_before_minutes: Mapped[int] = mapped_column(default=0)
    buffer_after_minutes: Mapped[int] = mapped_column(default=0)
    min_notice_minutes: Mapped[int] = mapped_column(default=0)
    horizon_days: Mapped[int] = mapped_column(default=90)
    slot_interval_minutes: Mapped[int] = mapped_column(default=15)
    late_cancel_hours: Mapped[int] = mapped_column(default=24)
    # The cancellation policy, as data (shown in slot and booking answers): patients change
    # or cancel their own visits up to ``patient_notice_hours`` before the start (later:
    # they call the clinic); a cancellation within ``late_cancel_hours`` is late, and what a
    # late cancellation or a no-show means is the outcome (and fee, in cents) below.
    patient_notice_hours: Mapped[int] = mapped_column(default=0)
    late_cancel_outcome: Mapped[CancellationOutcome] = mapped_column(
        enum_column(CancellationOutcome, "late_cancel_outcome"), default=CancellationOutcome.FLAG)
    late_cancel_fee_cents: Mapped[int] = mapped_column(default=0)
    no_show_outcome: Mapped[CancellationOutcome] = mapped_column(
        enum_column(CancellationOutcome, "no_show_outcome"), default=CancellationOutcome.FLAG)
    no_show_fee_cents: Mapped[int] = mapped_column(default=0)
    needs_chair: Mapped[bool] = mapped_column(default=False)
    needs_clearance: Mapped[bool] = mapped_column(default=False)
    requires_rems: Mapped[bool] = mapped_column(default=False)
    # The screening answers (consultations/screening.py Contraindication values) that rule
    # this kind of visit out: IV ketamine declares its own, esketamine its own on top of the
    # REMS label's hard ones. NULL or empty: none.
    contraindications: Mapped[list[str] | None] = mapped_column(JSON, default=list)
    reminder_plan: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=lambda: dict(DEFAULT_REMINDER_PLAN)
    )
    active: Mapped[bool] = mapped_column(default=True, index=True)
    # How the dose is given (NULL: no dose), and whether the patient takes it at home under a
    # prescribed protocol (the service type is then the telehealth check-in that follows it).
    route: Mapped[Route | None] = mapped_column(enum_column(Route, "treatment_route"))
    at_home: Mapped[bool] = mapped_column(default=False)
    # The whole stay and how to prepare: the patient arrives this many minutes before the
    # start (check-in, readings before the dose); preparation and after-care instructions,
    # each {"text": what the patient reads, "reminder": a short PHI-free wording for
    # reminders, or null to keep it out of them}. NULL: none.
    arrive_early_minutes: Mapped[int] = mapped_column(default=0)
    preparation: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=list)
    after_care: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=list)

    @property
    def needs_ride_home(self) -> bool:
        """A treatment in the clinic: the patient leaves with a driver, never driving."""
        return self.modality == Modality.IN_PERSON and self.needs_clearance


register_constraint(
    "uq_service_types_code",
    lambda: Conflict("A service type with this code already exists.", code="duplicate_code"),
)
