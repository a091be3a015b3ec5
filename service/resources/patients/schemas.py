"""Schemas for patients."""

from __future__ import annotations

import marshmallow as ma

from service.errors import CodedMessage
from service.extensions import PartialUpdate, RecordSchema, clinic_today
from service.resources.fields import STATE, Date, Instant, Phone, TimeZone, text


class PatientSchema(RecordSchema):
    first_name = text(100, required=True, metadata={"example": "Jordan"})
    last_name = text(100, required=True, metadata={"example": "Rivera"})
    birth_date = Date(required=True, metadata={"example": "1985-04-12"})
    email = ma.fields.Email(allow_none=True, validate=ma.validate.Length(max=254))
    phone = Phone(allow_none=True)
    timezone = TimeZone(required=True)
    home_state = ma.fields.String(validate=STATE, allow_none=True, metadata={"example": "AZ"})
    sms_consent = ma.fields.Boolean(load_default=False)
    email_consent = ma.fields.Boolean(load_default=False)
    sms_opted_out_at = Instant(dump_only=True, allow_none=True)
    rems_enrolled = ma.fields.Boolean(load_default=False,
                                      metadata={"description": "Enrolled in the Spravato REMS"})
    cleared_for_treatment = ma.fields.Boolean(dump_only=True, metadata={
        "description": "Read-out of the latest clearance decision (cleared by a provider; "
                       "see /patients/{id}/clearance-decisions); never set directly"})
    active = ma.fields.Boolean(load_default=True)

    @ma.validates("birth_date")
    def _born_in_the_past(self, value, **kwargs):  # type: ignore[no-untyped-def]
        if value >= clinic_today() or value.year < 1900:
            raise ma.ValidationError(CodedMessage("A birth date in the past, after 1900.",
                                                  "invalid_birth_date"))


class PatientUpdateSchema(PartialUpdate, PatientSchema):
    """PATCH body: any subset of the fields."""


class PatientQueryArgsSchema(ma.Schema):
    active = ma.fields.Boolean()
    name = ma.fields.String(validate=ma.validate.Length(max=100),
                            metadata={"description": "Part of the first or last name"})
