"""Schemas of bookings."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from service.domain.bookings import instructions
from service.domain.bookings.models import Booking, BookingStatus
from service.extensions import RecordSchema, Schema
from service.rendering import (
    NestedInParentZone,
    know_patient_zones,
    location_zone,
    patient_local,
    patient_zone,
)
from service.resources.clinic.schemas import VisitCancellationSchema
from service.resources.fields import STATE, Instant, ZoneQueryArgsSchema


class BookingSchema(RecordSchema):
    patient_id = ma.fields.UUID()
    provider_id = ma.fields.UUID()
    service_type_id = ma.fields.UUID()
    location_id = ma.fields.UUID()
    status = ma.fields.Enum(BookingStatus, by_value=True, metadata={
        "description": "FHIR Appointment status"})
    start = Instant(attribute="starts_at")
    end = Instant(attribute="ends_at", metadata={
        "description": "End of the visit (recovery or monitoring not included)"})
    hold_until = Instant(attribute="hold_ends_at", metadata={
        "description": "End of recovery or monitoring (the patient and chair are held)"})
    leaves_at = Instant(attribute="leaves_at", metadata={
        "description": "When the patient may leave: the visit plus its monitoring or recovery "
                       "(esketamine: 2 h 15 min after the start). Drivers plan for this"})
    chair_number = ma.fields.Integer(allow_none=True)
    patient_state = ma.fields.String(allow_none=True, metadata={
        "description": "Where the patient attested to be (telehealth)"})
    ride_home_confirmed = ma.fields.Boolean()
    note = ma.fields.String(allow_none=True)
    cancel_reason = ma.fields.String(allow_none=True)
    cancelled_at = Instant(allow_none=True)
    late_cancellation = ma.fields.Boolean()
    fee_cents = ma.fields.Integer(allow_none=True, metadata={
        "description": "The fee a late cancellation or a no-show incurred (cents; null: none)"})
    preparation = ma.fields.Method("_preparation", metadata={
        "type": "string",
        "description": "How to prepare: the service type's own preparation and after-care "
                       "instructions (as GET /bookings/{id}/instructions lists them), else "
                       "the generic advice the reminders give (in the clinic eat lightly, "
                       "hydrate, arrange a ride home; on video a quiet, private place)"})
    cancellation = NestedInParentZone(VisitCancellationSchema, metadata={
        "description": "The service type's cancellation policy and what it means for this "
                       "visit now"})
    checked_in_at = Instant(allow_none=True)
    series_id = ma.fields.UUID(allow_none=True)
    attention = ma.fields.String(allow_none=True, metadata={
        "description": "The code of a rule the booking passed when made and no longer passes "
                       "(clearance withdrawn, license lapsed, ...): check-in is refused with "
                       "it until a provider resolves it. null: nothing to look at"})
    attention_since = Instant(allow_none=True)
    attention_resolution = ma.fields.String(allow_none=True, metadata={
        "description": "The reason the last flag was resolved with"})
    attention_resolved_at = Instant(allow_none=True)
    vitals_alert_at = Instant(allow_none=True, metadata={
        "description": "When a reading during or after the dose first went beyond the "
                       "clinic's watch limits (an urgent alert was raised)"})
    timezone = ma.fields.Function(location_zone, metadata={
        "type": "string", "example": "America/Phoenix",
        "description": "The booking's zone (IANA): its location's. Every instant of the "
                       "booking is shown with this zone's offset, unless a read asked for "
                       "another with ?timezone="})
    patient_timezone = ma.fields.Function(patient_zone, metadata={
        "type": "string", "nullable": True, "example": "America/Denver",
        "description": "Telehealth: the patient's zone (IANA); null for a visit in person"})
    patient_local_start = ma.fields.Function(
        lambda booking: patient_local(booking.starts_at, booking), metadata={
            "type": "string", "format": "date-time", "nullable": True,
            "example": "2026-07-01T11:00:00-06:00",
            "description": "Telehealth: the start on the patient's clock (in "
                           "patient_timezone); null for a visit in person"})

    @ma.pre_dump(pass_collection=True)
    def _patient_zones(self, data: Any, many: bool, **kwargs: Any) -> Any:
        know_patient_zones([b for b in (data if many else [data]) if isinstance(b, Booking)])
        return data


    @staticmethod
    def _preparation(booking: Booking) -> str:
        return instructions.advice(booking.service_type)


class BookingCreateSchema(Schema):
    patient_id = ma.fields.UUID(required=True)
    provider_id = ma.fields.UUID(required=True)
    service_type_id = ma.fields.UUID(required=True)
    location_id = ma.fields.UUID(required=True)
    start = Instant(required=True, metadata={
        "description": "A start offered by GET /api/v1/slots; the end is derived"})
    patient_state = ma.fields.String(validate=STATE, metadata={
        "example": "AZ", "description": "Telehealth: the state the patient attests to be "
                                        "in at the visit time (Arizona, or a state where "
                                        "the provider is licensed)"})
    ride_home_confirmed = ma.fields.Boolean(load_default=False, metadata={
        "description": "Treatments: the patient has a ride home"})
    hold = ma.fields.Boolean(load_default=False, metadata={
        "description": "Create as `pending` (held until confirmed) instead of `booked`"})
    note = ma.fields.String(validate=ma.validate.Length(max=500), metadata={
        "description": "Scheduling note; no clinical detail"})


class BookingQueryArgsSchema(ZoneQueryArgsSchema):
    provider_id = ma.fields.UUID()
    patient_id = ma.fields.UUID()
    status = ma.fields.List(ma.fields.Enum(BookingStatus, by_value=True),
                            validate=ma.validate.Length(max=6),
                            metadata={"description": "Repeatable"})
    starts_from = Instant(metadata={"description": "Visits starting at or after"})
    starts_before = Instant(metadata={"description": "Visits starting before"})
    updated_since = Instant(metadata={"description": "Changed at or after"})


class ProtocolOverrideSchema(Schema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500),
                              metadata={"example": "Patient travelling; clinically acceptable "
                                                   "to extend the induction by 3 days"})


OVERRIDE_DESCRIPTION = (
    "A session of a treatment series: confirm a change that breaks the series' protocol "
    "(409 protocol_spacing, protocol_window or protocol_rhythm) with a reason. A provider or "
    "an admin only; recorded on the series (protocol_overrides).")


class CancelSchema(Schema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500),
                              metadata={"example": "Patient request: schedule conflict"})
    override = ma.fields.Nested(ProtocolOverrideSchema,
                                metadata={"description": OVERRIDE_DESCRIPTION})


class ResolveAttentionSchema(Schema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500),
                              metadata={"example": "Re-cleared at today's consultation"})


class RescheduleSchema(Schema):
    start = Instant(required=True)
    patient_state = ma.fields.String(validate=STATE)
    override = ma.fields.Nested(ProtocolOverrideSchema,
                                metadata={"description": OVERRIDE_DESCRIPTION})


class BookingInstructionsSchema(Schema):
    booking_id = ma.fields.UUID(required=True)
    service_type_id = ma.fields.UUID(required=True)
    status = ma.fields.Enum(BookingStatus, by_value=True, required=True)
    timezone = ma.fields.String(required=True, metadata={
        "description": "The location's zone: every instant here carries its offset"})
    arrive_at = Instant(required=True, metadata={
        "description": "Arrive by then (the service type's arrive_early_minutes before the "
                       "start: check-in, readings before the dose)"})
    start = Instant(attribute="starts_at", required=True, metadata={
        "description": "The visit (the dose) starts"})
    end = Instant(attribute="ends_at", required=True, metadata={
        "description": "The visit (the dose) ends"})
    leaves_at = Instant(required=True, metadata={
        "description": "The patient may leave at about this time: the visit plus its "
                       "monitoring or recovery"})
    stay_minutes = ma.fields.Integer(required=True, metadata={
        "description": "From arrival to leaving: what the patient and their driver plan for"})
    ride_home_required = ma.fields.Boolean(required=True, metadata={
        "description": "A treatment in the clinic: arrive with a driver, do not drive home"})
    ride_home_confirmed = ma.fields.Boolean(required=True)
    route = ma.fields.String(required=True, allow_none=True, metadata={
        "description": "How the dose is given (iv, intranasal, oral, sublingual); null: none"})
    at_home = ma.fields.Boolean(required=True, metadata={
        "description": "The pill taken at home: this visit is its telehealth check-in"})
    preparation = ma.fields.List(ma.fields.String(), required=True, metadata={
        "description": "Before the visit, in the clinic's words"})
    after_care = ma.fields.List(ma.fields.String(), required=True, metadata={
        "description": "After the visit, in the clinic's words"})
