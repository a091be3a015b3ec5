"""Treatment protocols and series: ``/api/v1/protocols``, ``/api/v1/series``."""

from __future__ import annotations

import uuid

from flask.views import MethodView

from service.auth import authorize
from service.db import utcnow
from service.domain.series import services
from service.domain.series.policy import policy
from service.extensions import Blueprint, current_actor, unit_of_work
from service.resources.bookings.routes import CONFLICT_EXAMPLE
from service.resources.bookings.schemas import BookingSchema
from service.resources.common import ETAG_HEADER, LOCATION_HEADER, etag, page_of, paged
from service.resources.idempotency import idempotent
from service.resources.series.schemas import (
    ProtocolSchema,
    SeriesCancelSchema,
    SeriesDetailSchema,
    SeriesPreviewSchema,
    SeriesQueryArgsSchema,
    SeriesRequestSchema,
    SeriesSchema,
    SessionCreateSchema,
)

blp = Blueprint(
    "series", __name__, url_prefix="/api/v1",
    description="Treatment series: a protocol's sessions (IV induction, esketamine induction, "
                "booster, or a custom RRULE) previewed session by session and booked in one "
                "transaction, all or nothing. Sessions keep their local wall-clock time in "
                "the location's zone across DST. One session is rescheduled or cancelled "
                "through the booking endpoints.")

SERIES_CONFLICT_EXAMPLE = {
    "type": "/problems/series_conflict", "title": "The series cannot be booked",
    "status": 409, "code": "series_conflict",
    "detail": "Session(s) 5 cannot be booked; nothing was booked. See occurrences for each "
              "session's status and nearest alternative.",
    "bookable": False,
    "occurrences": [
        {"index": 5, "start": "2026-12-14T10:00:00-07:00",
         "end": "2026-12-14T10:45:00-07:00", "status": "conflict", "code": "slot_unavailable",
         "reason": "The provider is booked then.",
         "provider_id": "5b7f0c1e-0d2a-4c61-9a53-1f0e6c2d9b11",
         "alternative": {"start": "2026-12-14T11:00:00-07:00",
                         "end": "2026-12-14T11:45:00-07:00",
                         "provider_id": "5b7f0c1e-0d2a-4c61-9a53-1f0e6c2d9b11",
                         "location_id": "0c9e4f7a-51f3-4b2e-8c5d-7a1e2f3b4c5d"}},
    ],
}


@blp.route("/protocols")
class Protocols(MethodView):
    @blp.response(200, ProtocolSchema(many=True))
    @blp.paginate()
    @authorize(policy, "list_protocols")
    def get(self, pagination_parameters):
        """List the treatment protocols a series can follow

        A custom recurrence is given as an RRULE instead of a protocol."""
        page = services.list_protocols(page=pagination_parameters.page,
                                       page_size=pagination_parameters.page_size)
        return page_of(page, pagination_parameters)


@blp.route("/series/preview")
class SeriesPreview(MethodView):
    @idempotent
    @blp.arguments(SeriesRequestSchema)
    @blp.response(200, SeriesPreviewSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "preview")
    def post(self, data):
        """Preview a series: each session's status, reason and nearest alternative (no writes)"""
        return services.preview_series(unit_of_work(read_only=True), current_actor(),
                                       services.SeriesRequest(**_request(data)), now=utcnow())


@blp.route("/series")
class Series(MethodView):
    @blp.arguments(SeriesQueryArgsSchema, location="query")
    @blp.response(200, SeriesSchema(many=True))
    @blp.paginate()
    @authorize(policy, "list")
    def get(self, args, pagination_parameters):
        """List treatment series (patients and providers see only their own)"""
        return paged(services.list_series, pagination_parameters, **args)

    @idempotent
    @blp.arguments(SeriesRequestSchema)
    @blp.response(201, SeriesDetailSchema, headers={**ETAG_HEADER, **LOCATION_HEADER})
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT", example=SERIES_CONFLICT_EXAMPLE)
    @authorize(policy, "create")
    def post(self, data):
        """Book a series: every session in one transaction, or none (409 series_conflict)

        `sessions` books some sessions at the preview's alternatives instead of the planned
        starts; starts that together break the protocol are 409 (`protocol_spacing`,
        `protocol_window`, `protocol_rhythm`) unless a provider or an admin confirms with
        `override.reason`."""
        view = services.create_series(unit_of_work(), current_actor(),
                                      services.SeriesRequest(**_request(data)), now=utcnow())
        return view, 201, {**etag(view.series), "Location": f"/api/v1/series/{view.series.id}"}


@blp.route("/series/<uuid:series_id>")
class SeriesById(MethodView):
    @blp.response(200, SeriesDetailSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read")
    def get(self, series_id: uuid.UUID):
        """Get a series: sessions, progress, next due, whether the protocol's window is met"""
        view = services.get_series(unit_of_work(read_only=True), current_actor(), series_id,
                                   now=utcnow())
        return view, etag(view.series)


@blp.route("/series/<uuid:series_id>/cancel")
class SeriesCancellation(MethodView):
    @idempotent
    @blp.arguments(SeriesCancelSchema)
    @blp.response(200, SeriesDetailSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "cancel")
    def post(self, data, series_id: uuid.UUID):
        """Cancel every remaining session (fulfilled ones stay); a reason is required"""
        view = services.cancel_series(unit_of_work(), current_actor(), series_id,
                                      reason=data["reason"], now=utcnow())
        return view, etag(view.series)


@blp.route("/series/<uuid:series_id>/occurrences")
class SeriesSessions(MethodView):
    @idempotent
    @blp.arguments(SessionCreateSchema)
    @blp.response(201, BookingSchema, headers={**ETAG_HEADER, **LOCATION_HEADER})
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT", example=CONFLICT_EXAMPLE)
    @authorize(policy, "add_session")
    def post(self, data, series_id: uuid.UUID):
        """Book a missed session again, into the series (see suggested_rebook)

        Never more live sessions than the series plans (409 series_complete)."""
        booking = services.add_session(unit_of_work(), current_actor(), series_id,
                                       now=utcnow(), **data)
        return booking, 201, {**etag(booking), "Location": f"/api/v1/bookings/{booking.id}"}


def _request(data: dict) -> dict:
    data = dict(data)
    data["preferred_weekdays"] = tuple(sorted(set(data.get("preferred_weekdays", ()))))
    data["sessions"] = tuple(services.SessionStart(**session)
                             for session in data.get("sessions", ()))
    data["override_reason"] = data.pop("override", {}).get("reason")
    return data
