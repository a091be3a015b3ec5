"""Connected calendars: ``/api/v1/providers/<id>/calendar-connections`` (and the staff
overview ``/api/v1/calendar-connections``)."""

from __future__ import annotations

import uuid

from flask import current_app
from flask.views import MethodView

from service.auth import authorize
from service.db import utcnow
from service.domain.connections import services
from service.domain.connections.policy import policy
from service.extensions import Blueprint, current_actor, unit_of_work
from service.resources.common import (
    ETAG_HEADER,
    IF_MATCH,
    LOCATION_HEADER,
    check_read_back,
    etag,
    expected_version,
    paged,
)
from service.resources.connections.schemas import (
    BusyPushResultSchema,
    BusyPushSchema,
    ConnectionQueryArgsSchema,
    ConnectionSchema,
    ConnectionUpdateSchema,
)
from service.resources.idempotency import idempotent

blp = Blueprint(
    "connections", __name__, url_prefix="/api/v1",
    description="A provider's other calendars (hospital shifts, personal appointments, "
                "meetings): their busy time blocks the provider's slots, re-checked at "
                "booking. iCalendar addresses and CalDAV calendars are read by the "
                "scheduler; push connections are filled by an integration. Only intervals "
                "are stored, never titles or attendees. Addresses and credentials are "
                "write-only (encrypted with CALENDAR_SECRET_KEY). Each connection shows "
                "its freshness; slot answers name providers whose source is stale.")


def _rules() -> services.ConnectionRules:
    return services.connection_rules(current_app.config["SETTINGS"])


def _location(provider_id: uuid.UUID, connection_id: uuid.UUID) -> str:
    return f"/api/v1/providers/{provider_id}/calendar-connections/{connection_id}"


@blp.route("/providers/<uuid:provider_id>/calendar-connections")
class Connections(MethodView):
    @blp.response(200, ConnectionSchema(many=True))
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.paginate()
    @authorize(policy, "read")
    def get(self, provider_id: uuid.UUID, pagination_parameters):
        """List a provider's connected calendars with their freshness"""
        return paged(services.list_connections, pagination_parameters, provider_id)

    @idempotent
    @blp.arguments(ConnectionSchema)
    @blp.response(201, ConnectionSchema, headers={**ETAG_HEADER, **LOCATION_HEADER})
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "change")
    def post(self, data, provider_id: uuid.UUID):
        """Connect a calendar (an iCalendar address, a CalDAV calendar, or a push source)"""
        record = services.create_connection(unit_of_work(), current_actor(), provider_id,
                                            rules=_rules(), now=utcnow(), **data)
        return record, 201, {**etag(record), "Location": _location(provider_id, record.id)}


@blp.route("/providers/<uuid:provider_id>/calendar-connections/<uuid:connection_id>")
class ConnectionById(MethodView):
    @blp.response(200, ConnectionSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read")
    def get(self, provider_id: uuid.UUID, connection_id: uuid.UUID):
        """Get a connected calendar: its settings and freshness (never its address)"""
        record = services.get_connection(unit_of_work(read_only=True), current_actor(),
                                         provider_id, connection_id)
        return record, etag(record)

    @blp.arguments(ConnectionUpdateSchema)
    @blp.response(200, ConnectionSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(412, response="PRECONDITION_FAILED")
    @blp.alt_response(428, response="PRECONDITION_REQUIRED")
    @blp.doc(parameters=[IF_MATCH])
    @authorize(policy, "change")
    def patch(self, changes, provider_id: uuid.UUID, connection_id: uuid.UUID):
        """Change a connected calendar: label, all-day choice, write-back, interval, active,
        or a new address / credentials (If-Match)

        A connection read by GET may be sent back whole: read-only fields are ignored when
        they equal the current values, refused (422 read_only_field) otherwise."""
        check_read_back(changes, lambda: services.get_connection(
            unit_of_work(read_only=True), current_actor(), provider_id, connection_id))
        record = services.update_connection(
            unit_of_work(), current_actor(), provider_id, connection_id, rules=_rules(),
            now=utcnow(), expected_version=expected_version(), changes=changes)
        return record, etag(record)

    @blp.response(204)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "change")
    def delete(self, provider_id: uuid.UUID, connection_id: uuid.UUID):
        """Disconnect a calendar: its busy time stops blocking at once"""
        services.remove_connection(unit_of_work(), current_actor(), provider_id,
                                   connection_id, now=utcnow())


@blp.route("/providers/<uuid:provider_id>/calendar-connections/<uuid:connection_id>/busy")
class ConnectionBusy(MethodView):
    @blp.arguments(BusyPushSchema)
    @blp.response(200, BusyPushResultSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "push")
    def put(self, data, provider_id: uuid.UUID, connection_id: uuid.UUID):
        """Replace a push connection's busy intervals for a window (idempotent)"""
        result = services.push_busy(unit_of_work(), current_actor(), provider_id,
                                    connection_id, start=data["start"], end=data["end"],
                                    intervals=data["intervals"], now=utcnow())
        return {"removed": result.removed, "stored": result.stored,
                "connection": result.connection}


@blp.route("/providers/<uuid:provider_id>/calendar-connections/<uuid:connection_id>/sync")
class ConnectionSync(MethodView):
    @idempotent
    @blp.response(202, ConnectionSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "change")
    def post(self, provider_id: uuid.UUID, connection_id: uuid.UUID):
        """Ask the scheduler to read this calendar at its next run"""
        return services.sync_soon(unit_of_work(), current_actor(), provider_id,
                                  connection_id, now=utcnow()), 202


@blp.route("/calendar-connections")
class ConnectionOverview(MethodView):
    @blp.arguments(ConnectionQueryArgsSchema, location="query")
    @blp.response(200, ConnectionSchema(many=True))
    @blp.paginate()
    @authorize(policy, "oversee")
    def get(self, args, pagination_parameters):
        """Every connected calendar of the clinic, stale ones first (the staff alert)"""
        return paged(services.oversee_connections, pagination_parameters,
                     stale_only=args["stale"])
