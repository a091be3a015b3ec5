"""Consultation use cases: intake screening and the clearance decision, vital signs and the
blood pressure hold, side effects, PHQ-9 / GAD-7 assessments and their alerts, follow-up
tasks, telehealth visit facts and in-person evaluations.

Who sees what: clinical records are for clinic staff and providers; a patient sees their own
assessments and vital signs (and their telehealth link), nothing of anyone else (404). The
gates these records feed (clearance, contraindications, the hold, the esketamine readings,
telehealth consent and location) are answered by ``gates.py``, which the booking use cases
ask. A new clearance decision is recorded as ``ClearanceChanged``; a completed esketamine
session opens its REMS task (``open_rems_monitoring_task``, a handler of
``BookingCompleted``): see ``service/bootstrap.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from service.domain.access.actor import Actor, Role
from service.domain.bookings import services as bookings
from service.domain.bookings.events import BookingCompleted, BookingNeedsAttention
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.clinic.models import Location, ServiceType
from service.domain.connections.events import CalendarStaleEnded, CalendarWentStale
from service.domain.consultations import gates, scoring
from service.domain.consultations import vitals as vital_rules
from service.domain.consultations.events import (
    AlertAcknowledged,
    AlertRaised,
    ClearanceChanged,
    ScreeningChanged,
)
from service.domain.consultations.models import (
    Alert,
    AlertKind,
    Assessment,
    ClearanceDecision,
    ClearanceStatus,
    DecisionSource,
    InPersonEvaluation,
    Screening,
    SessionHold,
    Severity,
    SideEffect,
    SideEffectKind,
    Task,
    TaskKind,
    TaskStatus,
    TelehealthVisit,
    VitalSign,
)
from service.domain.consultations.policy import alerts, policy, tasks
from service.domain.consultations.screening import Contraindication
from service.domain.errors import (
    Conflict,
    InvalidInput,
    InvalidState,
    NotFound,
    register_constraint,
)
from service.domain.patients.models import Patient
from service.domain.patients.services import find_patient
from service.domain.providers.licensing import Modality
from service.domain.providers.models import Provider
from service.domain.records import Page, apply_changes, paginate
from service.domain.time import in_zone
from service.uow import UnitOfWork

# A reading or questionnaire "taken" later than this after the server's clock is refused.
CLOCK_SKEW = timedelta(minutes=5)
# Spravato REMS: the Patient Monitoring Form is due within 7 days of each session.
REMS_FORM_DUE = timedelta(days=7)

register_constraint("uq_in_person_evaluations_patient_id_provider_id_evaluated_on",
                    lambda: Conflict("This in-person evaluation is already recorded.",
                                     code="duplicate_evaluation"))


def _not_in_future(value: datetime, now: datetime, field: str) -> None:
    if value > now + CLOCK_SKEW:
        raise InvalidInput(f"{field} is in the future.", code="invalid_input", field=field)


def _service_type(uow: UnitOfWork, booking: Booking) -> ServiceType:
    return uow.session.get(ServiceType, booking.service_type_id)


def is_consultation(service_type: ServiceType) -> bool:
    """A visit that needs no clearance itself: the consultation (or a follow-up)."""
    return not service_type.needs_clearance


# Intake screening and the clearance decision ---------------------------------------------


ANSWERS = tuple(c.value for c in Contraindication)


def _consultation(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                  lock: bool = False) -> Booking:
    booking = bookings.find_booking(uow, actor, booking_id, lock=lock)
    if not is_consultation(_service_type(uow, booking)):
        raise Conflict("A screening belongs to a consultation, not to a treatment session.",
                       code="not_a_consultation")
    return booking


def _screening(uow: UnitOfWork, booking: Booking) -> Screening:
    screening = uow.session.scalar(select(Screening).where(Screening.booking_id == booking.id))
    if screening is None:
        raise NotFound("No screening is recorded for this consultation yet.",
                       code="screening_not_found")
    return screening


def _decide(uow: UnitOfWork, patient: Patient, *, decision: ClearanceStatus,
            source: DecisionSource, actor: Actor, now: datetime, reason: str | None = None,
            consultation_id: uuid.UUID | None = None) -> ClearanceDecision:
    """Record a decision, in the caller's transaction; it now stands (``ClearanceChanged``:
    the patient's read-out ``cleared_for_treatment`` follows)."""
    row = ClearanceDecision(
        patient_id=patient.id, consultation_id=consultation_id, decision=decision,
        source=source, reason=reason, decided_at=now, decided_by_key_id=actor.key_id,
        decided_by_provider_id=actor.provider_id if actor.role is Role.PROVIDER else None)
    uow.session.add(row)
    uow.record(ClearanceChanged(patient_id=patient.id, decision=decision, occurred_at=now))
    return row


