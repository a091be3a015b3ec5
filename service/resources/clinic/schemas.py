"""Schemas for locations and service types."""

from __future__ import annotations

import marshmallow as ma

from service.domain.clinic.models import CancellationOutcome, LocationKind, Route
from service.domain.consultations.screening import Contraindication
from service.domain.providers.licensing import Modality
from service.extensions import PartialUpdate, RecordSchema, Schema
from service.parsing import Integer
from service.resources.fields import STATE, Instant, TimeZone, optional_text, text


class LocationSchema(RecordSchema):
    name = text(200, required=True, metadata={"example": "Phoenix - Camelback"})
    kind = ma.fields.Enum(LocationKind, by_value=True, required=True)
    timezone = TimeZone(required=True)
    address_line1 = optional_text(200)
    address_line2 = optional_text(200)
    city = optional_text(100)
    state = ma.fields.String(validate=STATE, allow_none=True, metadata={"example": "AZ"})
    postal_code = ma.fields.String(validate=ma.validate.Regexp(r"^\d{5}(-\d{4})?$"),
                                   allow_none=True, metadata={"example": "85016"})
    chairs = Integer(load_default=0, validate=ma.validate.Range(min=0, max=100),
                     metadata={"description": "Treatment chairs (0 for virtual)"})
    rems_certified = ma.fields.Boolean(load_default=False,
                                       metadata={"description": "Spravato REMS-certified site"})
    active = ma.fields.Boolean(load_default=True)


class LocationUpdateSchema(PartialUpdate, LocationSchema):
    """PATCH body: any subset of the fields."""


class LocationQueryArgsSchema(ma.Schema):
    active = ma.fields.Boolean()
    kind = ma.fields.Enum(LocationKind, by_value=True)


class ReminderPlanSchema(Schema):
    confirmation = ma.fields.Boolean(load_default=True,
                                     metadata={"description": "Send a confirmation at once"})
    hours_before = ma.fields.List(
        Integer(validate=ma.validate.Range(min=1, max=24 * 14)),
        load_default=lambda: [72, 24, 2], validate=ma.validate.Length(max=6))
    next_day_check_in = ma.fields.Boolean(
        load_default=False, metadata={"description": "A 'how are you feeling' check the next day"})


class InstructionSchema(Schema):
    text = text(300, required=True, metadata={
        "description": "What the patient reads (the booking's instructions; may name the "
                       "medicine)",
        "example": "Nothing to eat for 2 hours before your dose; clear fluids are fine."})
    reminder = ma.fields.String(
        validate=ma.validate.Length(min=1, max=60), allow_none=True, load_default=None,
        metadata={"description": "A short wording for SMS and e-mail reminders: no drug, "
                                 "diagnosis or treatment word (422 "
                                 "`reminder_wording_not_phi_free`), GSM-7 characters; null "
                                 "keeps the instruction out of reminders",
                  "example": "Nothing to eat 2 h before."})


def _instructions(description: str) -> ma.fields.List:
    return ma.fields.List(ma.fields.Nested(InstructionSchema),
                          validate=ma.validate.Length(max=12), load_default=list,
                          metadata={"description": description})


def _minutes(maximum: int, default: int, description: str) -> Integer:
    return Integer(load_default=default,
                   validate=ma.validate.Range(min=0, max=maximum),
                   metadata={"description": description})


