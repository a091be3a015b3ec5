"""The clinical side of visits, over HTTP.

- consultations: a consultation's intake screening, the clearance decision, telehealth
  (video link, consent, check-in with the location re-attested, prescribing) and in-person
  evaluations;
- sessions: vital signs, the blood pressure hold, side effects, follow-up tasks;
- assessments: PHQ-9 / GAD-7 and their urgent alerts.

Clinical records are for clinic staff and providers; a patient sees their own assessments,
vital signs and telehealth link. Someone else's record answers 404.
"""

from __future__ import annotations

import uuid

from flask import current_app
from flask.views import MethodView

from service.auth import authorize
from service.config import Settings
from service.db import utcnow
from service.domain.consultations import services
from service.domain.consultations.policy import alerts, policy, tasks
from service.domain.consultations.vitals import Threshold, WatchLimits
from service.extensions import Blueprint, clinic_today, current_actor, unit_of_work
from service.resources.bookings.schemas import BookingSchema
from service.resources.common import (
    ETAG_HEADER,
    IF_MATCH,
    LOCATION_HEADER,
    check_in_opens,
    check_read_back,
    etag,
    expected_version,
    not_modified,
    paged,
)
from service.resources.consultations.schemas import (
    AlertQueryArgsSchema,
    AlertSchema,
    AssessmentQueryArgsSchema,
    AssessmentSchema,
    DecisionSchema,
    EvaluationSchema,
    HoldSchema,
    OverrideSchema,
    PrescribingSchema,
    ScreeningSchema,
    ScreeningUpdateSchema,
    SideEffectSchema,
    SideEffectUpdateSchema,
    TaskQueryArgsSchema,
    TaskSchema,
    TelehealthCheckInSchema,
    TelehealthSchema,
    VitalSignSchema,
)
from service.resources.idempotency import idempotent

consultations_blp = Blueprint(
    "consultations", __name__, url_prefix="/api/v1",
    description="A consultation's intake screening (hard contraindications block esketamine; "
                "others flag the patient for review), the clearance decision that treatment "
                "bookings need (only a provider clears), telehealth visits (video link, "
                "consent before check-in, location re-attested at check-in, controlled-"
                "substance flag) and in-person evaluations.")
sessions_blp = Blueprint(
    "sessions", __name__, url_prefix="/api/v1",
    description="Treatment sessions: vital signs before, during and after dosing (a pre-dose "
                "blood pressure above BP_HOLD_THRESHOLD holds the session until a clinician "
                "overrides it), side effects, and follow-up tasks such as the REMS Patient "
                "Monitoring Form due within 7 days of each esketamine session.")
assessments_blp = Blueprint(
    "assessments", __name__, url_prefix="/api/v1",
    description="PHQ-9 and GAD-7, scored by the service; a non-zero PHQ-9 item 9 raises an "
                "urgent alert listed for staff and providers until acknowledged.")


def _settings() -> Settings:
    return current_app.config["SETTINGS"]


def _threshold() -> Threshold:
    settings = _settings()
    return Threshold(systolic=settings.bp_hold_systolic, diastolic=settings.bp_hold_diastolic)


def _watch_limits() -> WatchLimits:
    settings = _settings()
    return WatchLimits(systolic_max=settings.vitals_alert_systolic,
                       diastolic_max=settings.vitals_alert_diastolic,
                       heart_rate_max=settings.vitals_alert_heart_rate,
                       spo2_min=settings.vitals_alert_spo2,
                       moaas_alert=settings.vitals_alert_moaas,
                       discharge_moaas=settings.discharge_moaas)


def _telehealth_settings() -> dict[str, object]:
    settings = _settings()
    return {"url_template": settings.telehealth_video_url_template,
            "cutoff": settings.controlled_substance_cutoff}


# Screening and clearance -----------------------------------------------------------------


