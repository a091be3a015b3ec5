"""Webhook subscriptions, their delivery log and redelivery: ``/api/v1/webhooks``."""

from __future__ import annotations

import uuid
from datetime import timedelta

from flask import current_app
from flask.views import MethodView

from service.auth import authorize
from service.db import utcnow
from service.domain.webhooks import services as webhooks
from service.domain.webhooks.catalogue import catalogue
from service.domain.webhooks.policy import policy
from service.extensions import Blueprint, current_actor, unit_of_work
from service.resources.common import (
    ETAG_HEADER,
    IF_MATCH,
    LOCATION_HEADER,
    check_read_back,
    etag,
    expected_version,
    not_modified,
    paged,
)
from service.resources.idempotency import idempotent
from service.resources.webhooks.schemas import (
    DeliveryDetailSchema,
    DeliveryQueryArgsSchema,
    DeliverySchema,
    EventTypeSchema,
    RotatedSecretSchema,
    WebhookCreatedSchema,
    WebhookQueryArgsSchema,
    WebhookSchema,
    WebhookUpdateSchema,
)

blp = Blueprint(
    "webhooks", __name__, url_prefix="/api/v1",
    description="Webhooks signed per Standard Webhooks (https://www.standardwebhooks.com) for "
                "the event types listed by GET /api/v1/webhooks/events (each with the JSON "
                "Schema of its body). Thin payloads (ids, times, status; no patient data); "
                "headers `webhook-id` (the event id), `webhook-timestamp` (unix seconds) and "
                "`webhook-signature: v1,<base64 HMAC-SHA256 of \"id.timestamp.body\">` keyed "
                "with the base64-decoded part of the `whsec_` secret (two signatures, "
                "space-separated, during a rotation's overlap); at-least-once through a "
                "durable outbox (dedupe by webhook-id), retried with backoff for 24 hours, "
                "then the subscription is disabled. Integration keys see the subscriptions "
                "they made; staff see all.")


def _allow_private() -> bool:
    return current_app.config["SETTINGS"].webhook_allow_private_targets


@blp.route("/webhooks")
class Webhooks(MethodView):
    @blp.arguments(WebhookQueryArgsSchema, location="query")
    @blp.response(200, WebhookSchema(many=True))
    @blp.paginate()
    @authorize(policy, "list")
    def get(self, args, pagination_parameters):
        """List webhook subscriptions (never their secrets)"""
        return paged(webhooks.list_subscriptions, pagination_parameters, **args)

    @idempotent
    @blp.arguments(WebhookSchema)
    @blp.response(201, WebhookCreatedSchema, headers={**ETAG_HEADER, **LOCATION_HEADER})
    @authorize(policy, "create")
    def post(self, data):
        """Subscribe a URL to events (the signing secret is in this answer only)"""
        created = webhooks.create_subscription(
            unit_of_work(), current_actor(), url=data["url"], events=data["events"],
            description=data.get("description"), active=data["active"],
            allow_private=_allow_private(), now=utcnow())
        record = created.record
        return created, 201, {**etag(record), "Location": f"/api/v1/webhooks/{record.id}"}


@blp.route("/webhooks/events")
class WebhookEventTypes(MethodView):
    @blp.response(200, EventTypeSchema(many=True))
    @authorize(policy, "events")
    def get(self):
        """The event catalogue: every event type and the JSON Schema of its body"""
        return catalogue()


@blp.route("/webhooks/<uuid:webhook_id>/rotate-secret")
class WebhookSecretRotation(MethodView):
    @idempotent
    @blp.response(200, RotatedSecretSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.doc(operationId="rotateWebhookSecret")
    @authorize(policy, "rotate_secret")
    def post(self, webhook_id: uuid.UUID):
        """A new signing secret (shown once); the old one also signs until the overlap ends"""
        hours = current_app.config["SETTINGS"].webhook_secret_overlap_hours
        rotated = webhooks.rotate_secret(unit_of_work(), current_actor(), webhook_id,
                                         overlap=timedelta(hours=hours), now=utcnow())
        return {"secret": rotated.secret,
                "previous_secret_expires_at": rotated.record.previous_secret_expires_at}


@blp.route("/webhooks/<uuid:webhook_id>")
class WebhookById(MethodView):
    @not_modified
    @blp.response(200, WebhookSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read")
    def get(self, webhook_id: uuid.UUID):
        """Get a webhook subscription"""
        record = webhooks.get_subscription(unit_of_work(read_only=True), current_actor(),
                                           webhook_id)
        return record, etag(record)

    @blp.arguments(WebhookUpdateSchema)
    @blp.response(200, WebhookSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(412, response="PRECONDITION_FAILED")
    @blp.alt_response(428, response="PRECONDITION_REQUIRED")
    @blp.doc(parameters=[IF_MATCH])
    @authorize(policy, "update")
    def patch(self, changes, webhook_id: uuid.UUID):
        """Update a subscription: URL, events, description, or enable it again (If-Match)

        A subscription read by GET may be sent back whole: read-only fields are ignored
        when they equal the current values, refused (422 read_only_field) otherwise."""
        check_read_back(changes, lambda: webhooks.get_subscription(
            unit_of_work(read_only=True), current_actor(), webhook_id))
        record = webhooks.update_subscription(
            unit_of_work(), current_actor(), webhook_id, expected_version=expected_version(),
            changes=changes, allow_private=_allow_private(), now=utcnow())
        return record, etag(record)

    @blp.response(204)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "delete")
    def delete(self, webhook_id: uuid.UUID):
        """Delete a subscription and its delivery log"""
        webhooks.delete_subscription(unit_of_work(), current_actor(), webhook_id)


@blp.route("/webhooks/<uuid:webhook_id>/deliveries")
class WebhookDeliveries(MethodView):
    @blp.arguments(DeliveryQueryArgsSchema, location="query")
    @blp.response(200, DeliverySchema(many=True))
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.paginate()
    @authorize(policy, "list_deliveries")
    def get(self, args, webhook_id: uuid.UUID, pagination_parameters):
        """The delivery log of a subscription, newest first"""
        return paged(webhooks.list_deliveries, pagination_parameters, webhook_id, **args)


@blp.route("/webhooks/<uuid:webhook_id>/deliveries/<uuid:delivery_id>")
class WebhookDeliveryById(MethodView):
    @blp.response(200, DeliveryDetailSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read_delivery")
    def get(self, webhook_id: uuid.UUID, delivery_id: uuid.UUID):
        """One delivery: the body sent and every attempt"""
        return webhooks.get_delivery(unit_of_work(read_only=True), current_actor(), webhook_id,
                                     delivery_id)


@blp.route("/webhooks/<uuid:webhook_id>/deliveries/<uuid:delivery_id>/redeliver")
class WebhookRedelivery(MethodView):
    @idempotent
    @blp.response(201, DeliverySchema, headers=LOCATION_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "redeliver")
    def post(self, webhook_id: uuid.UUID, delivery_id: uuid.UUID):
        """Send an event again (same webhook-id and body, a fresh signature and retry window)"""
        again = webhooks.redeliver(unit_of_work(), current_actor(), webhook_id, delivery_id,
                                   now=utcnow())
        return again, 201, {
            "Location": f"/api/v1/webhooks/{webhook_id}/deliveries/{again.id}"}