def _flag_new_review_items(uow: UnitOfWork, actor: Actor, screening: Screening,
                           before: tuple[Contraindication, ...], now: datetime) -> None:
    """Answers that call for a clinician put the patient in front of one: the standing
    decision becomes "needs review" (a clearance given before no longer stands)."""
    new = [c.value for c in screening.outcome().review if c not in before]
    if new:
        patient = uow.session.get(Patient, screening.patient_id)
        _decide(uow, patient, decision=ClearanceStatus.NEEDS_REVIEW,
                source=DecisionSource.SCREENING, actor=actor, now=now,
                consultation_id=screening.booking_id,
                reason="Screening answers need a clinician's review: " + ", ".join(new))


def record_screening(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                     answers: Mapping[str, bool], medical_history: str | None,
                     now: datetime) -> Screening:
    def work() -> Screening:
        booking = _consultation(uow, actor, booking_id, lock=True)
        if booking.status in (BookingStatus.CANCELLED, BookingStatus.NOSHOW):
            raise InvalidState(f"A {booking.status.value} consultation takes no screening.",
                               code="invalid_transition", booking_status=booking.status.value)
        exists = uow.session.scalar(select(Screening.id)
                                    .where(Screening.booking_id == booking.id))
        if exists is not None:
            raise Conflict("This consultation already has a screening; PATCH it with If-Match.",
                           code="screening_exists")
        screening = Screening(booking_id=booking.id, patient_id=booking.patient_id,
                              medical_history=medical_history, recorded_by_key_id=actor.key_id,
                              **{name: bool(answers.get(name, False)) for name in ANSWERS})
        uow.session.add(screening)
        uow.session.flush()
        _flag_new_review_items(uow, actor, screening, (), now)
        uow.record(ScreeningChanged(patient_id=screening.patient_id, occurred_at=now))
        return screening

    return uow.run(work)


def update_screening(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                     expected_version: int | None, changes: Mapping[str, Any],
                     now: datetime) -> Screening:
    def work() -> Screening:
        booking = _consultation(uow, actor, booking_id, lock=True)
        screening = _screening(uow, booking)
        before = screening.outcome().review
        apply_changes(screening, changes, expected_version=expected_version)
        uow.session.flush()
        _flag_new_review_items(uow, actor, screening, before, now)
        uow.record(ScreeningChanged(patient_id=screening.patient_id, occurred_at=now))
        return screening

    return uow.run(work)


def get_screening(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID) -> Screening:
    with uow:
        return _screening(uow, _consultation(uow, actor, booking_id))


def _cited_consultation(uow: UnitOfWork, patient: Patient,
                        booking_id: uuid.UUID) -> Booking:
    """The consultation a decision cites: the patient's own, a consultation service type (a
    booking of another patient is "not found", whoever asks)."""
    booking = uow.session.get(Booking, booking_id)
    if booking is None or booking.patient_id != patient.id:
        raise NotFound("No consultation of this patient with this id.",
                       code="consultation_not_found")
    if not is_consultation(_service_type(uow, booking)):
        raise Conflict("A clearance decision cites a consultation, not a treatment session.",
                       code="not_a_consultation")
    return booking


def _require_grounds(uow: UnitOfWork, decision: ClearanceStatus, reason: str | None,
                     consultation: Booking | None) -> None:
    """A decision rests on a completed consultation (and, to clear, on its screening);
    without them the clinician says why in ``reason``."""
    if reason and reason.strip():
        return
    if consultation is None:
        raise InvalidInput("A decision that cites no consultation needs a reason.",
                           code="clearance_reason_required", field="reason")
    if consultation.status is not BookingStatus.FULFILLED:
        raise Conflict("The cited consultation is not completed; a decision before it needs "
                       "a reason.", code="consultation_not_completed",
                       booking_status=consultation.status.value)
    if decision is ClearanceStatus.CLEARED and uow.session.scalar(
            select(Screening.id).where(Screening.booking_id == consultation.id)) is None:
        raise InvalidInput("Clearing without a screening on the cited consultation needs a "
                           "reason.", code="clearance_reason_required", field="reason")


