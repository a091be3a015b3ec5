"""Schemas of calendar feed tokens and of the booking changes feed."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from service.domain.bookings.models import BookingStatus
from service.extensions import Schema
from service.parsing import Integer
from service.resources.bookings.schemas import BookingSchema
from service.resources.fields import Instant, text


class CalendarTokenCreateSchema(Schema):
    label = text(100, load_default="Calendar feed", metadata={
        "example": "Work phone", "description": "Your name for the calendar that subscribes"})


class CalendarTokenSchema(Schema):
    id = ma.fields.UUID(dump_only=True)
    provider_id = ma.fields.UUID(dump_only=True, allow_none=True)
    patient_id = ma.fields.UUID(dump_only=True, allow_none=True)
    label = ma.fields.String(dump_only=True)
    created_at = Instant(dump_only=True)
    revoked_at = Instant(dump_only=True, allow_none=True)


class IssuedCalendarTokenSchema(CalendarTokenSchema):
    token = ma.fields.String(dump_only=True, metadata={
        "description": "Shown once, stored only as a hash. Anyone with the feed URL reads "
                       "the feed: share it like a password, revoke it when in doubt.",
        "example": "cal_4mJ0x1rJ0mQk6oVb7gJ8S2kqk9pRzE4n3yH5wL1uT0c"})
    feed_url = ma.fields.String(dump_only=True, metadata={
        "description": "Subscribe to this URL in Google, Outlook or Apple Calendar",
        "example": "https://clinic.example/api/v1/calendars/cal_4mJ0...ics"})


class SyncQueryArgsSchema(ma.Schema):
    sync_token = ma.fields.String(validate=ma.validate.Length(min=1, max=512), metadata={
        "description": "The `next_sync_token` of your last sync: only what changed since. "
                       "Alone: it carries the filters of the sync that issued it."})
    page_token = ma.fields.String(validate=ma.validate.Length(min=1, max=512), metadata={
        "description": "The `next_page_token` of the previous page. Alone."})
    provider_id = ma.fields.UUID(metadata={"description": "Full sync only: one provider"})
    patient_id = ma.fields.UUID(metadata={"description": "Full sync only: one patient"})
    page_size = Integer(load_default=100, validate=ma.validate.Range(min=1, max=500))


TOMBSTONE_FIELDS = ("id", "status", "deleted", "cancelled_at", "updated_at", "version")


class SyncedBookingSchema(BookingSchema):
    class Meta(BookingSchema.Meta):
        dump_required = TOMBSTONE_FIELDS  # a tombstone carries only these

    deleted = ma.fields.Method("_deleted", metadata={
        "type": "boolean",
        "description": "true: a tombstone (the booking was cancelled); drop it. Tombstones "
                       "carry only id, status, deleted, cancelled_at, updated_at, version."})

    @staticmethod
    def _deleted(booking: Any) -> bool:
        return booking.status is BookingStatus.CANCELLED

    @ma.post_dump
    def _tombstone(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if data.get("deleted"):
            return {key: data[key] for key in TOMBSTONE_FIELDS if key in data}
        return data


class SyncPageSchema(Schema):
    items = ma.fields.List(ma.fields.Nested(SyncedBookingSchema))
    next_page_token = ma.fields.String(allow_none=True, metadata={
        "description": "More to fetch now: call again with page_token"})
    next_sync_token = ma.fields.String(allow_none=True, metadata={
        "description": "The last page: keep it, send it as sync_token next time"})
