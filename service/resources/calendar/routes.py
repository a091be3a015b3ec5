"""Calendar feeds (tokens and the ``.ics`` feed) and the booking changes feed."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import marshmallow as ma
from flask import Response, current_app, request
from flask.views import MethodView

from service.auth import authorize
from service.db import utcnow
from service.domain.calendar import services, sync
from service.domain.calendar.policy import policy
from service.domain.calendar.services import FeedOwner
from service.extensions import Blueprint, current_actor, unit_of_work
from service.resources.calendar.schemas import (
    CalendarTokenCreateSchema,
    CalendarTokenSchema,
    IssuedCalendarTokenSchema,
    SyncPageSchema,
    SyncQueryArgsSchema,
)
from service.resources.common import paged
from service.resources.idempotency import idempotent

blp = Blueprint(
    "calendar", __name__, url_prefix="/api/v1",
    description="iCalendar feeds (RFC 5545) of a provider's or a patient's visits, behind a "
                "revocable secret token in the URL. Events say only when and how long "
                "(\"Clinic visit (60 min)\"): no names, no clinical words. Cancellations "
                "stay 30 days as STATUS:CANCELLED.")

sync_blp = Blueprint(
    "sync", __name__, url_prefix="/api/v1",
    description="The booking changes feed: a full sync, then only what changed, with sync "
                "tokens. No change is missed, also when writes commit concurrently.")

ICS_MEDIA_TYPE = "text/calendar"


def _settings() -> Any:
    return current_app.config["SETTINGS"]


def _issued(issued: services.IssuedFeedToken) -> dict[str, Any]:
    url = f"{request.url_root.rstrip('/')}/api/v1/calendars/{issued.token}.ics"
    return {"id": issued.id, "provider_id": issued.provider_id,
            "patient_id": issued.patient_id, "label": issued.label,
            "created_at": issued.created_at, "revoked_at": issued.revoked_at,
            "token": issued.token, "feed_url": url}


def _register_tokens(kind: str, who: str) -> None:
    """``/<kind>s/<id>/calendar-tokens`` (list, create) and ``.../<token_id>`` (revoke)."""
    id_name = f"{kind}_id"
    action = f"manage_{kind}_feeds"
    roles = ", ".join(r.value for r in policy.roles(action))

    def owner(ids: dict[str, uuid.UUID]) -> FeedOwner:
        return FeedOwner(**{id_name: ids[id_name]})

    class Tokens(MethodView):
        @blp.response(200, CalendarTokenSchema(many=True))
        @blp.alt_response(404, response="NOT_FOUND")
        @blp.paginate()
        @authorize(policy, action)
        def get(self, pagination_parameters, **ids: uuid.UUID):
            return paged(services.list_feed_tokens, pagination_parameters, owner(ids))

        @idempotent
        @blp.arguments(CalendarTokenCreateSchema)
        @blp.response(201, IssuedCalendarTokenSchema)
        @blp.alt_response(404, response="NOT_FOUND")
        @authorize(policy, action)
        def post(self, data, **ids: uuid.UUID):
            issued = services.create_feed_token(unit_of_work(), current_actor(), owner(ids),
                                                label=data["label"], now=utcnow())
            return _issued(issued), 201

    class TokenById(MethodView):
        @blp.response(204)
        @blp.alt_response(404, response="NOT_FOUND")
        @authorize(policy, action)
        def delete(self, token_id: uuid.UUID, **ids: uuid.UUID):
            services.revoke_feed_token(unit_of_work(), current_actor(), owner(ids), token_id,
                                       now=utcnow())

    Tokens.get.__doc__ = (f"List {who} calendar feed tokens (never the tokens themselves)"
                          f"\n\nRoles: {roles}.")
    Tokens.post.__doc__ = (f"Create a calendar feed token for {who} visits\n\nThe token and "
                           "the feed URL are shown once; the service keeps only a hash. "
                           "Anyone holding the URL reads the feed. An Idempotency-Key "
                           "replay (same API key, 24 hours) shows the same answer again."
                           f"\n\nRoles: {roles}.")
    TokenById.delete.__doc__ = ("Revoke a calendar feed token (its URL answers 404 at once)"
                                f"\n\nRoles: {roles}.")
    Tokens.__name__ = f"{kind.title()}CalendarTokens"
    TokenById.__name__ = f"{kind.title()}CalendarTokenById"
    base = f"/{kind}s/<uuid:{id_name}>/calendar-tokens"
    blp.route(base, endpoint=f"{kind}_calendar_tokens")(Tokens)
    blp.route(f"{base}/<uuid:token_id>", endpoint=f"{kind}_calendar_token")(TokenById)


_register_tokens("provider", "a provider's")
_register_tokens("patient", "a patient's")


FEED_ETAG = {"ETag": {"description": "The feed's version (strong)",
                      "schema": {"type": "string"}}}
FEED_RESPONSES = {
    200: {"description": "The feed (RFC 5545), with a strong ETag",
          "content": {ICS_MEDIA_TYPE: {"schema": {"type": "string"}}},
          "headers": FEED_ETAG},
    304: {"description": "Not modified (If-None-Match matched the ETag)",
          "headers": FEED_ETAG},
    401: {"description": "Not used: the token in the path authenticates the request"},
    403: {"description": "Not used: the token in the path authenticates the request"},
    404: {"description": "Unknown or revoked token",
          "content": {"application/problem+json": {"schema": {"type": "object"}}}},
}


@blp.route("/calendars/<string:token>.ics", endpoint="calendar_feed")
class CalendarFeed(MethodView):
    @blp.doc(security=[], responses=FEED_RESPONSES, parameters=[{
        "in": "header", "name": "If-None-Match", "required": False,
        "schema": {"type": "string"}, "description": "The ETag you have: 304 if unchanged"}])
    def get(self, token: str):
        """Subscribe to a calendar feed (the token in the URL is the credential)

        No API key: calendar apps cannot send one. The feed holds the owner's visits from
        90 days ago on, each with a stable UID and a SEQUENCE raised by every change; a
        cancellation stays 30 days as STATUS:CANCELLED. Times are UTC. Poll no more often
        than REFRESH-INTERVAL; send If-None-Match to get 304 when nothing changed.
        """
        settings = _settings()
        feed = services.calendar_feed(
            unit_of_work(read_only=True), token, now=utcnow(),
            refresh=timedelta(minutes=settings.calendar_refresh_minutes),
            clinic_name=settings.clinic_name)
        response = Response(feed.body, mimetype=ICS_MEDIA_TYPE)
        response.set_etag(feed.etag)
        response.headers["Cache-Control"] = "private, no-cache"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response.make_conditional(request)


@sync_blp.route("/sync/bookings")
class BookingSync(MethodView):
    @sync_blp.arguments(SyncQueryArgsSchema, location="query", unknown=ma.RAISE)
    @sync_blp.response(200, SyncPageSchema)
    @sync_blp.alt_response(410, response="GONE")
    @sync_blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @authorize(policy, "sync_bookings")
    def get(self, args):
        """Sync bookings: everything, then only what changed (sync tokens)

        Without a token: every booking you may see that is not cancelled (optionally one
        provider's or one patient's), page by page: follow `next_page_token` (as
        `page_token`) until a page carries `next_sync_token`. Keep that token; later, send
        it as `sync_token` to get only the bookings changed since, in the order of their
        latest change, cancelled ones as tombstones (`deleted: true`), and a new token
        (follow `next_page_token` first when there is one). An item may come twice: apply
        it by `id` and `version`. A token is opaque, carries its filters (combining it with
        `provider_id` or `patient_id` is 422) and expires after SYNC_TOKEN_RETENTION_DAYS:
        410 `sync_token_expired` means start again without a token.
        """
        page = sync.sync_bookings(
            unit_of_work(read_only=True), current_actor(), now=utcnow(),
            retention=timedelta(days=_settings().sync_token_retention_days),
            page_size=args["page_size"], sync_token=args.get("sync_token"),
            page_token=args.get("page_token"), provider_id=args.get("provider_id"),
            patient_id=args.get("patient_id"))
        return {"items": page.bookings, "next_page_token": page.next_page_token,
                "next_sync_token": page.next_sync_token}