def record_decision(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID, *,
                    decision: ClearanceStatus, reason: str | None,
                    consultation_id: uuid.UUID | None, now: datetime) -> ClearanceDecision:
    """A clinician's decision on the patient's readiness for treatment; only a provider can
    clear (staff may record "needs review" or "not cleared"). Any provider of the clinic may
    record one (a covering provider with no visit with the patient): the patient is looked
    up past the visibility rules for this write only. The decision cites the consultation it
    rests on (``consultation_id``, the consultation booking); a consultation not completed,
    no consultation, or clearing without its screening needs a ``reason``."""
    if decision is ClearanceStatus.CLEARED:
        policy.require(actor, "clear_for_treatment")

    def work() -> ClearanceDecision:
        if policy.decides_for_any_patient(actor):
            patient = uow.session.get(Patient, patient_id)
            if patient is None:
                raise NotFound("No such patient.", code="patient_not_found")
        else:
            patient = find_patient(uow, actor, patient_id)
        cited = (_cited_consultation(uow, patient, consultation_id)
                 if consultation_id is not None else None)
        _require_grounds(uow, decision, reason, cited)
        return _decide(uow, patient, decision=decision, source=DecisionSource.CLINICIAN,
                       actor=actor, now=now, reason=reason, consultation_id=consultation_id)

    return uow.run(work)


def list_decisions(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID, *, page: int,
                   page_size: int) -> Page[ClearanceDecision]:
    with uow:
        find_patient(uow, actor, patient_id)
        query = (select(ClearanceDecision).where(ClearanceDecision.patient_id == patient_id)
                 .order_by(ClearanceDecision.decided_at.desc()))
        return paginate(uow.session, query, page=page, page_size=page_size)


# Vital signs, the blood pressure hold, side effects --------------------------------------


@dataclass(frozen=True)
class VitalsInput:
    phase: vital_rules.Phase
    systolic: int
    diastolic: int
    heart_rate: int
    spo2: int
    taken_at: datetime
    minutes_after_dose: int | None = None
    ride_home_confirmed: bool = False
    sedation_moaas: int | None = None

    def reading(self) -> vital_rules.Reading:
        return vital_rules.Reading(
            phase=self.phase, systolic=self.systolic, diastolic=self.diastolic,
            heart_rate=self.heart_rate, spo2=self.spo2,
            minutes_after_dose=self.minutes_after_dose, sedation_moaas=self.sedation_moaas)