@consultations_blp.route("/bookings/<uuid:booking_id>/screening")
class BookingScreening(MethodView):
    @not_modified
    @consultations_blp.response(200, ScreeningSchema, headers=ETAG_HEADER)
    @consultations_blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read_screening")
    def get(self, booking_id: uuid.UUID):
        """Get a consultation's intake screening"""
        screening = services.get_screening(unit_of_work(read_only=True), current_actor(),
                                           booking_id)
        return screening, etag(screening)

    @idempotent
    @consultations_blp.arguments(ScreeningSchema)
    @consultations_blp.response(201, ScreeningSchema, headers=ETAG_HEADER)
    @consultations_blp.alt_response(404, response="NOT_FOUND")
    @consultations_blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "record_screening")
    def post(self, data, booking_id: uuid.UUID):
        """Record a consultation's intake screening

        Answers that need a clinician's review (uncontrolled hypertension, psychosis
        history, pregnancy) record a "needs_review" decision for the patient at once.
        """
        history = data.pop("medical_history", None)
        screening = services.record_screening(unit_of_work(), current_actor(), booking_id,
                                              answers=data, medical_history=history,
                                              now=utcnow())
        return screening, 201, etag(screening)

    @consultations_blp.arguments(ScreeningUpdateSchema)
    @consultations_blp.response(200, ScreeningSchema, headers=ETAG_HEADER)
    @consultations_blp.alt_response(404, response="NOT_FOUND")
    @consultations_blp.alt_response(412, response="PRECONDITION_FAILED")
    @consultations_blp.alt_response(428, response="PRECONDITION_REQUIRED")
    @consultations_blp.doc(parameters=[IF_MATCH])
    @authorize(policy, "update_screening")
    def patch(self, changes, booking_id: uuid.UUID):
        """Correct a screening's answers (send If-Match)

        A screening read by GET may be sent back whole: read-only fields are ignored when
        they equal the current values, refused (422 read_only_field) otherwise."""
        check_read_back(changes, lambda: services.get_screening(
            unit_of_work(read_only=True), current_actor(), booking_id))
        screening = services.update_screening(
            unit_of_work(), current_actor(), booking_id, expected_version=expected_version(),
            changes=changes, now=utcnow())
        return screening, etag(screening)


@consultations_blp.route("/patients/<uuid:patient_id>/clearance-decisions")
class ClearanceDecisions(MethodView):
    @consultations_blp.response(200, DecisionSchema(many=True))
    @consultations_blp.alt_response(404, response="NOT_FOUND")
    @consultations_blp.paginate()
    @authorize(policy, "list_decisions")
    def get(self, patient_id: uuid.UUID, pagination_parameters):
        """List a patient's clearance decisions, newest (the one that stands) first"""
        return paged(services.list_decisions, pagination_parameters, patient_id)

    @idempotent
    @consultations_blp.arguments(DecisionSchema)
    @consultations_blp.response(201, DecisionSchema)
    @consultations_blp.alt_response(404, response="NOT_FOUND")
    @consultations_blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "record_decision")
    def post(self, data, patient_id: uuid.UUID):
        """Record a clearance decision (only a provider can clear)

        The latest decision gates treatment bookings and is read out as the patient's
        `cleared_for_treatment`. It cites the consultation booking it rests on; one not
        completed, none, or clearing without its screening needs a `reason`. Any provider
        of the clinic may record it, for any patient.
        """
        return services.record_decision(
            unit_of_work(), current_actor(), patient_id, decision=data["decision"],
            reason=data.get("reason"), consultation_id=data.get("consultation_id"),
            now=utcnow()), 201


@consultations_blp.route("/patients/<uuid:patient_id>/in-person-evaluations")
class InPersonEvaluations(MethodView):
    @consultations_blp.response(200, EvaluationSchema(many=True))
    @consultations_blp.alt_response(404, response="NOT_FOUND")
    @consultations_blp.paginate()
    @authorize(policy, "list_evaluations")
    def get(self, patient_id: uuid.UUID, pagination_parameters):
        """List a patient's in-person evaluations"""
        return paged(services.list_evaluations, pagination_parameters, patient_id)

    @idempotent
    @consultations_blp.arguments(EvaluationSchema)
    @consultations_blp.response(201, EvaluationSchema)
    @consultations_blp.alt_response(404, response="NOT_FOUND")
    @consultations_blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "record_evaluation")
    def post(self, data, patient_id: uuid.UUID):
        """Record an in-person evaluation of the patient by a provider, on a date"""
        return services.record_evaluation(
            unit_of_work(), current_actor(), patient_id, provider_id=data["provider_id"],
            evaluated_on=data["evaluated_on"], today=clinic_today()), 201


