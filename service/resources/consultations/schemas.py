"""Schemas of the clinical records: screening, clearance decisions, vital signs and holds,
side effects, assessments, alerts, tasks, telehealth visits and in-person evaluations."""

from __future__ import annotations

import marshmallow as ma

from service.domain.consultations.models import (
    AlertKind,
    ClearanceStatus,
    DecisionSource,
    Severity,
    SideEffectKind,
    TaskKind,
    TaskStatus,
)
from service.domain.consultations.scoring import Band, Instrument
from service.domain.consultations.screening import Contraindication
from service.domain.consultations.vitals import ABOUT_FORTY_MINUTES, Phase
from service.domain.oncall.escalation import EscalationState
from service.domain.oncall.models import NoticeChannel, NoticeStatus
from service.extensions import PartialUpdate, RecordSchema, Schema
from service.parsing import Integer
from service.resources.fields import STATE, Date, Instant, optional_text, text

# Intake screening and clearance ----------------------------------------------------------

_ANSWER_HELP = {
    Contraindication.ANEURYSMAL_VASCULAR_DISEASE: "Aneurysmal vascular disease (aorta, "
    "intracranial or peripheral arteries): blocks esketamine",
    Contraindication.ARTERIOVENOUS_MALFORMATION: "Arteriovenous malformation: blocks "
    "esketamine",
    Contraindication.INTRACEREBRAL_HEMORRHAGE_HISTORY: "History of intracerebral hemorrhage: "
    "blocks esketamine",
    Contraindication.HYPERSENSITIVITY: "Hypersensitivity to esketamine, ketamine or an "
    "excipient: blocks esketamine",
    Contraindication.UNCONTROLLED_HYPERTENSION: "Uncontrolled hypertension: clinician review",
    Contraindication.PSYCHOSIS_HISTORY: "History of psychosis: clinician review",
    Contraindication.PREGNANCY: "Pregnancy: clinician review",
}


def _answer(condition: Contraindication) -> ma.fields.Boolean:
    return ma.fields.Boolean(load_default=False,
                             metadata={"description": _ANSWER_HELP[condition]})


class ScreeningSchema(RecordSchema):
    """Intake screening of a consultation: a history summary and yes/no contraindications."""

    booking_id = ma.fields.UUID(dump_only=True)
    patient_id = ma.fields.UUID(dump_only=True)
    medical_history = optional_text(2000, metadata={
        "description": "Summary of the medical history reviewed at the consultation"})
    aneurysmal_vascular_disease = _answer(Contraindication.ANEURYSMAL_VASCULAR_DISEASE)
    arteriovenous_malformation = _answer(Contraindication.ARTERIOVENOUS_MALFORMATION)
    intracerebral_hemorrhage_history = _answer(
        Contraindication.INTRACEREBRAL_HEMORRHAGE_HISTORY)
    hypersensitivity = _answer(Contraindication.HYPERSENSITIVITY)
    uncontrolled_hypertension = _answer(Contraindication.UNCONTROLLED_HYPERTENSION)
    psychosis_history = _answer(Contraindication.PSYCHOSIS_HISTORY)
    pregnancy = _answer(Contraindication.PREGNANCY)
    esketamine_contraindicated = ma.fields.Method("_contraindicated", dump_only=True,
                                                  metadata={"type": "boolean"})
    hard_contraindications = ma.fields.Method("_hard", dump_only=True, metadata={
        "type": "array", "items": {"type": "string"}})
    review_flags = ma.fields.Method("_review", dump_only=True, metadata={
        "type": "array", "items": {"type": "string"},
        "description": "Answers that put the patient in front of a clinician"})

    def _contraindicated(self, screening):  # type: ignore[no-untyped-def]
        return screening.outcome().esketamine_contraindicated

    def _hard(self, screening):  # type: ignore[no-untyped-def]
        return [c.value for c in screening.outcome().hard]

    def _review(self, screening):  # type: ignore[no-untyped-def]
        return [c.value for c in screening.outcome().review]


class ScreeningUpdateSchema(PartialUpdate, ScreeningSchema):
    """PATCH body: any subset of the answers."""