def record_vitals(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, values: VitalsInput,
                  *, threshold: vital_rules.Threshold, now: datetime,
                  limits: vital_rules.WatchLimits | None = None) -> VitalSign:
    """Record one reading of a checked-in session. A pre-dose blood pressure above the
    threshold puts the session on hold; no reading during dosing is taken while it holds.
    Readings come in the session's order (before the dose, during at their minutes after
    it, discharge last; none in the future). A reading during or after dosing beyond the
    clinic's watch limits raises an urgent alert and marks the session
    (``vitals_alert_at``)."""
    limits = limits or vital_rules.WatchLimits()
    reading = values.reading()
    problems = vital_rules.implausible(reading)
    if values.taken_at > now + CLOCK_SKEW:
        problems["taken_at"] = "is in the future"
    if problems:
        raise InvalidInput("Some vital signs are physiologically impossible.",
                           code="implausible_vitals",
                           errors=[{"field": f, "message": m} for f, m in problems.items()])

    def work() -> VitalSign:
        booking = bookings.find_booking(uow, actor, booking_id, lock=True)
        if booking.status is not BookingStatus.CHECKED_IN:
            raise Conflict("Vital signs are recorded while the patient is checked in.",
                           code="session_not_checked_in", booking_status=booking.status.value)
        service_type = _service_type(uow, booking)
        held = gates.active_hold(uow.session, booking.id)
        if reading.phase is vital_rules.Phase.DURING and held is not None:
            raise Conflict("The session is on hold: no dosing until a clinician overrides it.",
                           code="session_on_hold")
        if (reading.phase is vital_rules.Phase.DISCHARGE and gates.is_treatment(service_type)
                and not values.ride_home_confirmed):
            raise InvalidInput("Discharge after a treatment confirms the patient's ride home.",
                               code="ride_home_required")
        readings = list(uow.session.scalars(
            select(VitalSign).where(VitalSign.booking_id == booking.id)))
        recorded = [r.timed() for r in readings]
        disorder = vital_rules.out_of_order(
            vital_rules.Timed(phase=reading.phase, taken_at=values.taken_at,
                              minutes_after_dose=reading.minutes_after_dose), recorded)
        if disorder is not None:
            raise Conflict(disorder, code="vitals_out_of_order")
        if reading.phase is vital_rules.Phase.DISCHARGE and gates.is_treatment(service_type):
            earliest = vital_rules.discharge_from(recorded, service_type.recovery_minutes)
            if earliest is not None and values.taken_at < earliest:
                raise Conflict(f"Discharge comes after {service_type.recovery_minutes} minutes "
                               "of monitoring after the dose.", code="discharge_too_early",
                               earliest=earliest.isoformat())
        above = vital_rules.holds_session(reading, threshold)
        beyond = vital_rules.beyond_limits(reading, limits)
        if reading.phase is vital_rules.Phase.DISCHARGE and beyond:
            raise Conflict("The patient is not ready for discharge: readings must be back "
                           "within the clinic's limits (keep monitoring: record it as a "
                           "reading during monitoring).", code="not_ready_for_discharge",
                           beyond_limits=beyond)
        drowsy = vital_rules.not_alert_for_discharge(
            reading, (r.sedation_moaas for r in readings), limits)
        if drowsy == "sedation_score_required":
            raise Conflict("The patient was sedated during the session: the discharge reading "
                           f"gives a sedation score (MOAA/S of at least "
                           f"{limits.discharge_moaas}).", code="sedation_score_required")
        if drowsy is not None:
            raise Conflict("The patient is not ready for discharge: not yet alert (MOAA/S "
                           f"below {limits.discharge_moaas}); keep monitoring.",
                           code="not_ready_for_discharge", beyond_limits=[drowsy])
        row = VitalSign(
            booking_id=booking.id, patient_id=booking.patient_id, phase=reading.phase,
            minutes_after_dose=reading.minutes_after_dose, systolic=reading.systolic,
            diastolic=reading.diastolic, heart_rate=reading.heart_rate, spo2=reading.spo2,
            sedation_moaas=reading.sedation_moaas, taken_at=values.taken_at,
            above_threshold=above, beyond_limits=beyond,
            ride_home_confirmed=values.ride_home_confirmed, recorded_at=now,
            recorded_by_key_id=actor.key_id)
        uow.session.add(row)
        uow.session.flush()
        if beyond:
            if booking.vitals_alert_at is None:
                booking.vitals_alert_at = now
            raise_alert(uow, Alert(patient_id=booking.patient_id, booking_id=booking.id,
                                   kind=AlertKind.VITALS_OUT_OF_RANGE, urgent=True,
                                   raised_at=now))
        if above and held is None:
            uow.session.add(SessionHold(booking_id=booking.id, reading_id=row.id, held_at=now))
        return row

    return uow.run(work)


def list_vitals(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *, page: int,
                page_size: int) -> Page[VitalSign]:
    """A session's readings in the order they were taken (the patient sees their own)."""
    with uow:
        booking = bookings.find_booking(uow, actor, booking_id)
        query = (select(VitalSign).where(VitalSign.booking_id == booking.id)
                 .order_by(VitalSign.taken_at, VitalSign.recorded_at))
        return paginate(uow.session, query, page=page, page_size=page_size)


def override_hold(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *, reason: str,
                  now: datetime) -> SessionHold:
    policy.require(actor, "sign_hold_override")
    if not reason.strip():
        raise InvalidInput("An override needs a reason.", code="invalid_input")

    def work() -> SessionHold:
        booking = bookings.find_booking(uow, actor, booking_id, lock=True)
        hold = gates.active_hold(uow.session, booking.id)
        if hold is None:
            raise Conflict("The session is not on hold.", code="no_active_hold")
        hold.overridden_at = now
        hold.overridden_by_key_id = actor.key_id
        hold.overridden_by_provider_id = actor.provider_id
        hold.override_reason = reason.strip()
        return hold

    return uow.run(work)


def list_holds(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *, page: int,
               page_size: int) -> Page[SessionHold]:
    with uow:
        booking = bookings.find_booking(uow, actor, booking_id)
        query = (select(SessionHold).where(SessionHold.booking_id == booking.id)
                 .order_by(SessionHold.held_at))
        return paginate(uow.session, query, page=page, page_size=page_size)


