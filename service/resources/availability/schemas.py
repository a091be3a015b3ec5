"""Schemas of provider availability: weekly hours, date overrides and time off."""

from __future__ import annotations

import marshmallow as ma

from service.domain.availability.services import MAX_OVERRIDE_WINDOWS, MAX_WEEKLY_RULES
from service.errors import CodedMessage
from service.extensions import RecordSchema, Schema
from service.parsing import Integer
from service.resources.fields import ClockTime, Date, Instant, optional_text

MAX_WINDOWS_PER_DAY = 48


def _clock(example: str) -> ma.fields.Time:
    return ClockTime(required=True,
                          metadata={"description": "Local wall-clock time at the location, "
                                                   "HH:MM", "example": example})


def _end_after_start(data: dict, start: str, end: str) -> None:
    if start in data and end in data and not data[start] < data[end]:
        raise ma.ValidationError(
            CodedMessage("The end must come after the start.", "invalid_time_range"), end)


class HoursWindowSchema(Schema):
    start = _clock("09:00")
    end = _clock("17:00")

    @ma.validates_schema
    def _in_order(self, data: dict, **kwargs: object) -> None:
        _end_after_start(data, "start", "end")


class WeeklyRuleSchema(Schema):
    id = ma.fields.UUID(dump_only=True)
    location_id = ma.fields.UUID(required=True)
    weekday = Integer(required=True, validate=ma.validate.Range(min=0, max=6),
                      metadata={"description": "0 = Monday ... 6 = Sunday"})
    start = _clock("09:00")
    end = _clock("17:00")

    @ma.validates_schema
    def _in_order(self, data: dict, **kwargs: object) -> None:
        _end_after_start(data, "start", "end")


class DateOverrideSchema(Schema):
    location_id = ma.fields.UUID(required=True)
    day = Date(required=True, metadata={"description": "Local date, today or later"})
    hours = ma.fields.List(
        ma.fields.Nested(HoursWindowSchema), required=True,
        validate=ma.validate.Length(max=MAX_WINDOWS_PER_DAY),
        metadata={"description": "Hours worked at this location that day instead of the "
                                 "weekly hours; an empty list means not working there."})


class AvailabilitySchema(Schema):
    """A provider's whole schedule: PUT replaces all weekly hours and all overrides from
    today onwards (past overrides are kept as history)."""

    provider_id = ma.fields.UUID(dump_only=True)
    weekly = ma.fields.List(
        ma.fields.Nested(WeeklyRuleSchema), required=True,
        validate=ma.validate.Length(max=MAX_WEEKLY_RULES),
        metadata={"description": "Recurring hours; no two may overlap on the same weekday, "
                                 "even at different locations."})
    overrides = ma.fields.List(
        ma.fields.Nested(DateOverrideSchema), required=True,
        validate=ma.validate.Length(max=MAX_OVERRIDE_WINDOWS),
        metadata={"description": "Date overrides, one per location and day (at most "
                                 f"{MAX_OVERRIDE_WINDOWS} windows in all)."})


class TimeOffSchema(RecordSchema):
    provider_id = ma.fields.UUID(dump_only=True)
    starts_at = Instant(required=True)
    ends_at = Instant(required=True, metadata={"example": "2026-12-05T00:00:00-07:00",
                                               "description": "Exclusive; at most 366 days "
                                                              "after starts_at"})
    reason = optional_text(200, metadata={"description": "Not shown to patients; no "
                                                         "clinical detail.",
                                          "example": "Conference"})

    @ma.validates_schema
    def _in_order(self, data: dict, **kwargs: object) -> None:
        _end_after_start(data, "starts_at", "ends_at")


class TimeOffQueryArgsSchema(ma.Schema):
    ends_after = Instant(metadata={"description": "Only time off ending after this instant"})
