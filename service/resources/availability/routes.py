"""Provider availability: ``/api/v1/providers/<id>/availability`` and ``.../time-off``."""

from __future__ import annotations

import uuid

from flask.views import MethodView

from service.auth import authorize
from service.domain.availability import services
from service.domain.availability.policy import policy
from service.extensions import Blueprint, clinic_today, current_actor, unit_of_work
from service.resources.availability.schemas import (
    AvailabilitySchema,
    TimeOffQueryArgsSchema,
    TimeOffSchema,
)
from service.resources.common import LOCATION_HEADER, paged
from service.resources.idempotency import idempotent

blp = Blueprint("availability", __name__, url_prefix="/api/v1",
                description="When providers work: weekly hours per location (local wall-clock "
                            "times in the location's zone), date overrides and time off. A "
                            "provider key manages only its own schedule; others get 404.")

@blp.route("/providers/<uuid:provider_id>/availability")
class Availability(MethodView):
    @blp.response(200, AvailabilitySchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read")
    def get(self, provider_id: uuid.UUID):
        """Get a provider's weekly hours and its date overrides from today on"""
        return services.get_availability(unit_of_work(read_only=True), current_actor(),
                                         provider_id, today=clinic_today())

    @blp.arguments(AvailabilitySchema)
    @blp.response(200, AvailabilitySchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "change")
    def put(self, schedule, provider_id: uuid.UUID):
        """Replace a provider's whole schedule: all weekly hours and all overrides from today

        Everything not in the body is removed (past overrides are kept as history). Two
        windows of the provider on the same weekday, or the same date, may not overlap,
        even at different locations (422 `overlapping_hours`).
        """
        return services.replace_availability(
            unit_of_work(), current_actor(), provider_id, weekly=schedule["weekly"],
            overrides=schedule["overrides"], today=clinic_today())


@blp.route("/providers/<uuid:provider_id>/time-off")
class TimeOffs(MethodView):
    @blp.arguments(TimeOffQueryArgsSchema, location="query")
    @blp.response(200, TimeOffSchema(many=True))
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.paginate()
    @authorize(policy, "read_time_off")
    def get(self, args, provider_id: uuid.UUID, pagination_parameters):
        """List a provider's time off, earliest first"""
        return paged(services.list_time_off, pagination_parameters, provider_id,
                     ends_after=args.get("ends_after"))

    @idempotent
    @blp.arguments(TimeOffSchema)
    @blp.response(201, TimeOffSchema, headers=LOCATION_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "change")
    def post(self, data, provider_id: uuid.UUID):
        """Block time off for a provider (vacation, training; at most 366 days)"""
        record = services.add_time_off(unit_of_work(), current_actor(), provider_id, **data)
        return record, 201, {
            "Location": f"/api/v1/providers/{provider_id}/time-off/{record.id}"}


@blp.route("/providers/<uuid:provider_id>/time-off/<uuid:time_off_id>")
class TimeOffById(MethodView):
    @blp.response(200, TimeOffSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read_time_off")
    def get(self, provider_id: uuid.UUID, time_off_id: uuid.UUID):
        """Get one time off"""
        return services.get_time_off(unit_of_work(read_only=True), current_actor(),
                                     provider_id, time_off_id)

    @blp.response(204)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "change")
    def delete(self, provider_id: uuid.UUID, time_off_id: uuid.UUID):
        """Remove a time off"""
        services.remove_time_off(unit_of_work(), current_actor(), provider_id, time_off_id)
