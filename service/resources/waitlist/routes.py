"""The waitlist: ``/api/v1/waitlist`` (entries) and ``/api/v1/waitlist/offers``."""

from __future__ import annotations

import uuid

from flask.views import MethodView

from service.auth import authorize
from service.db import utcnow
from service.domain.waitlist import services
from service.domain.waitlist.policy import entries as entry_policy
from service.domain.waitlist.policy import offers as offer_policy
from service.extensions import Blueprint, clinic_today, current_actor, unit_of_work
from service.resources.common import (
    ETAG_HEADER,
    IF_MATCH,
    LOCATION_HEADER,
    etag,
    expected_version,
    paged,
)
from service.resources.idempotency import idempotent
from service.resources.waitlist.schemas import (
    EntryCreateSchema,
    EntryMoveSchema,
    EntryQueryArgsSchema,
    EntrySchema,
    OfferQueryArgsSchema,
    OfferSchema,
)

blp = Blueprint(
    "waitlist", __name__, url_prefix="/api/v1",
    description="The waitlist: a patient waits for a kind of visit (providers, location, "
                "dates, weekdays, parts of the day, a series session keeping its protocol "
                "window). When a matching slot frees up (a cancellation, a reschedule away, "
                "new hours, time off removed), the scheduler offers it in fair order (series "
                "sessions that would break their window first, then first come or as staff "
                "ordered), held for one patient at a time as a pending booking for "
                "WAITLIST_HOLD_MINUTES; the patient accepts (booked) or declines, and an "
                "expired hold goes to the next patient. Webhooks: waitlist.offered, "
                "waitlist.filled.")


@blp.route("/waitlist")
class Entries(MethodView):
    @blp.arguments(EntryQueryArgsSchema, location="query")
    @blp.response(200, EntrySchema(many=True))
    @blp.paginate()
    @authorize(entry_policy, "list")
    def get(self, args, pagination_parameters):
        """List waitlist entries in queue order (a patient: their own)"""
        return paged(services.list_entries, pagination_parameters, **args)

    @idempotent
    @blp.arguments(EntryCreateSchema)
    @blp.response(201, EntrySchema, headers={**ETAG_HEADER, **LOCATION_HEADER})
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(entry_policy, "join")
    def post(self, data):
        """Join the waitlist (at the end of the list)"""
        entry = services.join_waitlist(unit_of_work(), current_actor(),
                                       services.EntryRequest(**{"patient_id": None, **data}),
                                       today=clinic_today())
        return entry, 201, {**etag(entry), "Location": f"/api/v1/waitlist/{entry.id}"}


@blp.route("/waitlist/<uuid:entry_id>")
class EntryById(MethodView):
    @blp.response(200, EntrySchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(entry_policy, "read")
    def get(self, entry_id: uuid.UUID):
        """Get a waitlist entry"""
        entry = services.get_entry(unit_of_work(read_only=True), current_actor(), entry_id)
        return entry, etag(entry)

    @blp.response(200, EntrySchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @authorize(entry_policy, "withdraw")
    def delete(self, entry_id: uuid.UUID):
        """Withdraw from the waitlist (an open offer is declined)"""
        entry = services.withdraw_entry(unit_of_work(), current_actor(), entry_id,
                                        now=utcnow())
        return entry, etag(entry)


@blp.route("/waitlist/<uuid:entry_id>/move")
class EntryMove(MethodView):
    @idempotent
    @blp.arguments(EntryMoveSchema)
    @blp.response(200, EntrySchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(412, response="PRECONDITION_FAILED")
    @blp.alt_response(428, response="PRECONDITION_REQUIRED")
    @blp.doc(parameters=[IF_MATCH])
    @authorize(entry_policy, "reorder")
    def post(self, data, entry_id: uuid.UUID):
        """Reorder: put an entry at a position of the open list (send If-Match)"""
        entry = services.move_entry(unit_of_work(), current_actor(), entry_id,
                                    position=data["position"],
                                    expected_version=expected_version())
        return entry, etag(entry)


@blp.route("/waitlist/offers")
class Offers(MethodView):
    @blp.arguments(OfferQueryArgsSchema, location="query")
    @blp.response(200, OfferSchema(many=True))
    @blp.paginate()
    @authorize(offer_policy, "list")
    def get(self, args, pagination_parameters):
        """List waitlist offers, newest first (a patient: their own)"""
        return paged(services.list_offers, pagination_parameters, **args)


@blp.route("/waitlist/offers/<uuid:offer_id>")
class OfferById(MethodView):
    @blp.response(200, OfferSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(offer_policy, "read")
    def get(self, offer_id: uuid.UUID):
        """Get a waitlist offer"""
        offer = services.get_offer(unit_of_work(read_only=True), current_actor(), offer_id)
        return offer, etag(offer)


@blp.route("/waitlist/offers/<uuid:offer_id>/accept")
class OfferAcceptance(MethodView):
    @idempotent
    @blp.response(200, OfferSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @authorize(offer_policy, "accept")
    def post(self, offer_id: uuid.UUID):
        """Accept an offer: the held visit is booked (every booking rule asked again)"""
        offer = services.accept_offer(unit_of_work(), current_actor(), offer_id, now=utcnow())
        return offer, etag(offer)


@blp.route("/waitlist/offers/<uuid:offer_id>/decline")
class OfferDecline(MethodView):
    @idempotent
    @blp.response(200, OfferSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @authorize(offer_policy, "decline")
    def post(self, offer_id: uuid.UUID):
        """Decline an offer: the slot goes to the next patient; the entry keeps waiting"""
        offer = services.decline_offer(unit_of_work(), current_actor(), offer_id,
                                       now=utcnow())
        return offer, etag(offer)