SIDE_EFFECT_SESSION = frozenset({BookingStatus.CHECKED_IN, BookingStatus.FULFILLED})


def log_side_effect(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                    kind: SideEffectKind, severity: Severity, note: str | None,
                    noted_at: datetime | None, resolved: bool, now: datetime) -> SideEffect:
    noted_at = noted_at or now
    _not_in_future(noted_at, now, "noted_at")

    def work() -> SideEffect:
        booking = bookings.find_booking(uow, actor, booking_id, lock=True)
        if booking.status not in SIDE_EFFECT_SESSION:
            raise Conflict("Side effects are logged for a session that has started.",
                           code="session_not_checked_in", booking_status=booking.status.value)
        row = SideEffect(booking_id=booking.id, patient_id=booking.patient_id, kind=kind,
                         severity=severity, note=note, noted_at=noted_at, resolved=resolved,
                         resolved_at=now if resolved else None,
                         recorded_by_key_id=actor.key_id)
        uow.session.add(row)
        return row

    return uow.run(work)


def _side_effect(uow: UnitOfWork, booking: Booking, side_effect_id: uuid.UUID) -> SideEffect:
    row = uow.session.scalar(select(SideEffect).where(SideEffect.id == side_effect_id,
                                                      SideEffect.booking_id == booking.id))
    if row is None:
        raise NotFound("No such side effect for this session.", code="side_effect_not_found")
    return row


def update_side_effect(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID,
                       side_effect_id: uuid.UUID, *, expected_version: int | None,
                       changes: Mapping[str, Any], now: datetime) -> SideEffect:
    def work() -> SideEffect:
        booking = bookings.find_booking(uow, actor, booking_id)
        row = _side_effect(uow, booking, side_effect_id)
        applied = dict(changes)
        if "resolved" in applied and applied["resolved"] != row.resolved:
            applied["resolved_at"] = now if applied["resolved"] else None
        apply_changes(row, applied, expected_version=expected_version)
        return row

    return uow.run(work)


def get_side_effect(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID,
                    side_effect_id: uuid.UUID) -> SideEffect:
    with uow:
        return _side_effect(uow, bookings.find_booking(uow, actor, booking_id), side_effect_id)


def list_side_effects(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *, page: int,
                      page_size: int) -> Page[SideEffect]:
    with uow:
        booking = bookings.find_booking(uow, actor, booking_id)
        query = (select(SideEffect).where(SideEffect.booking_id == booking.id)
                 .order_by(SideEffect.noted_at, SideEffect.id))
        return paginate(uow.session, query, page=page, page_size=page_size)


# Assessments and alerts ------------------------------------------------------------------


def submit_assessment(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID, *,
                      instrument: scoring.Instrument, answers: list[int],
                      taken_at: datetime | None, booking_id: uuid.UUID | None,
                      now: datetime) -> Assessment:
    """Score a PHQ-9 or GAD-7 (a patient may submit their own); a non-zero PHQ-9 item 9
    raises an urgent alert for staff and providers, in the same transaction."""
    result = scoring.score(instrument, answers)
    taken_at = taken_at or now
    _not_in_future(taken_at, now, "taken_at")

    def work() -> Assessment:
        patient = find_patient(uow, actor, patient_id)
        if booking_id is not None:
            booking = bookings.find_booking(uow, actor, booking_id)
            if booking.patient_id != patient.id:
                raise NotFound("No booking with this id.", code="booking_not_found")
        row = Assessment(patient_id=patient.id, instrument=result.instrument,
                         answers=list(answers), total=result.total, band=result.band,
                         urgent=result.urgent, taken_at=taken_at, booking_id=booking_id,
                         submitted_by_key_id=actor.key_id, recorded_at=now)
        uow.session.add(row)
        uow.session.flush()
        if result.urgent:
            raise_alert(uow, Alert(patient_id=patient.id, assessment_id=row.id,
                                   kind=AlertKind.PHQ9_ITEM_9, urgent=True, raised_at=now))
        return row

    return uow.run(work)