# Telehealth ------------------------------------------------------------------------------


@consultations_blp.route("/bookings/<uuid:booking_id>/telehealth")
class Telehealth(MethodView):
    @consultations_blp.response(200, TelehealthSchema)
    @consultations_blp.alt_response(404, response="NOT_FOUND")
    @consultations_blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "read_telehealth")
    def get(self, booking_id: uuid.UUID):
        """A telehealth visit: video link, consent, attested location, prescribing flag"""
        return services.get_telehealth(unit_of_work(read_only=True), current_actor(),
                                       booking_id, **_telehealth_settings())


@consultations_blp.route("/bookings/<uuid:booking_id>/telehealth/consent")
class TelehealthConsent(MethodView):
    @idempotent
    @consultations_blp.response(200, TelehealthSchema)
    @consultations_blp.alt_response(404, response="NOT_FOUND")
    @consultations_blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "record_consent")
    def post(self, booking_id: uuid.UUID):
        """Record the patient's informed consent to the telehealth visit (before check-in)"""
        return services.record_consent(unit_of_work(), current_actor(), booking_id,
                                       now=utcnow(), **_telehealth_settings())


@consultations_blp.route("/bookings/<uuid:booking_id>/telehealth/check-in")
class TelehealthCheckIn(MethodView):
    @idempotent
    @consultations_blp.arguments(TelehealthCheckInSchema)
    @consultations_blp.response(200, BookingSchema, headers=ETAG_HEADER)
    @consultations_blp.alt_response(404, response="NOT_FOUND")
    @consultations_blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "check_in_telehealth")
    def post(self, data, booking_id: uuid.UUID):
        """Check a telehealth visit in, the patient re-attesting where they are

        Needs the patient's consent on record; the state must be Arizona or one where the
        provider holds an active license on the visit's date.
        """
        booking = services.check_in_telehealth(unit_of_work(), current_actor(), booking_id,
                                               patient_state=data["patient_state"],
                                               now=utcnow(), check_in_opens=check_in_opens())
        return booking, etag(booking)


@consultations_blp.route("/bookings/<uuid:booking_id>/telehealth/prescribing")
class TelehealthPrescribing(MethodView):
    @idempotent
    @consultations_blp.arguments(PrescribingSchema)
    @consultations_blp.response(200, TelehealthSchema)
    @consultations_blp.alt_response(404, response="NOT_FOUND")
    @consultations_blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "mark_prescribing")
    def post(self, data, booking_id: uuid.UUID):
        """Mark whether the visit prescribes a controlled substance"""
        return services.mark_prescribing(
            unit_of_work(), current_actor(), booking_id,
            controlled_substance=data["controlled_substance"], now=utcnow(),
            **_telehealth_settings())


# Vital signs, holds, side effects, tasks -------------------------------------------------


@sessions_blp.route("/bookings/<uuid:booking_id>/vitals")
class BookingVitals(MethodView):
    @sessions_blp.response(200, VitalSignSchema(many=True))
    @sessions_blp.alt_response(404, response="NOT_FOUND")
    @sessions_blp.paginate()
    @authorize(policy, "list_vitals")
    def get(self, booking_id: uuid.UUID, pagination_parameters):
        """List a session's vital signs in the order they were taken"""
        return paged(services.list_vitals, pagination_parameters, booking_id)

    @idempotent
    @sessions_blp.arguments(VitalSignSchema)
    @sessions_blp.response(201, VitalSignSchema)
    @sessions_blp.alt_response(404, response="NOT_FOUND")
    @sessions_blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "record_vitals")
    def post(self, data, booking_id: uuid.UUID):
        """Record a reading (pre, during with minutes after dose, discharge)

        Physiologically impossible values answer 422 `implausible_vitals`. A pre-dose blood
        pressure above the clinic's threshold (BP_HOLD_THRESHOLD, default 160/100) holds the
        session: it cannot be completed until a clinician overrides the hold.
        """
        values = services.VitalsInput(**data)
        return services.record_vitals(unit_of_work(), current_actor(), booking_id, values,
                                      threshold=_threshold(), limits=_watch_limits(),
                                      now=utcnow()), 201


