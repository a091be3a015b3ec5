"""The clinical side of visits: intake screening, clearance decisions, vital signs and holds,
side effects, PHQ-9 / GAD-7 assessments and their alerts, follow-up tasks, telehealth visit
facts and in-person evaluations.

Clinical rows are facts recorded at a time by someone: most are append-only (a reading is
never edited; a new decision supersedes the previous one). The rules that must hold even if
a bug slipped past the use cases are check constraints: plausible vital signs, a clearance
only by a provider, an override only with a reason, score totals within the instrument.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base, UTCDateTime, enum_column, utcnow
from service.domain.consultations.scoring import CRISIS_RESOURCES, Band, Instrument
from service.domain.consultations.screening import Contraindication, ScreeningOutcome, assess
from service.domain.consultations.vitals import (
    LIMITS,
    MINUTES_AFTER_DOSE,
    MOAAS,
    Phase,
    Reading,
    Timed,
)
from service.domain.oncall.escalation import EscalationState, escalation_state
from service.domain.oncall.models import AlertNotice
from service.domain.records import Record


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


# Intake screening and clearance ----------------------------------------------------------


class Screening(Record, Base):
    """The intake screening of one consultation: history summary and contraindications."""

    __tablename__ = "screenings"

    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), unique=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), index=True)
    medical_history: Mapped[str | None] = mapped_column(String(2000))
    aneurysmal_vascular_disease: Mapped[bool] = mapped_column(default=False)
    arteriovenous_malformation: Mapped[bool] = mapped_column(default=False)
    intracerebral_hemorrhage_history: Mapped[bool] = mapped_column(default=False)
    hypersensitivity: Mapped[bool] = mapped_column(default=False)
    uncontrolled_hypertension: Mapped[bool] = mapped_column(default=False)
    psychosis_history: Mapped[bool] = mapped_column(default=False)
    pregnancy: Mapped[bool] = mapped_column(default=False)
    recorded_by_key_id: Mapped[uuid.UUID | None]

    def answers(self) -> dict[Contraindication, bool]:
        return {c: bool(getattr(self, c.value)) for c in Contraindication}

    def outcome(self) -> ScreeningOutcome:
        return assess(self.answers())


class ClearanceStatus(enum.StrEnum):
    CLEARED = "cleared"
    NOT_CLEARED = "not_cleared"
    NEEDS_REVIEW = "needs_review"


class DecisionSource(enum.StrEnum):
    CLINICIAN = "clinician"  # recorded by a person
    SCREENING = "screening"  # a screening flagged the patient for review


class ClearanceDecision(Base):
    """One decision on a patient's readiness for treatment; the latest one stands."""

    __tablename__ = "clearance_decisions"
    __table_args__ = (
        CheckConstraint("decision <> 'cleared' OR decided_by_provider_id IS NOT NULL",
                        name="cleared_by_provider"),
        Index("ix_clearance_decisions_patient_decided", "patient_id", "decided_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    # The consultation it was made at (none: a review outside one, after a session say).
    consultation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bookings.id"))
    decision: Mapped[ClearanceStatus] = mapped_column(
        enum_column(ClearanceStatus, "clearance_status"))
    source: Mapped[DecisionSource] = mapped_column(enum_column(DecisionSource,
                                                               "decision_source"))
    reason: Mapped[str | None] = mapped_column(String(500))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by_key_id: Mapped[uuid.UUID | None]
    decided_by_provider_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("providers.id"))


# Vital signs, holds and side effects -----------------------------------------------------


def _limit(name: str) -> str:
    low, high = LIMITS[name]
    return f"{name} BETWEEN {low} AND {high}"


class VitalSign(Base):
    """One reading (append-only): blood pressure, heart rate and SpO2 at a phase."""

    __tablename__ = "vital_signs"
    __table_args__ = (
        CheckConstraint(_limit("systolic"), name="systolic_range"),
        CheckConstraint(_limit("diastolic"), name="diastolic_range"),
        CheckConstraint(_limit("heart_rate"), name="heart_rate_range"),
        CheckConstraint(_limit("spo2"), name="spo2_range"),
        CheckConstraint("diastolic < systolic", name="pressure_order"),
        CheckConstraint(
            "(phase = 'during' AND minutes_after_dose BETWEEN "
            f"{MINUTES_AFTER_DOSE[0]} AND {MINUTES_AFTER_DOSE[1]})"
            " OR (phase <> 'during' AND minutes_after_dose IS NULL)",
            name="minutes_after_dose"),
        CheckConstraint(f"sedation_moaas IS NULL OR sedation_moaas BETWEEN {MOAAS[0]} AND "
                        f"{MOAAS[1]}", name="sedation_moaas_range"),
        Index("ix_vital_signs_booking_taken", "booking_id", "taken_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), index=True)
    phase: Mapped[Phase] = mapped_column(enum_column(Phase, "vital_phase"))
    minutes_after_dose: Mapped[int | None]
    systolic: Mapped[int]
    diastolic: Mapped[int]
    heart_rate: Mapped[int]
    spo2: Mapped[int]
    # Sedation, MOAA/S 0 (no response to pain) to 5 (alert), when assessed (vitals.py).
    sedation_moaas: Mapped[int | None]
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Pre-dose: above the clinic's threshold as it was then (the setting may change later).
    above_threshold: Mapped[bool] = mapped_column(default=False)
    # During or after dosing: the values beyond the clinic's watch limits then (empty: none).
    beyond_limits: Mapped[list[str] | None] = mapped_column(JSON)
    # Discharge: the patient leaves with the ride home that was arranged.
    ride_home_confirmed: Mapped[bool] = mapped_column(default=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by_key_id: Mapped[uuid.UUID | None]

    def reading(self) -> Reading:
        return Reading(phase=self.phase, systolic=self.systolic, diastolic=self.diastolic,
                       heart_rate=self.heart_rate, spo2=self.spo2,
                       minutes_after_dose=self.minutes_after_dose,
                       sedation_moaas=self.sedation_moaas)

    def timed(self) -> Timed:
        return Timed(phase=self.phase, taken_at=self.taken_at,
                     minutes_after_dose=self.minutes_after_dose)


class SessionHold(Base):
    """A session held by a pre-dose blood pressure above the threshold, until a clinician
    overrides it with a reason."""

    __tablename__ = "session_holds"
    __table_args__ = (
        CheckConstraint(
            "(overridden_at IS NULL AND override_reason IS NULL)"
            " OR (overridden_at IS NOT NULL AND override_reason IS NOT NULL"
            " AND overridden_by_provider_id IS NOT NULL)",
            name="override_by_clinician_with_reason"),
    )

    id: Mapped[uuid.UUID] = _id()
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), index=True)
    reading_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vital_signs.id"))
    held_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    overridden_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    overridden_by_key_id: Mapped[uuid.UUID | None]
    overridden_by_provider_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("providers.id"))
    override_reason: Mapped[str | None] = mapped_column(String(500))

    @property
    def active(self) -> bool:
        return self.overridden_at is None


class SideEffectKind(enum.StrEnum):
    NAUSEA = "nausea"
    DIZZINESS = "dizziness"
    DISSOCIATION = "dissociation"
    HEADACHE = "headache"
    ELEVATED_BLOOD_PRESSURE = "elevated_blood_pressure"
    OTHER = "other"


class Severity(enum.StrEnum):
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


class SideEffect(Record, Base):
    __tablename__ = "side_effects"
    __table_args__ = (
        CheckConstraint("resolved = (resolved_at IS NOT NULL)", name="resolved_at"),
    )

    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), index=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[SideEffectKind] = mapped_column(enum_column(SideEffectKind,
                                                             "side_effect_kind"))
    severity: Mapped[Severity] = mapped_column(enum_column(Severity, "severity"))
    note: Mapped[str | None] = mapped_column(String(500))
    noted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved: Mapped[bool] = mapped_column(default=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recorded_by_key_id: Mapped[uuid.UUID | None]


# Assessments and alerts ------------------------------------------------------------------


class Assessment(Base):
    """One completed PHQ-9 or GAD-7, scored by the service (append-only)."""

    __tablename__ = "assessments"
    __table_args__ = (
        CheckConstraint("total >= 0 AND total <= 27 AND (instrument <> 'GAD-7' OR total <= 21)",
                        name="total_range"),
        Index("ix_assessments_patient_instrument_taken", "patient_id", "instrument",
              "taken_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    instrument: Mapped[Instrument] = mapped_column(enum_column(Instrument,
                                                               "assessment_instrument"))
    answers: Mapped[list[Any]] = mapped_column(JSON)
    total: Mapped[int]
    band: Mapped[Band] = mapped_column(enum_column(Band, "assessment_band"))
    urgent: Mapped[bool] = mapped_column(default=False)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The treatment session it was taken at, if any (its series gives the trend).
    booking_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bookings.id"),
                                                         index=True)
    submitted_by_key_id: Mapped[uuid.UUID | None]
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def crisis_resources(self) -> str | None:
        """The 988 Suicide & Crisis Lifeline text, for an answer that reports thoughts of
        self-harm (None otherwise)."""
        return CRISIS_RESOURCES if self.urgent else None