def list_assessments(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID, *,
                     instrument: scoring.Instrument | None = None,
                     series_id: uuid.UUID | None = None, page: int,
                     page_size: int) -> Page[Assessment]:
    """In time order, so one instrument's totals read as a trend (``series_id``: those
    taken at the sessions of one treatment series)."""
    with uow:
        patient = find_patient(uow, actor, patient_id)
        query = select(Assessment).where(Assessment.patient_id == patient.id)
        if instrument is not None:
            query = query.where(Assessment.instrument == instrument)
        if series_id is not None:
            query = query.where(Assessment.booking_id.in_(
                select(Booking.id).where(Booking.series_id == series_id)))
        query = query.order_by(Assessment.taken_at, Assessment.recorded_at)
        return paginate(uow.session, query, page=page, page_size=page_size)


def raise_alert(uow: UnitOfWork, alert: Alert) -> Alert:
    """Add an alert in the caller's transaction; ``AlertRaised`` tells the on-call rota
    (an urgent one) and the webhooks."""
    uow.session.add(alert)
    uow.session.flush()
    uow.record(AlertRaised(alert_id=alert.id, urgent=alert.urgent,
                           occurred_at=alert.raised_at))
    return alert


def list_alerts(uow: UnitOfWork, actor: Actor, *, include_acknowledged: bool = False,
                patient_id: uuid.UUID | None = None, page: int,
                page_size: int) -> Page[Alert]:
    """Open alerts (neither acknowledged nor resolved), oldest first (staff: all; a provider:
    those of their patients and of their own calendars), with their notices to the on-call
    rota; ``include_acknowledged``: closed ones too."""
    query = alerts.visible(actor, select(Alert).options(selectinload(Alert.notices)))
    if not include_acknowledged:
        query = query.where(Alert.acknowledged_at.is_(None), Alert.resolved_at.is_(None))
    if patient_id is not None:
        query = query.where(Alert.patient_id == patient_id)
    with uow:
        return paginate(uow.session, query.order_by(Alert.raised_at, Alert.id), page=page,
                        page_size=page_size)


def get_alert(uow: UnitOfWork, actor: Actor, alert_id: uuid.UUID) -> Alert:
    """One alert with its notices to the on-call rota (where its escalation stands)."""
    with uow:
        alert = alerts.load(uow.session, actor, alert_id)
        alert.notices  # noqa: B018 - loaded while the session is open
        return alert


def acknowledge_alert(uow: UnitOfWork, actor: Actor, alert_id: uuid.UUID, *,
                      now: datetime) -> Alert:
    def work() -> None:
        alert = alerts.load(uow.session, actor, alert_id, lock=True)
        if alert.acknowledged_at is None:
            alert.acknowledged_at = now
            alert.acknowledged_by_key_id = actor.key_id
            uow.record(AlertAcknowledged(alert_id=alert.id, occurred_at=now))

    uow.run(work)
    # Read back after the handlers ran: the notices still open were cancelled.
    return get_alert(uow, actor, alert_id)


# Tasks -----------------------------------------------------------------------------------


def list_tasks(uow: UnitOfWork, actor: Actor, *, due_before: datetime | None = None,
               status: TaskStatus | None = TaskStatus.OPEN,
               patient_id: uuid.UUID | None = None, page: int,
               page_size: int) -> Page[Task]:
    """Tasks by due time (staff: all; a provider: those of their own sessions)."""
    query = tasks.visible(actor, select(Task))
    if status is not None:
        query = query.where(Task.status == status)
    if due_before is not None:
        query = query.where(Task.due_at < due_before)
    if patient_id is not None:
        query = query.where(Task.patient_id == patient_id)
    with uow:
        return paginate(uow.session, query.order_by(Task.due_at, Task.id), page=page,
                        page_size=page_size)


def open_rems_monitoring_task(uow: UnitOfWork, event: BookingCompleted) -> None:
    """A completed esketamine session opens its REMS Patient Monitoring Form task (handler
    of ``BookingCompleted``, in the session's transaction)."""
    booking = uow.session.get(Booking, event.booking_id)
    if not _service_type(uow, booking).requires_rems:
        return
    uow.session.add(Task(kind=TaskKind.REMS_MONITORING_FORM, booking_id=booking.id,
                         patient_id=booking.patient_id, provider_id=booking.provider_id,
                         due_at=event.occurred_at + REMS_FORM_DUE))