@sessions_blp.route("/bookings/<uuid:booking_id>/holds")
class BookingHolds(MethodView):
    @sessions_blp.response(200, HoldSchema(many=True))
    @sessions_blp.alt_response(404, response="NOT_FOUND")
    @sessions_blp.paginate()
    @authorize(policy, "list_holds")
    def get(self, booking_id: uuid.UUID, pagination_parameters):
        """List a session's blood pressure holds (active or overridden)"""
        return paged(services.list_holds, pagination_parameters, booking_id)


@sessions_blp.route("/bookings/<uuid:booking_id>/holds/override")
class HoldOverride(MethodView):
    @idempotent
    @sessions_blp.arguments(OverrideSchema)
    @sessions_blp.response(200, HoldSchema)
    @sessions_blp.alt_response(404, response="NOT_FOUND")
    @sessions_blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "override_hold")
    def post(self, data, booking_id: uuid.UUID):
        """Override the session's active hold, with a reason (a provider only)"""
        return services.override_hold(unit_of_work(), current_actor(), booking_id,
                                      reason=data["reason"], now=utcnow())


@sessions_blp.route("/bookings/<uuid:booking_id>/side-effects")
class SideEffects(MethodView):
    @sessions_blp.response(200, SideEffectSchema(many=True))
    @sessions_blp.alt_response(404, response="NOT_FOUND")
    @sessions_blp.paginate()
    @authorize(policy, "list_side_effects")
    def get(self, booking_id: uuid.UUID, pagination_parameters):
        """List a session's side effects"""
        return paged(services.list_side_effects, pagination_parameters, booking_id)

    @idempotent
    @sessions_blp.arguments(SideEffectSchema)
    @sessions_blp.response(201, SideEffectSchema, headers={**ETAG_HEADER, **LOCATION_HEADER})
    @sessions_blp.alt_response(404, response="NOT_FOUND")
    @sessions_blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "log_side_effect")
    def post(self, data, booking_id: uuid.UUID):
        """Log a side effect of the session"""
        row = services.log_side_effect(
            unit_of_work(), current_actor(), booking_id, kind=data["kind"],
            severity=data["severity"], note=data.get("note"), noted_at=data.get("noted_at"),
            resolved=data["resolved"], now=utcnow())
        return row, 201, {**etag(row), "Location":
                          f"/api/v1/bookings/{booking_id}/side-effects/{row.id}"}


@sessions_blp.route("/bookings/<uuid:booking_id>/side-effects/<uuid:side_effect_id>")
class SideEffectById(MethodView):
    @sessions_blp.arguments(SideEffectUpdateSchema)
    @sessions_blp.response(200, SideEffectSchema, headers=ETAG_HEADER)
    @sessions_blp.alt_response(404, response="NOT_FOUND")
    @sessions_blp.alt_response(412, response="PRECONDITION_FAILED")
    @sessions_blp.alt_response(428, response="PRECONDITION_REQUIRED")
    @sessions_blp.doc(parameters=[IF_MATCH])
    @authorize(policy, "update_side_effect")
    def patch(self, changes, booking_id: uuid.UUID, side_effect_id: uuid.UUID):
        """Update a side effect: severity, note, resolved (send If-Match)

        One read from the list may be sent back whole: read-only fields are ignored when
        they equal the current values, refused (422 read_only_field) otherwise."""
        check_read_back(changes, lambda: services.get_side_effect(
            unit_of_work(read_only=True), current_actor(), booking_id, side_effect_id))
        row = services.update_side_effect(
            unit_of_work(), current_actor(), booking_id, side_effect_id,
            expected_version=expected_version(), changes=changes, now=utcnow())
        return row, etag(row)