class DecisionSchema(Schema):
    id = ma.fields.UUID(dump_only=True)
    patient_id = ma.fields.UUID(dump_only=True)
    decision = ma.fields.Enum(ClearanceStatus, by_value=True, required=True, metadata={
        "description": "cleared (a provider only), not_cleared or needs_review"})
    reason = optional_text(500, metadata={
        "description": "Why the decision rests on no completed consultation or screening "
                       "(required then)"})
    consultation_booking_id = ma.fields.UUID(attribute="consultation_id", allow_none=True,
                                             metadata={
        "description": "The consultation booking (and its intake screening) the decision "
                       "rests on; without a completed one, or clearing without its "
                       "screening, `reason` is required"})
    source = ma.fields.Enum(DecisionSource, by_value=True, dump_only=True, metadata={
        "description": "clinician, or screening when answers flagged the patient for review"})
    decided_at = Instant(dump_only=True)
    decided_by_provider_id = ma.fields.UUID(dump_only=True, allow_none=True)


class EvaluationSchema(Schema):
    id = ma.fields.UUID(dump_only=True)
    patient_id = ma.fields.UUID(dump_only=True)
    provider_id = ma.fields.UUID(required=True)
    evaluated_on = Date(required=True, metadata={"example": "2026-11-02"})
    recorded_at = Instant(dump_only=True)


# Vital signs, holds and side effects -----------------------------------------------------


class VitalSignSchema(Schema):
    id = ma.fields.UUID(dump_only=True)
    booking_id = ma.fields.UUID(dump_only=True)
    patient_id = ma.fields.UUID(dump_only=True)
    phase = ma.fields.Enum(Phase, by_value=True, required=True, metadata={
        "description": "pre (before dosing), during (monitoring) or discharge"})
    minutes_after_dose = Integer(allow_none=True, metadata={
        "description": "During only: minutes since the dose (esketamine needs one at "
                       f"{ABOUT_FORTY_MINUTES[0]}-{ABOUT_FORTY_MINUTES[1]})"})
    systolic = Integer(required=True, metadata={"example": 128})
    diastolic = Integer(required=True, metadata={"example": 82})
    heart_rate = Integer(required=True, metadata={"example": 72})
    spo2 = Integer(required=True, metadata={"example": 98, "description": "%"})
    sedation_moaas = Integer(allow_none=True, metadata={
        "example": 5,
        "description": "Sedation, when assessed: MOAA/S (Modified Observer's Assessment of "
                       "Alertness/Sedation), 5 responds readily to their name, 4 lethargic "
                       "response, 3 only to their name called loudly or repeatedly, 2 only "
                       "to mild prodding or shaking, 1 only to a painful squeeze, 0 none. "
                       "During or after dosing, VITALS_ALERT_MOAAS or below (default 2) "
                       "raises an urgent alert; after a score below DISCHARGE_MOAAS "
                       "(default 5), discharge needs a score of at least it"})
    taken_at = Instant(required=True)
    ride_home_confirmed = ma.fields.Boolean(load_default=False, metadata={
        "description": "Discharge after a treatment: the patient's ride home is there"})
    above_threshold = ma.fields.Boolean(dump_only=True, metadata={
        "description": "Pre-dose blood pressure above the clinic's threshold: the session "
                       "is held until a clinician overrides it"})
    beyond_limits = ma.fields.List(ma.fields.String(), dump_only=True, allow_none=True, metadata={
        "description": "During or after dosing: the values beyond the clinic's watch limits "
                       "(VITALS_ALERT_*; sedation: the MOAA/S), which raised an urgent "
                       "alert"})
    recorded_at = Instant(dump_only=True)


class HoldSchema(Schema):
    id = ma.fields.UUID(dump_only=True)
    booking_id = ma.fields.UUID(dump_only=True)
    reading_id = ma.fields.UUID(dump_only=True)
    held_at = Instant(dump_only=True)
    active = ma.fields.Boolean(dump_only=True)
    overridden_at = Instant(dump_only=True, allow_none=True)
    overridden_by_provider_id = ma.fields.UUID(dump_only=True, allow_none=True)
    override_reason = ma.fields.String(dump_only=True, allow_none=True)


