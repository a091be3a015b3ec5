"""Schemas of webhook subscriptions and their delivery log."""

from __future__ import annotations

import json
from typing import Any

import marshmallow as ma

from service.domain.calendar.models import DeliveryStatus
from service.domain.webhooks.services import EVENTS
from service.extensions import PartialUpdate, RecordSchema, Schema
from service.resources.fields import Instant, optional_text

EVENT = ma.fields.String(validate=ma.validate.OneOf(EVENTS))


class WebhookSchema(RecordSchema):
    url = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000),
                           metadata={"example": "https://ehr.example.com/hooks/clinic",
                                     "description": "http(s); no credentials; no internal "
                                                    "address"})
    events = ma.fields.List(EVENT, required=True,
                            validate=ma.validate.Length(min=1, max=len(EVENTS)),
                            metadata={"example": ["booking.created", "booking.cancelled"]})
    description = optional_text(200, metadata={"example": "EHR appointment sync"})
    active = ma.fields.Boolean(load_default=True, metadata={
        "description": "false: nothing is delivered; set true again after fixing the "
                       "receiver (open deliveries of a disabled subscription are cancelled; "
                       "redeliver them)"})
    disabled_reason = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "delivery_failures (24 hours of failed retries) or disabled_by_user"})
    disabled_at = Instant(dump_only=True, allow_none=True)


class WebhookUpdateSchema(PartialUpdate, WebhookSchema):
    """PATCH body: any subset of url, events, description, active."""


class WebhookCreatedSchema(WebhookSchema):
    secret = ma.fields.String(dump_only=True, metadata={
        "description": "The signing secret: shown once, in this answer only. Verify "
                       "the webhook-signature header with it (Standard Webhooks; see the README).",
        "example": "whsec_Jm3b2y7lqgQX4Sx0QF6mR7uU1yJ0aYq4cB2nK8tZp1E"})


class RotatedSecretSchema(Schema):
    secret = ma.fields.String(required=True, metadata={
        "description": "The new signing secret: shown once, in this answer only",
        "example": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
    previous_secret_expires_at = Instant(required=True, metadata={
        "description": "Until then deliveries carry a signature with the new and one with "
                       "the previous secret (WEBHOOK_SECRET_OVERLAP_HOURS)"})


class EventTypeSchema(Schema):
    type = ma.fields.String(required=True, metadata={"example": "booking.created"})
    description = ma.fields.String(required=True)
    schema = ma.fields.Dict(required=True, metadata={
        "description": "JSON Schema (2020-12) of the delivered body"})


class WebhookQueryArgsSchema(ma.Schema):
    active = ma.fields.Boolean()


class AttemptSchema(Schema):
    attempt = ma.fields.Integer()
    attempted_at = Instant()
    status_code = ma.fields.Integer(allow_none=True)
    error = ma.fields.String(allow_none=True, metadata={"example": "http_503"})
    duration_ms = ma.fields.Integer()


class DeliverySchema(Schema):
    id = ma.fields.UUID(dump_only=True)
    subscription_id = ma.fields.UUID(dump_only=True)
    event_id = ma.fields.UUID(dump_only=True, metadata={
        "description": "Sent as webhook-id: the same for every attempt and redelivery"})
    event_type = ma.fields.String(dump_only=True, metadata={"example": "booking.created"})
    status = ma.fields.Enum(DeliveryStatus, by_value=True, dump_only=True)
    attempts = ma.fields.Integer(dump_only=True)
    next_attempt_at = Instant(dump_only=True)
    last_status_code = ma.fields.Integer(dump_only=True, allow_none=True)
    last_error = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "A machine code: http_<status>, timeout, connection_refused, "
                       "tls_error, dns_error, target_not_allowed, subscription_disabled, "
                       "subscription_inactive"})
    delivered_at = Instant(dump_only=True, allow_none=True)
    redelivery_of = ma.fields.UUID(dump_only=True, allow_none=True)
    created_at = Instant(dump_only=True)
    updated_at = Instant(dump_only=True)


class DeliveryDetailSchema(DeliverySchema):
    payload = ma.fields.Method("_payload", metadata={
        "type": "object", "description": "The body sent (thin: no patient data)"})
    log = ma.fields.List(ma.fields.Nested(AttemptSchema), attribute="attempt_log",
                         metadata={"description": "Every attempt, oldest first"})

    @staticmethod
    def _payload(delivery: Any) -> Any:
        return json.loads(delivery.payload)


class DeliveryQueryArgsSchema(ma.Schema):
    status = ma.fields.List(ma.fields.Enum(DeliveryStatus, by_value=True),
                            validate=ma.validate.Length(max=5),
                            metadata={"description": "Repeatable"})
    event_type = ma.fields.String(validate=ma.validate.OneOf(EVENTS))
