"""The event catalogue: every webhook event type with the JSON Schema of its body.

Served at ``GET /api/v1/webhooks/events``; the tests validate real deliveries against it, so
it stays what is actually sent (see ``services.payload``, ``booking_data``, the enqueuers).
"""

from __future__ import annotations

from typing import Any

from service.domain.bookings.models import BookingStatus
from service.domain.calendar.models import WebhookEvent
from service.domain.series.models import SeriesStatus
from service.domain.webhooks.services import API_VERSION

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_INSTANT = {"type": "string", "format": "date-time", "description": "UTC, ending in Z"}
_UUID = {"type": "string", "format": "uuid"}


def _object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": sorted(properties),
            "additionalProperties": False, **extra}


BOOKING = _object({
    "booking_id": _UUID, "start": _INSTANT, "end": _INSTANT,
    "status": {"type": "string", "enum": [s.value for s in BookingStatus]},
})

DATA: dict[WebhookEvent, tuple[str, dict[str, Any]]] = {
    WebhookEvent.BOOKING_CREATED: ("A booking was made.", BOOKING),
    WebhookEvent.BOOKING_RESCHEDULED: ("A booking moved to new times.", BOOKING),
    WebhookEvent.BOOKING_CANCELLED: ("A booking was cancelled.", BOOKING),
    WebhookEvent.BOOKING_NO_SHOW: ("The patient did not come.", BOOKING),
    WebhookEvent.BOOKING_ATTENTION: (
        "A future booking no longer passes a rule (attention: the rule's code).",
        _object({**BOOKING["properties"], "attention": {"type": "string"}})),
    WebhookEvent.ALERT_RAISED: (
        "An alert was raised for clinic staff and providers (urgent: the on-call rota is "
        "told at once and escalated to until someone acknowledges it). No patient data: "
        "read it with GET /api/v1/alerts.",
        _object({"alert_id": _UUID, "urgent": {"type": "boolean"}, "raised_at": _INSTANT})),
    WebhookEvent.ALERT_ACKNOWLEDGED: (
        "Someone acknowledged an alert: escalation stopped.",
        _object({"alert_id": _UUID, "acknowledged_at": _INSTANT})),
    WebhookEvent.SERIES_CREATED: ("A treatment series was booked, with its sessions.", _object({
        "series_id": _UUID,
        "status": {"type": "string", "enum": [s.value for s in SeriesStatus]},
        "planned_sessions": {"type": "integer", "minimum": 1},
        "first_start": _INSTANT,
        "bookings": {"type": "array", "items": BOOKING},
    })),
    WebhookEvent.WAITLIST_OFFERED: (
        "A freed slot is held for a waitlisted patient (the pending booking) until "
        "expires_at.", _object({
            "offer_id": _UUID, "entry_id": _UUID, "booking_id": _UUID, "start": _INSTANT,
            "end": _INSTANT, "expires_at": _INSTANT})),
    WebhookEvent.WAITLIST_FILLED: (
        "The waitlisted patient accepted the offer: the held booking is booked.", _object({
            "offer_id": _UUID, "entry_id": _UUID, "booking_id": _UUID, "start": _INSTANT,
            "end": _INSTANT})),
}


def schema(event: WebhookEvent) -> dict[str, Any]:
    """The JSON Schema of the body of one event type."""
    description, data = DATA[event]
    return {"$schema": JSON_SCHEMA_DIALECT, "title": event.value, "description": description,
            **_object({"id": {**_UUID, "description": "Also sent as webhook-id"},
                       "type": {"const": event.value},
                       "occurred_at": _INSTANT,
                       "api_version": {"const": API_VERSION},
                       "data": data})}


def catalogue() -> list[dict[str, Any]]:
    return [{"type": event.value, "description": DATA[event][0], "schema": schema(event)}
            for event in WebhookEvent]