class OverrideSchema(Schema):
    reason = text(500, required=True, metadata={
        "example": "Repeat reading 150/92 after rest; cleared to dose"})


class SideEffectSchema(RecordSchema):
    booking_id = ma.fields.UUID(dump_only=True)
    patient_id = ma.fields.UUID(dump_only=True)
    kind = ma.fields.Enum(SideEffectKind, by_value=True, required=True)
    severity = ma.fields.Enum(Severity, by_value=True, required=True)
    note = optional_text(500)
    noted_at = Instant(metadata={"description": "When it was observed (default: now)"})
    resolved = ma.fields.Boolean(load_default=False)
    resolved_at = Instant(dump_only=True, allow_none=True)


class SideEffectUpdateSchema(PartialUpdate, SideEffectSchema):
    """PATCH body: severity, note, resolved (what was seen, and when, stays as logged)."""

    kind = ma.fields.Enum(SideEffectKind, by_value=True, dump_only=True)
    noted_at = Instant(dump_only=True)
    resolved = ma.fields.Boolean()


# Assessments and alerts ------------------------------------------------------------------


class AssessmentSchema(Schema):
    id = ma.fields.UUID(dump_only=True)
    patient_id = ma.fields.UUID(dump_only=True)
    instrument = ma.fields.Enum(Instrument, by_value=True, required=True)
    answers = ma.fields.List(Integer(), required=True,
                             validate=ma.validate.Length(min=1, max=9), metadata={
                                 "description": "Item answers in form order, each 0-3 "
                                                "(PHQ-9: 9 items; GAD-7: 7)",
                                 "example": [1, 2, 1, 0, 1, 2, 1, 0, 0]})
    taken_at = Instant(metadata={"description": "When it was filled in (default: now)"})
    booking_id = ma.fields.UUID(allow_none=True, metadata={
        "description": "The session it was taken at, if any"})
    total = ma.fields.Integer(dump_only=True)
    band = ma.fields.Enum(Band, by_value=True, dump_only=True)
    urgent = ma.fields.Boolean(dump_only=True, metadata={
        "description": "PHQ-9 item 9 above 0: an urgent alert was raised"})
    recorded_at = Instant(dump_only=True)
    crisis_resources = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "When the answers report thoughts of self-harm: the 988 Suicide & "
                       "Crisis Lifeline text to show the patient at once (null otherwise)"})


class AssessmentQueryArgsSchema(ma.Schema):
    instrument = ma.fields.Enum(Instrument, by_value=True)
    series_id = ma.fields.UUID(metadata={
        "description": "Only those taken at the sessions of this treatment series"})


class AlertNoticeSchema(Schema):
    tier = ma.fields.Integer(required=True, metadata={"description": "The rota's tier told"})
    channel = ma.fields.Enum(NoticeChannel, by_value=True, required=True)
    escalated = ma.fields.Boolean(required=True, metadata={
        "description": "A tier after the first (told because nobody acknowledged in time)"})
    status = ma.fields.Enum(NoticeStatus, by_value=True, required=True, metadata={
        "description": "planned, sending, sent, failed; cancelled (the alert was "
                       "acknowledged before it was due); skipped (the contact left the rota)"})
    reason = ma.fields.String(required=True, allow_none=True, metadata={
        "description": "Why cancelled, skipped or failed (a code)"})
    due_at = Instant(required=True)
    sent_at = Instant(required=True, allow_none=True)