class AlertKind(enum.StrEnum):
    PHQ9_ITEM_9 = "phq9_item_9"  # thoughts of self-harm reported: contact the patient
    BOOKING_ATTENTION = "booking_attention"  # a booked visit no longer passes a gate (code)
    VITALS_OUT_OF_RANGE = "vitals_out_of_range"  # a reading during or after dosing beyond limits
    # a provider's connected calendar not synced for too long (no patient: staff, the provider)
    CALENDAR_STALE = "calendar_stale"


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_acknowledged_raised", "acknowledged_at", "raised_at"),
        # One open alert per stale episode of a connected calendar.
        Index("uq_alerts_open_connection", "connection_id", unique=True,
              postgresql_where=text("resolved_at IS NULL"),
              sqlite_where=text("resolved_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = _id()
    # None: an alert about no patient (calendar_stale: a provider's connected calendar).
    patient_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("patients.id"), index=True)
    assessment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("assessments.id"),
                                                            unique=True)
    booking_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bookings.id"), index=True)
    kind: Mapped[AlertKind] = mapped_column(enum_column(AlertKind, "alert_kind"))
    code: Mapped[str | None] = mapped_column(String(64))  # the rule behind it, when a rule
    urgent: Mapped[bool] = mapped_column(default=True)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by_key_id: Mapped[uuid.UUID | None]
    # calendar_stale: whose calendar and which connection (its id only: kept when it is removed)
    provider_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("providers.id"), index=True)
    connection_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # Closed by the service itself (calendar_stale: the calendar synced again); an open alert
    # is neither acknowledged nor resolved.
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The notices of an urgent alert to the on-call rota (service/domain/oncall), in the
    # order they fall due: read with the alert's answer only.
    notices: Mapped[list[AlertNotice]] = relationship(
        viewonly=True, order_by=(AlertNotice.due_at, AlertNotice.tier, AlertNotice.id))

    @property
    def escalation(self) -> EscalationState:
        return escalation_state(urgent=self.urgent, acknowledged=self.acknowledged_at
                                is not None, notices=self.notices)[0]

    @property
    def next_escalation_at(self) -> datetime | None:
        return escalation_state(urgent=self.urgent, acknowledged=self.acknowledged_at
                                is not None, notices=self.notices)[1]


