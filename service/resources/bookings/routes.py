"""Bookings: ``/api/v1/bookings`` and their FHIR status transitions."""

from __future__ import annotations

import uuid

from flask.views import MethodView

from service.auth import authorize
from service.db import utcnow
from service.domain.bookings import attention, instructions, reading, services
from service.domain.bookings.policy import policy
from service.extensions import Blueprint, current_actor, unit_of_work
from service.resources.bookings.rendering import booking_response
from service.resources.bookings.schemas import (
    BookingCreateSchema,
    BookingInstructionsSchema,
    BookingQueryArgsSchema,
    BookingSchema,
    CancelSchema,
    RescheduleSchema,
    ResolveAttentionSchema,
)
from service.resources.common import (
    ETAG_HEADER,
    IF_MATCH,
    LOCATION_HEADER,
    CreatedResponse,
    check_in_opens,
    etag,
    expected_version,
    not_modified,
    paged,
)
from service.resources.fields import ZoneQueryArgsSchema
from service.resources.idempotency import idempotent

blp = Blueprint(
    "bookings", __name__, url_prefix="/api/v1",
    description="Appointments. Statuses follow FHIR Appointment: pending, booked, checked-in, "
                "fulfilled, cancelled, noshow. A taken slot answers 409 `slot_unavailable` "
                "with `alternatives`. POSTs accept an Idempotency-Key.")

CONFLICT_EXAMPLE = {
    "type": "/problems/slot_unavailable", "title": "The slot is no longer available",
    "status": 409, "code": "slot_unavailable",
    "detail": "The provider, the patient or every chair is taken then.",
    "alternatives": [{"start": "2026-12-01T10:30:00-07:00", "end": "2026-12-01T11:30:00-07:00",
                      "provider_id": "5b7f0c1e-0d2a-4c61-9a53-1f0e6c2d9b11",
                      "location_id": "0c9e4f7a-51f3-4b2e-8c5d-7a1e2f3b4c5d"}],
}


@blp.route("/bookings")
class Bookings(MethodView):
    @blp.arguments(BookingQueryArgsSchema, location="query")
    @blp.response(200, BookingSchema(many=True))
    @blp.paginate()
    @authorize(policy, "list")
    def get(self, args, pagination_parameters):
        """List bookings (patients and providers see only their own)"""
        return paged(services.list_bookings, pagination_parameters, **args)

    @idempotent
    @blp.arguments(BookingCreateSchema)
    @blp.response(201, BookingSchema, headers={**ETAG_HEADER, **LOCATION_HEADER})
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT", example=CONFLICT_EXAMPLE)
    @authorize(policy, "create")
    def post(self, data):
        """Book a visit (every slot rule is re-checked)"""
        booking = services.create_booking(unit_of_work(), current_actor(),
                                          services.BookingRequest(**data), now=utcnow())
        # Rendered directly, as GET does: the body BookingSchema would dump, byte for byte
        # (tests/api/test_schema_dump.py).
        return CreatedResponse.force_type(booking_response(reading.as_read(booking), {
            **etag(booking), "Location": f"/api/v1/bookings/{booking.id}"}, 201))