class AlertSchema(Schema):
    id = ma.fields.UUID(dump_only=True)
    patient_id = ma.fields.UUID(dump_only=True, allow_none=True, metadata={
        "description": "The patient it is about; null for an alert about no patient "
                       "(calendar_stale)"})
    assessment_id = ma.fields.UUID(dump_only=True, allow_none=True)
    booking_id = ma.fields.UUID(dump_only=True, allow_none=True)
    kind = ma.fields.Enum(AlertKind, by_value=True, dump_only=True)
    code = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "booking_attention: the code of the rule the booking no longer passes"})
    urgent = ma.fields.Boolean(dump_only=True)
    raised_at = Instant(dump_only=True)
    acknowledged_at = Instant(dump_only=True, allow_none=True)
    provider_id = ma.fields.UUID(dump_only=True, allow_none=True, metadata={
        "description": "calendar_stale: the provider whose connected calendar is stale"})
    connection_id = ma.fields.UUID(dump_only=True, allow_none=True, metadata={
        "description": "calendar_stale: the connected calendar (GET /api/v1/providers/"
                       "{providerId}/calendar-connections/{connectionId}); kept after it "
                       "is removed"})
    resolved_at = Instant(dump_only=True, allow_none=True, metadata={
        "description": "When the service closed it itself (calendar_stale: the calendar "
                       "synced again, was switched off or removed)"})
    notices = ma.fields.List(ma.fields.Nested(AlertNoticeSchema), dump_only=True, metadata={
        "description": "An urgent alert's notices to the on-call rota, in the order they "
                       "fall due (no addresses: the rota holds them)"})
    escalation = ma.fields.Enum(EscalationState, by_value=True, dump_only=True, metadata={
        "description": "Where escalation stands: escalating (the next tier is told at "
                       "next_escalation_at unless acknowledged), stopped_on_acknowledgement, "
                       "every_tier_told (nobody acknowledged it), nobody_on_call (urgent, the "
                       "rota was empty), not_urgent"})
    next_escalation_at = Instant(dump_only=True, allow_none=True, metadata={
        "description": "When the next tier of the rota is told if nobody acknowledges the "
                       "alert; null: nobody more will be"})


class AlertQueryArgsSchema(ma.Schema):
    include_acknowledged = ma.fields.Boolean(load_default=False, metadata={
        "description": "Closed alerts too: acknowledged, or resolved by the service"})
    patient_id = ma.fields.UUID()


# Tasks -----------------------------------------------------------------------------------


class TaskSchema(Schema):
    id = ma.fields.UUID(dump_only=True)
    kind = ma.fields.Enum(TaskKind, by_value=True, dump_only=True)
    booking_id = ma.fields.UUID(dump_only=True)
    patient_id = ma.fields.UUID(dump_only=True)
    provider_id = ma.fields.UUID(dump_only=True)
    status = ma.fields.Enum(TaskStatus, by_value=True, dump_only=True)
    due_at = Instant(dump_only=True)
    created_at = Instant(dump_only=True)
    completed_at = Instant(dump_only=True, allow_none=True)


class TaskQueryArgsSchema(ma.Schema):
    due_before = Instant(metadata={"description": "Tasks due before this time"})
    status = ma.fields.Enum(TaskStatus, by_value=True, load_default=TaskStatus.OPEN)
    patient_id = ma.fields.UUID()


# Telehealth ------------------------------------------------------------------------------


class TelehealthSchema(Schema):
    booking_id = ma.fields.UUID(dump_only=True)
    video_url = ma.fields.String(dump_only=True, metadata={
        "description": "The visit's video link (TELEHEALTH_VIDEO_URL_TEMPLATE)"})
    consent_at = Instant(dump_only=True, allow_none=True)
    attested_state = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "Where the patient attested to be at check-in"})
    attested_at = Instant(dump_only=True, allow_none=True)
    prescribing_controlled_substance = ma.fields.Boolean(dump_only=True)
    in_person_evaluation_on = ma.fields.Date(dump_only=True, allow_none=True, metadata={
        "description": "The latest in-person evaluation by this provider, on or before the "
                       "visit"})
    controlled_substance_flag = ma.fields.Boolean(dump_only=True, metadata={
        "description": "Prescribing a controlled substance by telehealth on or after "
                       "CONTROLLED_SUBSTANCE_CUTOFF without an in-person evaluation"})


class TelehealthCheckInSchema(Schema):
    patient_state = ma.fields.String(required=True, validate=STATE, metadata={
        "example": "AZ", "description": "The state the patient is in right now"})


class PrescribingSchema(Schema):
    controlled_substance = ma.fields.Boolean(required=True, metadata={
        "description": "This visit prescribes a controlled substance"})
