"""Schemas of the slot search."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import marshmallow as ma

from service.extensions import Schema
from service.parsing import Integer
from service.resources.clinic.schemas import CancellationPolicySchema
from service.resources.fields import STATE, Instant, TimeZone, coded_error, supported


class DateOrInstant(ma.fields.Field):
    """A date (a whole local day) or an offset-aware RFC 3339 time."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).update(
            type="string", example="2026-12-01",
            description="A date (whole day in the answer's zone) or an RFC 3339 time with "
                        "an offset")
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any
                     ) -> date | datetime:
        if not isinstance(value, str) or len(value) > 40:
            raise coded_error("A date (YYYY-MM-DD) or a time with an offset.", "invalid")
        if len(value) == 10:
            try:
                day = date.fromisoformat(value)
            except ValueError:
                raise coded_error("Not a valid date (YYYY-MM-DD).", "invalid") from None
            return supported(day)
        return Instant()._deserialize(value, attr, data, **kwargs)


class SlotQueryArgsSchema(ma.Schema):
    service_type = ma.fields.UUID(required=True, metadata={"description": "Service type id"})
    start = DateOrInstant(required=True)
    end = DateOrInstant(required=True, metadata={
        "description": "Inclusive date, or exclusive time; at most 62 days after start"})
    provider_id = ma.fields.List(ma.fields.UUID(), validate=ma.validate.Length(max=50),
                                 metadata={"description": "Repeatable"})
    location_id = ma.fields.UUID()
    patient_id = ma.fields.UUID(metadata={
        "description": "The patient's own bookings count as busy (patients: always themselves)"})
    patient_state = ma.fields.String(validate=STATE, metadata={
        "example": "AZ", "description": "Where the patient will be (telehealth licensing)"})
    timezone = TimeZone(metadata={"description": "Zone of the answer (default: the "
                                                 "location's, else the clinic's)"})
    limit = Integer(load_default=200, validate=ma.validate.Range(min=1, max=1000))


class SlotSchema(Schema):
    start = Instant(metadata={"example": "2026-12-01T10:00:00-07:00",
                              "description": "In the location's zone (or the one asked)"})
    end = Instant(metadata={"example": "2026-12-01T11:00:00-07:00"})
    provider_id = ma.fields.UUID()
    location_id = ma.fields.UUID()
    late_cancel_from = Instant(metadata={
        "description": "Booked, a cancellation from then on is late"})
    patient_changes_until = Instant(metadata={
        "description": "Booked, the patient may change or cancel it until then"})


class SlotListSchema(Schema):
    service_type_id = ma.fields.UUID()
    cancellation_policy = ma.fields.Nested(CancellationPolicySchema, metadata={
        "description": "The service type's cancellation policy, to show before booking"})
    timezone = ma.fields.String(metadata={
        "example": "America/Phoenix",
        "description": "The zone dates of the range were read in: the one asked for, else "
                       "the location's, else the clinic's"})
    slots = ma.fields.List(ma.fields.Nested(SlotSchema))
    truncated = ma.fields.Boolean(metadata={"description": "More slots exist than `limit`"})
    stale_calendar_provider_ids = ma.fields.List(ma.fields.UUID(), metadata={
        "description": "Providers searched whose connected calendar is stale or not synced "
                       "yet: this answer was computed with a stale source, and may offer "
                       "time their other calendar has taken (the booking re-checks what is "
                       "stored)"})