class ServiceTypeSchema(RecordSchema):
    code = ma.fields.String(required=True,
                            validate=ma.validate.Regexp(r"^[a-z0-9][a-z0-9-]{1,39}$"),
                            metadata={"example": "iv-infusion"})
    name = text(200, required=True, metadata={"example": "IV infusion"})
    modality = ma.fields.Enum(Modality, by_value=True, required=True)
    duration_minutes = Integer(required=True, validate=ma.validate.Range(min=5, max=720))
    recovery_minutes = _minutes(720, 0, "Recovery or monitoring after the visit (chair, patient)")
    buffer_before_minutes = _minutes(240, 0, "Provider turnover time before the visit")
    buffer_after_minutes = _minutes(240, 0, "Provider turnover time after the visit")
    min_notice_minutes = _minutes(60 * 24 * 30, 0, "Earliest booking: now + this notice")
    horizon_days = Integer(load_default=90, validate=ma.validate.Range(min=1, max=730),
                           metadata={"description": "Latest booking: today + horizon"})
    slot_interval_minutes = Integer(load_default=15, validate=ma.validate.Range(min=5, max=240))
    late_cancel_hours = _minutes(24 * 14, 24, "Cancellations closer than this are late")
    patient_notice_hours = _minutes(
        720, 0, "A patient changes or cancels their own visit up to this many hours before "
                "it (later: 409 patient_notice_passed; the clinic can)")
    late_cancel_outcome = ma.fields.Enum(
        CancellationOutcome, by_value=True, load_default=CancellationOutcome.FLAG, metadata={
            "description": "What a late cancellation means: none, flag (marked) or fee "
                          "(marked, and late_cancel_fee_cents recorded on the booking)"})
    late_cancel_fee_cents = _minutes(10_000_000, 0, "The late-cancellation fee, in cents")
    no_show_outcome = ma.fields.Enum(
        CancellationOutcome, by_value=True, load_default=CancellationOutcome.FLAG, metadata={
            "description": "What a no-show means: none, flag or fee (no_show_fee_cents)"})
    no_show_fee_cents = _minutes(10_000_000, 0, "The no-show fee, in cents")
    needs_chair = ma.fields.Boolean(load_default=False)
    needs_clearance = ma.fields.Boolean(
        load_default=False, metadata={"description": "Needs a cleared consultation first"})
    requires_rems = ma.fields.Boolean(
        load_default=False, metadata={"description": "Esketamine (Spravato REMS)"})
    contraindications = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf([c.value for c in Contraindication])),
        load_default=list, metadata={
            "description": "Screening answers that rule this kind of visit out (409 "
                           "`contraindicated` when a screening on record names one), e.g. IV "
                           "ketamine: uncontrolled_hypertension, aneurysmal_vascular_disease, "
                           "pregnancy"})
    reminder_plan = ma.fields.Nested(ReminderPlanSchema, load_default=lambda: {
        "confirmation": True, "hours_before": [72, 24, 2], "next_day_check_in": False})
    active = ma.fields.Boolean(load_default=True)
    route = ma.fields.Enum(Route, by_value=True, allow_none=True, load_default=None, metadata={
        "description": "How the dose is given: iv, intranasal (esketamine, with "
                       "requires_rems), oral or sublingual (the pill); null: no dose. A dose in "
                       "the clinic needs a chair, clearance and its route's least monitoring "
                       "(iv 30, intranasal 120, oral and sublingual 60 minutes)"})
    at_home = ma.fields.Boolean(load_default=False, metadata={
        "description": "The pill taken at home under a prescribed protocol: this service type "
                       "is its telehealth check-in (oral or sublingual only; booking it needs "
                       "clearance and a completed in-clinic dose of the same route)"})
    arrive_early_minutes = _minutes(240, 0, "The patient arrives this many minutes before the "
                                            "start (check-in, readings before the dose)")
    preparation = _instructions("Before the visit (eat lightly, hydrate, arrive with a driver, "
                                "bring your REMS card...)")
    after_care = _instructions("After the visit (no driving until the next day...)")

    @ma.post_dump
    def _no_nulls(self, data: dict, **kwargs: object) -> dict:
        for name in ("preparation", "after_care"):
            if data.get(name) is None and name in data:
                data[name] = []
        return data


class ServiceTypeUpdateSchema(PartialUpdate, ServiceTypeSchema):
    """PATCH body: any subset of the fields."""


class ServiceTypeQueryArgsSchema(ma.Schema):
    active = ma.fields.Boolean()
    modality = ma.fields.Enum(Modality, by_value=True)


class CancellationPolicySchema(Schema):
    """A service type's cancellation policy (in slot answers)."""

    patient_notice_hours = ma.fields.Integer(metadata={
        "description": "Patients change or cancel their own visits up to this many hours "
                       "before the start"})
    late_cancel_hours = ma.fields.Integer(metadata={
        "description": "A cancellation closer to the start than this is late"})
    late_cancel_outcome = ma.fields.Enum(CancellationOutcome, by_value=True)
    late_cancel_fee_cents = ma.fields.Integer()
    no_show_outcome = ma.fields.Enum(CancellationOutcome, by_value=True)
    no_show_fee_cents = ma.fields.Integer()


class VisitCancellationSchema(CancellationPolicySchema):
    """The policy and what it means for one visit, as of the answer (in booking answers)."""

    late_from = Instant(metadata={
        "description": "From this instant a cancellation is late"})
    patient_changes_until = Instant(metadata={
        "description": "Until this instant the patient may reschedule or cancel it"})
    late_if_cancelled_now = ma.fields.Boolean()
    fee_if_cancelled_now_cents = ma.fields.Integer(allow_none=True, metadata={
        "description": "The fee a cancellation now would incur (null: none); show it "
                       "before the patient confirms"})