@sessions_blp.route("/tasks")
class Tasks(MethodView):
    @sessions_blp.arguments(TaskQueryArgsSchema, location="query")
    @sessions_blp.response(200, TaskSchema(many=True))
    @sessions_blp.paginate()
    @authorize(tasks, "list")
    def get(self, args, pagination_parameters):
        """List tasks by due time (open ones unless asked; a provider sees their own)"""
        return paged(services.list_tasks, pagination_parameters, **args)


@sessions_blp.route("/tasks/<uuid:task_id>/complete")
class TaskCompletion(MethodView):
    @idempotent
    @sessions_blp.response(200, TaskSchema)
    @sessions_blp.alt_response(404, response="NOT_FOUND")
    @authorize(tasks, "complete")
    def post(self, task_id: uuid.UUID):
        """Mark a task done"""
        return services.complete_task(unit_of_work(), current_actor(), task_id, now=utcnow())


# Assessments and alerts ------------------------------------------------------------------


@assessments_blp.route("/patients/<uuid:patient_id>/assessments")
class Assessments(MethodView):
    @assessments_blp.arguments(AssessmentQueryArgsSchema, location="query")
    @assessments_blp.response(200, AssessmentSchema(many=True))
    @assessments_blp.alt_response(404, response="NOT_FOUND")
    @assessments_blp.paginate()
    @authorize(policy, "list_assessments")
    def get(self, args, patient_id: uuid.UUID, pagination_parameters):
        """List a patient's assessments in time order (filter one instrument for a trend)"""
        return paged(services.list_assessments, pagination_parameters, patient_id, **args)

    @idempotent
    @assessments_blp.arguments(AssessmentSchema)
    @assessments_blp.response(201, AssessmentSchema)
    @assessments_blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "submit_assessment")
    def post(self, data, patient_id: uuid.UUID):
        """Submit a PHQ-9 or GAD-7 (a patient may submit their own); the service scores it"""
        return services.submit_assessment(
            unit_of_work(), current_actor(), patient_id, instrument=data["instrument"],
            answers=data["answers"], taken_at=data.get("taken_at"),
            booking_id=data.get("booking_id"), now=utcnow()), 201


@assessments_blp.route("/alerts")
class Alerts(MethodView):
    @assessments_blp.arguments(AlertQueryArgsSchema, location="query")
    @assessments_blp.response(200, AlertSchema(many=True))
    @assessments_blp.paginate()
    @authorize(alerts, "list")
    def get(self, args, pagination_parameters):
        """List alerts not yet acknowledged nor resolved, oldest first (a provider: their
        patients', and their own calendars' calendar_stale alerts)"""
        return paged(services.list_alerts, pagination_parameters, **args)


@assessments_blp.route("/alerts/<uuid:alert_id>")
class AlertById(MethodView):
    @assessments_blp.response(200, AlertSchema)
    @assessments_blp.alt_response(404, response="NOT_FOUND")
    @authorize(alerts, "read")
    def get(self, alert_id: uuid.UUID):
        """Read an alert and where its escalation to the on-call rota stands"""
        return services.get_alert(unit_of_work(), current_actor(), alert_id)


@assessments_blp.route("/alerts/<uuid:alert_id>/acknowledge")
class AlertAcknowledgement(MethodView):
    @idempotent
    @assessments_blp.response(200, AlertSchema)
    @assessments_blp.alt_response(404, response="NOT_FOUND")
    @authorize(alerts, "acknowledge")
    def post(self, alert_id: uuid.UUID):
        """Acknowledge an alert (someone is taking care of it)"""
        return services.acknowledge_alert(unit_of_work(), current_actor(), alert_id,
                                          now=utcnow())