def raise_attention_alert(uow: UnitOfWork, event: BookingNeedsAttention) -> None:
    """A future booking no longer passes a rule: an alert for clinic staff and the
    patient's providers (handler of ``BookingNeedsAttention``, in the same transaction)."""
    raise_alert(uow, Alert(patient_id=event.patient_id, booking_id=event.booking_id,
                           kind=AlertKind.BOOKING_ATTENTION, code=event.code, urgent=False,
                           raised_at=event.occurred_at))


def raise_calendar_stale_alert(uow: UnitOfWork, event: CalendarWentStale) -> None:
    """A provider's connected calendar went stale: one alert (not urgent: nobody is paged)
    for clinic staff and that provider, naming only the provider and the connection; none
    when this episode's alert is still open (handler of ``CalendarWentStale``)."""
    if _open_calendar_alert(uow, event.connection_id) is not None:
        return
    raise_alert(uow, Alert(patient_id=None, provider_id=event.provider_id,
                           connection_id=event.connection_id, kind=AlertKind.CALENDAR_STALE,
                           urgent=False, raised_at=event.occurred_at))


def resolve_calendar_stale_alert(uow: UnitOfWork, event: CalendarStaleEnded) -> None:
    """The calendar synced again (or was switched off, or removed): its open alert is
    resolved, acknowledged or not (handler of ``CalendarStaleEnded``)."""
    alert = _open_calendar_alert(uow, event.connection_id)
    if alert is not None:
        alert.resolved_at = event.occurred_at


def _open_calendar_alert(uow: UnitOfWork, connection_id: uuid.UUID) -> Alert | None:
    return uow.session.scalar(select(Alert).where(
        Alert.kind == AlertKind.CALENDAR_STALE, Alert.connection_id == connection_id,
        Alert.resolved_at.is_(None)).with_for_update())


def complete_task(uow: UnitOfWork, actor: Actor, task_id: uuid.UUID, *,
                  now: datetime) -> Task:
    def work() -> Task:
        task = tasks.load(uow.session, actor, task_id, lock=True)
        if task.status is TaskStatus.OPEN:
            task.status = TaskStatus.DONE
            task.completed_at = now
            task.completed_by_key_id = actor.key_id
        return task

    return uow.run(work)


# Telehealth visits and in-person evaluations ---------------------------------------------


@dataclass(frozen=True)
class TelehealthFacts:
    """What a telehealth visit shows: its video link, consent, the location attested at
    check-in, and the controlled-substance flag."""

    booking_id: uuid.UUID
    video_url: str
    consent_at: datetime | None
    attested_state: str | None
    attested_at: datetime | None
    prescribing_controlled_substance: bool
    in_person_evaluation_on: date | None
    controlled_substance_flag: bool


def controlled_substance_flagged(*, prescribing: bool, visit_day: date, cutoff: date,
                                 evaluated_on: date | None) -> bool:
    """A telehealth visit that prescribes a controlled substance on or after the cut-off,
    without an in-person evaluation by the same provider on or before that day (pure)."""
    return prescribing and visit_day >= cutoff and (
        evaluated_on is None or evaluated_on > visit_day)


def video_url(template: str, booking_id: uuid.UUID) -> str:
    return template.replace("{booking_id}", str(booking_id))


def _telehealth_booking(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                        lock: bool = False) -> Booking:
    booking = bookings.find_booking(uow, actor, booking_id, lock=lock)
    if _service_type(uow, booking).modality != Modality.TELEHEALTH:
        raise Conflict("This booking is not a telehealth visit.", code="not_telehealth")
    return booking


def _visit(uow: UnitOfWork, booking: Booking, *, create: bool = False
           ) -> TelehealthVisit | None:
    visit = uow.session.scalar(select(TelehealthVisit)
                               .where(TelehealthVisit.booking_id == booking.id))
    if visit is None and create:
        visit = TelehealthVisit(booking_id=booking.id)
        uow.session.add(visit)
    return visit