@blp.route("/bookings/<uuid:booking_id>")
class BookingById(MethodView):
    @not_modified
    @blp.arguments(ZoneQueryArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, BookingSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read")
    def get(self, booking_id: uuid.UUID):
        """Get a booking"""
        # One plain row, rendered directly: the body BookingSchema would dump, byte for byte
        # (tests/api/test_schema_dump.py), at a fraction of the ORM's and the schema's cost.
        row = reading.read_booking(unit_of_work(read_only=True), current_actor(), booking_id)
        return booking_response(row, etag(row))


@blp.route("/bookings/<uuid:booking_id>/instructions")
class BookingInstructions(MethodView):
    @blp.response(200, BookingInstructionsSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read")
    def get(self, booking_id: uuid.UUID):
        """The whole stay and how to prepare: arrive, start, leave, driver, instructions"""
        return instructions.get_instructions(unit_of_work(read_only=True), current_actor(),
                                             booking_id)


@blp.route("/bookings/<uuid:booking_id>/reschedule")
class BookingReschedule(MethodView):
    @idempotent
    @blp.arguments(RescheduleSchema)
    @blp.response(200, BookingSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT", example=CONFLICT_EXAMPLE)
    @blp.alt_response(412, response="PRECONDITION_FAILED")
    @blp.alt_response(428, response="PRECONDITION_REQUIRED")
    @blp.doc(parameters=[IF_MATCH])
    @authorize(policy, "reschedule")
    def post(self, data, booking_id: uuid.UUID):
        """Move a booking to a new start (send If-Match)

        A session of a treatment series must keep its protocol: a move that breaks its
        spacing, window or weekly rhythm is 409 (`protocol_spacing`, `protocol_window`,
        `protocol_rhythm`, with the sessions concerned) unless a provider or an admin
        confirms it with `override.reason`."""
        booking = services.reschedule_booking(
            unit_of_work(), current_actor(), booking_id, start=data["start"],
            patient_state=data.get("patient_state"), expected_version=expected_version(),
            now=utcnow(), override_reason=data.get("override", {}).get("reason"))
        return booking, etag(booking)


@blp.route("/bookings/<uuid:booking_id>/cancel")
class BookingCancellation(MethodView):
    @idempotent
    @blp.arguments(CancelSchema)
    @blp.response(200, BookingSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "change_status")
    def post(self, data, booking_id: uuid.UUID):
        """Cancel a booking (a reason is required; late cancellations are marked)

        A session of a treatment series: a cancellation that leaves no room to make it up
        within the protocol's window and spacing is 409 `protocol_window` unless a provider
        or an admin confirms it with `override.reason`."""
        booking = services.transition_booking(unit_of_work(), current_actor(), booking_id,
                                              "cancel", now=utcnow(), reason=data["reason"],
                                              override_reason=data.get("override", {}).get(
                                                  "reason"))
        return booking, etag(booking)


def _transition_view(action: str, summary: str) -> type[MethodView]:
    class Transition(MethodView):
        @idempotent
        @blp.response(200, BookingSchema, headers=ETAG_HEADER)
        @blp.alt_response(404, response="NOT_FOUND")
        @blp.alt_response(409, response="CONFLICT")
        @authorize(policy, "change_status")
        def post(self, booking_id: uuid.UUID):
            booking = services.transition_booking(unit_of_work(), current_actor(), booking_id,
                                                  action, now=utcnow(),
                                                  check_in_opens=check_in_opens())
            return booking, etag(booking)

    Transition.post.__doc__ = summary
    Transition.__name__ = f"Booking{action.title().replace('_', '')}"
    return Transition


for _action, _path, _summary in (
    ("confirm", "confirm", "Confirm a pending booking"),
    ("check_in", "check-in", "Check the patient in"),
    ("complete", "complete", "Mark the visit fulfilled"),
    ("no_show", "no-show", "Mark a no-show (only once the visit has started)"),
):
    blp.route(f"/bookings/<uuid:booking_id>/{_path}", endpoint=f"booking_{_action}")(
        _transition_view(_action, _summary))


@blp.route("/bookings/<uuid:booking_id>/attention/resolve")
class BookingAttentionResolution(MethodView):
    @idempotent
    @blp.arguments(ResolveAttentionSchema)
    @blp.response(200, BookingSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "resolve_attention")
    def post(self, data, booking_id: uuid.UUID):
        """Resolve a booking's attention flag (a provider or an admin, with a reason)"""
        booking = attention.resolve_attention(unit_of_work(), current_actor(), booking_id,
                                              reason=data["reason"], now=utcnow())
        return booking, etag(booking)