# Tasks -----------------------------------------------------------------------------------


class TaskKind(enum.StrEnum):
    # Spravato REMS: the Patient Monitoring Form, due within 7 days of each session.
    REMS_MONITORING_FORM = "rems_monitoring_form"


class TaskStatus(enum.StrEnum):
    OPEN = "open"
    DONE = "done"


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("booking_id", "kind"),
        CheckConstraint("(status = 'done') = (completed_at IS NOT NULL)", name="completed_at"),
        Index("ix_tasks_status_due", "status", "due_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    kind: Mapped[TaskKind] = mapped_column(enum_column(TaskKind, "task_kind"))
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), index=True)
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id"), index=True)
    status: Mapped[TaskStatus] = mapped_column(enum_column(TaskStatus, "task_status"),
                                               default=TaskStatus.OPEN)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_by_key_id: Mapped[uuid.UUID | None]


# Telehealth ------------------------------------------------------------------------------


class TelehealthVisit(Record, Base):
    """What a telehealth visit records beyond its booking: the patient's informed consent,
    the location re-attested at check-in, and whether a controlled substance is prescribed."""

    __tablename__ = "telehealth_visits"

    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), unique=True)
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consent_by_key_id: Mapped[uuid.UUID | None]
    attested_state: Mapped[str | None] = mapped_column(String(2))
    attested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    prescribing_controlled_substance: Mapped[bool] = mapped_column(default=False)
    prescribing_marked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    prescribing_marked_by_key_id: Mapped[uuid.UUID | None]


class InPersonEvaluation(Base):
    """An in-person medical evaluation of a patient by a provider, on a date: what a
    telehealth prescription of a controlled substance needs from the cut-off date on."""

    __tablename__ = "in_person_evaluations"
    __table_args__ = (UniqueConstraint("patient_id", "provider_id", "evaluated_on"),)

    id: Mapped[uuid.UUID] = _id()
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id"), index=True)
    evaluated_on: Mapped[date] = mapped_column(Date)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by_key_id: Mapped[uuid.UUID | None]
