"""Schemas of treatment protocols and series."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from service.domain.bookings.models import BookingStatus
from service.domain.series.models import SeriesStatus
from service.domain.series.protocols import MAX_RRULE_LENGTH, PROTOCOLS
from service.errors import CodedMessage
from service.extensions import RecordSchema, Schema
from service.parsing import Integer
from service.resources.bookings.schemas import ProtocolOverrideSchema
from service.resources.fields import STATE, ClockTime, Instant, ZoneQueryArgsSchema

PROTOCOL_CODES = sorted(PROTOCOLS)


class PhaseSchema(Schema):
    weeks = ma.fields.Integer()
    per_week = ma.fields.Integer()


class ProtocolSchema(Schema):
    code = ma.fields.String(metadata={"example": "iv-induction"})
    name = ma.fields.String()
    description = ma.fields.String()
    sessions = ma.fields.Integer()
    min_gap_days = ma.fields.Integer(metadata={
        "description": "Consecutive sessions are at least this many days apart"})
    window_days = ma.fields.Integer(allow_none=True, metadata={
        "description": "Every session within this many days (the first day is day 1)"})
    phases = ma.fields.List(ma.fields.Nested(PhaseSchema), metadata={
        "description": "A weekly rhythm, weeks counted from the first session's day"})
    after_previous_days = ma.fields.Method("_after_previous", metadata={
        "type": "array", "items": {"type": "integer"}, "nullable": True,
        "description": "Booster: [least, most] days after the previous session"})

    home = ma.fields.Boolean(metadata={
        "description": "Telehealth check-ins of the pill taken at home: booked only with an "
                       "at-home service type (and such a service type only with a home "
                       "protocol or a custom RRULE)"})

    def _after_previous(self, protocol: Any) -> list[int] | None:
        return list(protocol.after_previous) if protocol.after_previous else None


def _error(message: str, code: str, field: str) -> ma.ValidationError:
    return ma.ValidationError(CodedMessage(message, code), field)


class SessionStartSchema(Schema):
    index = Integer(required=True, validate=ma.validate.Range(min=1, max=52), metadata={
        "description": "The session's 1-based number, as the preview numbers it"})
    start = Instant(required=True, metadata={
        "description": "This session's start instead of the planned one (e.g. the preview's "
                       "alternative)"})
    provider_id = ma.fields.UUID(metadata={
        "description": "The session's provider (e.g. the alternative's); default: the "
                       "series' provider, else any licensed one"})


class SeriesRequestSchema(Schema):
    patient_id = ma.fields.UUID(required=True)
    provider_id = ma.fields.UUID(metadata={
        "description": "Omit for any licensed provider (each session names its own)"})
    service_type_id = ma.fields.UUID(required=True)
    location_id = ma.fields.UUID(metadata={
        "description": "Omit when exactly one location offers the service"})
    protocol = ma.fields.String(validate=ma.validate.OneOf(PROTOCOL_CODES), metadata={
        "example": "iv-induction", "description": "A protocol of GET /api/v1/protocols; or "
                                                  "give rrule instead"})
    rrule = ma.fields.String(validate=ma.validate.Length(min=1, max=MAX_RRULE_LENGTH), metadata={
        "example": "FREQ=WEEKLY;BYDAY=MO,TH;COUNT=8",
        "description": "A custom recurrence (RFC 5545 RRULE, DAILY, WEEKLY or MONTHLY, with "
                       "COUNT or UNTIL; at most 52 sessions within one year). first_start is "
                       "its DTSTART"})
    first_start = Instant(required=True, metadata={
        "description": "The first session; its local date (and time, unless preferred_time "
                       "is given) in the location's zone starts the series"})
    preferred_weekdays = ma.fields.List(
        Integer(validate=ma.validate.Range(min=0, max=6)),
        validate=ma.validate.Length(max=7),
        metadata={"description": "Later sessions on these weekdays (0 = Monday); default: "
                                 "the protocol's own cadence", "example": [0, 2, 4]})
    preferred_time = ClockTime(metadata={
        "example": "10:00", "description": "Local wall-clock time of every session in the "
                                           "location's zone (kept across DST changes)"})
    previous_session = Instant(metadata={
        "description": "Booster: the treatment session it follows (default: the patient's "
                       "latest fulfilled or booked treatment)"})
    patient_state = ma.fields.String(validate=STATE, metadata={
        "example": "AZ", "description": "Telehealth: where the patient will be"})
    ride_home_confirmed = ma.fields.Boolean(load_default=False, metadata={
        "description": "Treatments: the patient has a ride home after each session"})
    hold = ma.fields.Boolean(load_default=False, metadata={
        "description": "Book the sessions as `pending` instead of `booked`"})
    note = ma.fields.String(validate=ma.validate.Length(max=500), metadata={
        "description": "Scheduling note on every session; no clinical detail"})
    sessions = ma.fields.List(
        ma.fields.Nested(SessionStartSchema), validate=ma.validate.Length(max=52),
        metadata={"description": "Starts chosen for some sessions instead of the planned "
                                 "ones (the preview's alternatives). Every booking rule "
                                 "applies; together the sessions must keep the protocol "
                                 "(409 protocol_spacing, protocol_window, protocol_rhythm) "
                                 "unless override confirms"})
    override = ma.fields.Nested(ProtocolOverrideSchema, metadata={
        "description": "Confirm chosen starts that break the protocol, with a reason (a "
                       "provider or an admin only; recorded on the series)"})

    @ma.validates_schema
    def _one_recurrence(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("protocol" in data) == ("rrule" in data):
            raise _error("Give either protocol or rrule.", "protocol_or_rrule_required",
                         "protocol")
        if "rrule" in data and data.get("preferred_weekdays"):
            raise _error("A custom rule sets its own days (BYDAY).", "invalid_input",
                         "preferred_weekdays")
        if "previous_session" in data and data.get("protocol") != "booster":
            raise _error("Only a booster follows a previous session.", "invalid_input",
                         "previous_session")


class AlternativeSchema(Schema):
    start = ma.fields.String(metadata={"example": "2027-11-08T10:00:00-07:00",
                                       "format": "date-time"})
    end = ma.fields.String(metadata={"example": "2027-11-08T10:45:00-07:00",
                                     "format": "date-time"})
    provider_id = ma.fields.UUID()
    location_id = ma.fields.UUID()


class RebookSchema(AlternativeSchema):
    keeps_window = ma.fields.Boolean(metadata={
        "description": "The start keeps the protocol's spacing and window"})


class OccurrenceReportSchema(Schema):
    index = ma.fields.Integer(metadata={"description": "1-based session number"})
    start = Instant(metadata={"example": "2027-11-08T10:00:00-07:00",
                                              "description": "In the location's zone"})
    end = Instant(metadata={"example": "2027-11-08T10:45:00-07:00"})
    status = ma.fields.String(metadata={
        "example": "ok", "description": "ok, conflict, chair_full, outside_hours, unlicensed, "
                                        "outside_booking_window, misaligned_start"})
    code = ma.fields.String(allow_none=True, metadata={
        "example": "slot_unavailable", "description": "The booking rule's error code"})
    reason = ma.fields.String(allow_none=True)
    provider_id = ma.fields.UUID(allow_none=True)
    alternative = ma.fields.Nested(AlternativeSchema, allow_none=True, metadata={
        "description": "The nearest free start that keeps the protocol's spacing and window"})


class SeriesPreviewSchema(Schema):
    protocol = ma.fields.String(metadata={"example": "iv-induction"})
    rrule = ma.fields.String(allow_none=True)
    timezone = ma.fields.String(metadata={"example": "America/Phoenix"})
    patient_id = ma.fields.UUID()
    service_type_id = ma.fields.UUID()
    location_id = ma.fields.UUID()
    provider_id = ma.fields.UUID(allow_none=True)
    previous_session = Instant(allow_none=True)
    bookable = ma.fields.Boolean(metadata={"description": "Every session is ok"})
    occurrences = ma.fields.List(ma.fields.Nested(OccurrenceReportSchema))


class SeriesSchema(RecordSchema):
    patient_id = ma.fields.UUID()
    provider_id = ma.fields.UUID(allow_none=True)
    service_type_id = ma.fields.UUID()
    location_id = ma.fields.UUID()
    protocol = ma.fields.String(metadata={"example": "iv-induction"})
    rrule = ma.fields.String(allow_none=True)
    status = ma.fields.Enum(SeriesStatus, by_value=True)
    planned_sessions = ma.fields.Integer()
    first_start = Instant()
    previous_session_at = Instant(allow_none=True)
    cancel_reason = ma.fields.String(allow_none=True)
    cancelled_at = Instant(allow_none=True)


class SessionSchema(Schema):
    id = ma.fields.UUID(metadata={"description": "The booking's id"})
    version = ma.fields.Integer(metadata={"description": "The booking's version (ETag)"})
    status = ma.fields.Enum(BookingStatus, by_value=True)
    start = Instant(metadata={"description": "In the location's zone"})
    end = Instant()
    provider_id = ma.fields.UUID()
    chair_number = ma.fields.Integer(allow_none=True)
    cancel_reason = ma.fields.String(allow_none=True)
    late_cancellation = ma.fields.Boolean()
    suggested_rebook = ma.fields.Nested(RebookSchema, allow_none=True, metadata={
        "description": "A missed session (no-show): a free start to book it again"})


class ProgressSchema(Schema):
    planned = ma.fields.Integer()
    completed = ma.fields.Integer()
    remaining = ma.fields.Integer(metadata={"description": "Pending, booked or checked in"})
    missed = ma.fields.Integer(metadata={"description": "No-shows"})
    cancelled = ma.fields.Integer()


class ProtocolWindowSchema(Schema):
    met = ma.fields.Boolean(metadata={
        "description": "The kept sessions (done or scheduled) are all the planned ones and "
                       "keep the protocol's spacing and window"})
    first_day = ma.fields.Date(allow_none=True)
    last_day = ma.fields.Date(allow_none=True)
    issues = ma.fields.List(ma.fields.String())


class ProtocolOverrideRecordSchema(Schema):
    id = ma.fields.UUID(required=True)
    action = ma.fields.String(required=True, metadata={
        "example": "reschedule", "description": "book, reschedule or cancel"})
    booking_id = ma.fields.UUID(required=True, allow_none=True, metadata={
        "description": "The session changed (none when the series was booked so)"})
    rules = ma.fields.List(ma.fields.String(), required=True, metadata={
        "example": ["protocol_spacing"], "description": "The protocol rules broken"})
    issues = ma.fields.List(ma.fields.String(), required=True)
    session_start = Instant(required=True, allow_none=True, metadata={
        "description": "The session's new start (reschedule) or cancelled start"})
    reason = ma.fields.String(required=True)
    actor_key_id = ma.fields.UUID(required=True, allow_none=True, metadata={
        "description": "The API key of the provider or admin who confirmed"})
    confirmed_at = Instant(required=True)


class SeriesDetailSchema(SeriesSchema):
    timezone = ma.fields.String(metadata={"example": "America/Phoenix"})
    progress = ma.fields.Nested(ProgressSchema)
    next_due = Instant(allow_none=True)
    protocol_window = ma.fields.Nested(ProtocolWindowSchema)
    occurrences = ma.fields.List(ma.fields.Nested(SessionSchema))
    protocol_overrides = ma.fields.List(
        ma.fields.Nested(ProtocolOverrideRecordSchema), required=True, metadata={
            "description": "Changes that break the protocol, each confirmed by a provider "
                           "or an admin with a reason"})


class SeriesQueryArgsSchema(ZoneQueryArgsSchema):
    patient_id = ma.fields.UUID()
    provider_id = ma.fields.UUID()
    status = ma.fields.Enum(SeriesStatus, by_value=True)


class SeriesCancelSchema(Schema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500),
                              metadata={"example": "Patient moved away"})


class SessionCreateSchema(Schema):
    start = Instant(required=True)
    provider_id = ma.fields.UUID(metadata={
        "description": "Default: the series' provider, else the missed session's"})
    patient_state = ma.fields.String(validate=STATE)
    ride_home_confirmed = ma.fields.Boolean(load_default=False)
    note = ma.fields.String(validate=ma.validate.Length(max=500))
