"""Slot search: ``GET /api/v1/slots`` (computed, or a stored answer that is still exact:
``availability/answers.py``)."""

from __future__ import annotations

import functools

from flask import current_app
from flask.views import MethodView

from service.auth import authorize
from service.db import utcnow
from service.domain.availability.answers import answer_open_slots
from service.domain.availability.policy import policy
from service.extensions import current_actor, statement_reads
from service.rendering import render_in
from service.resources.slots.arguments import SlotsBlueprint
from service.resources.slots.rendering import render_answer
from service.resources.slots.schemas import SlotListSchema, SlotQueryArgsSchema

blp = SlotsBlueprint("slots", __name__, url_prefix="/api/v1",
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
        clinic_zone = current_app.config["SETTINGS"].clinic_timezone
        asked = args.get("timezone")
        # Each slot in its location's zone (as the booking will show it), or all in the
        # zone asked for.
        render_in(asked)
        body = answer_open_slots(
            statement_reads(), current_actor(),
            render=functools.partial(render_answer, asked_zone=asked, clinic_zone=clinic_zone),
            service_type_id=args["service_type"], start=args["start"], end=args["end"],
            now=utcnow(), default_zone=clinic_zone, zone_name=asked,
            provider_ids=args.get("provider_id"), location_id=args.get("location_id"),
            patient_id=args.get("patient_id"), patient_state=args.get("patient_state"),
            limit=args["limit"])
        return current_app.response_class(body, mimetype=current_app.json.mimetype)
