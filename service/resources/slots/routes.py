"""Slot search: ``GET /api/v1/slots`` (computed, never stored)."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from service.auth import authorize
from service.db import utcnow
from service.domain.availability.policy import policy
from service.domain.availability.search import find_open_slots
from service.domain.clinic.cancellation import CancellationTerms
from service.extensions import Blueprint, current_actor, unit_of_work
from service.rendering import render_in
from service.resources.slots.schemas import SlotListSchema, SlotQueryArgsSchema

blp = Blueprint("slots", __name__, url_prefix="/api/v1",
                description="Bookable start times, with every rule applied: working hours, "
                            "overrides, time off, bookings (pending too), buffers, recovery, "
                            "notice, horizon, chairs, licenses, REMS. Never who holds other "
                            "bookings.")


@blp.route("/slots")
class Slots(MethodView):
    @blp.arguments(SlotQueryArgsSchema, location="query")
    @blp.response(200, SlotListSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "search_slots")
    def get(self, args):
        """Search free slots for a service type"""
        found = find_open_slots(
            unit_of_work(read_only=True), current_actor(), service_type_id=args["service_type"],
            start=args["start"], end=args["end"], now=utcnow(),
            default_zone=current_app.config["SETTINGS"].clinic_timezone,
            zone_name=args.get("timezone"), provider_ids=args.get("provider_id"),
            location_id=args.get("location_id"), patient_id=args.get("patient_id"),
            patient_state=args.get("patient_state"), limit=args["limit"])
        terms = CancellationTerms.of(found.service_type)
        # Each slot in its location's zone (as the booking will show it), or all in the
        # zone asked for.
        render_in(args.get("timezone"))
        return {
            "service_type_id": found.service_type.id,
            "timezone": found.timezone,
            "truncated": found.truncated,
            "cancellation_policy": terms,
            "stale_calendar_provider_ids": list(found.stale_sources),
            "slots": [{"start": s.start, "end": s.end,
                       "provider_id": s.provider_id, "location_id": s.location_id,
                       "late_cancel_from": terms.late_from(s.start),
                       "patient_changes_until": terms.patient_changes_until(s.start)}
                      for s in found.slots],
        }