def _facts(uow: UnitOfWork, booking: Booking, visit: TelehealthVisit | None, *,
           url_template: str, cutoff: date) -> TelehealthFacts:
    location = uow.session.get(Location, booking.location_id)
    visit_day = in_zone(booking.starts_at, location.timezone).date()
    evaluated_on = uow.session.scalar(
        select(InPersonEvaluation.evaluated_on)
        .where(InPersonEvaluation.patient_id == booking.patient_id,
               InPersonEvaluation.provider_id == booking.provider_id,
               InPersonEvaluation.evaluated_on <= visit_day)
        .order_by(InPersonEvaluation.evaluated_on.desc()).limit(1))
    prescribing = bool(visit and visit.prescribing_controlled_substance)
    return TelehealthFacts(
        booking_id=booking.id, video_url=video_url(url_template, booking.id),
        consent_at=visit.consent_at if visit else None,
        attested_state=visit.attested_state if visit else None,
        attested_at=visit.attested_at if visit else None,
        prescribing_controlled_substance=prescribing, in_person_evaluation_on=evaluated_on,
        controlled_substance_flag=controlled_substance_flagged(
            prescribing=prescribing, visit_day=visit_day, cutoff=cutoff,
            evaluated_on=evaluated_on))


def get_telehealth(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                   url_template: str, cutoff: date) -> TelehealthFacts:
    with uow:
        booking = _telehealth_booking(uow, actor, booking_id)
        return _facts(uow, booking, _visit(uow, booking), url_template=url_template,
                      cutoff=cutoff)


def record_consent(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *, now: datetime,
                   url_template: str, cutoff: date) -> TelehealthFacts:
    """The patient's informed consent to a telehealth visit (needed before check-in)."""

    def work() -> TelehealthFacts:
        booking = _telehealth_booking(uow, actor, booking_id, lock=True)
        if booking.status not in (BookingStatus.PENDING, BookingStatus.BOOKED):
            raise InvalidState(f"A {booking.status.value} visit takes no consent.",
                               code="invalid_transition", booking_status=booking.status.value)
        visit = _visit(uow, booking, create=True)
        if visit.consent_at is None:
            visit.consent_at = now
            visit.consent_by_key_id = actor.key_id
        uow.session.flush()
        facts = _facts(uow, booking, visit, url_template=url_template, cutoff=cutoff)
        return facts

    return uow.run(work)


def check_in_telehealth(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                        patient_state: str, now: datetime,
                        check_in_opens: timedelta = bookings.CHECK_IN_OPENS) -> Booking:
    """Check a telehealth visit in, with the patient's location attested again now."""

    def work() -> Booking:
        booking = _telehealth_booking(uow, actor, booking_id, lock=True)
        bookings.apply_transition(uow, actor, booking, "check_in", now=now,
                                  attested_state=patient_state, check_in_opens=check_in_opens)
        return booking

    return uow.run(work)


def mark_prescribing(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID, *,
                     controlled_substance: bool, now: datetime, url_template: str,
                     cutoff: date) -> TelehealthFacts:
    """Mark whether the visit prescribes a controlled substance (flagged without an
    in-person evaluation from the cut-off date on)."""

    def work() -> TelehealthFacts:
        booking = _telehealth_booking(uow, actor, booking_id, lock=True)
        visit = _visit(uow, booking, create=True)
        visit.prescribing_controlled_substance = controlled_substance
        visit.prescribing_marked_at = now
        visit.prescribing_marked_by_key_id = actor.key_id
        uow.session.flush()
        facts = _facts(uow, booking, visit, url_template=url_template, cutoff=cutoff)
        return facts

    return uow.run(work)


def record_evaluation(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID, *,
                      provider_id: uuid.UUID, evaluated_on: date,
                      today: date) -> InPersonEvaluation:
    if evaluated_on > today:
        raise InvalidInput("An evaluation is recorded once it took place.",
                           code="invalid_input", field="evaluated_on")

    def work() -> InPersonEvaluation:
        patient = find_patient(uow, actor, patient_id)
        if not policy.may_evaluate_as(actor, provider_id):
            raise NotFound("No provider with this id.", code="provider_not_found")
        if uow.session.get(Provider, provider_id) is None:
            raise NotFound("No provider with this id.", code="provider_not_found")
        row = InPersonEvaluation(patient_id=patient.id, provider_id=provider_id,
                                 evaluated_on=evaluated_on, recorded_by_key_id=actor.key_id)
        uow.session.add(row)
        return row

    return uow.run(work)


def list_evaluations(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID, *, page: int,
                     page_size: int) -> Page[InPersonEvaluation]:
    with uow:
        patient = find_patient(uow, actor, patient_id)
        query = (select(InPersonEvaluation).where(InPersonEvaluation.patient_id == patient.id)
                 .order_by(InPersonEvaluation.evaluated_on.desc(), InPersonEvaluation.id))
        return paginate(uow.session, query, page=page, page_size=page_size)
