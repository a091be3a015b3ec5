"""Reminders: a booking's reminders, the outbox for staff, a retry, and the SMS gateway's
webhook for STOP / START replies."""

from __future__ import annotations

import uuid

from flask.views import MethodView

from service.auth import authorize
from service.db import utcnow
from service.domain.reminders import services
from service.domain.reminders.policy import policy
from service.extensions import Blueprint, unit_of_work
from service.resources.common import page_of, paged
from service.resources.idempotency import idempotent
from service.resources.reminders.schemas import (
    InboundSmsResultSchema,
    InboundSmsSchema,
    ReminderQueryArgsSchema,
    ReminderSchema,
)

blp = Blueprint(
    "reminders", __name__, url_prefix="/api/v1",
    description="Reminders planned with each booking (confirmation, hours before, next-day "
                "check-in) and sent by the scheduler process: SMS with consent, else email "
                "with consent, never in the patient's quiet hours, nothing clinical in the "
                "text. STOP-type SMS replies opt out at once.")


@blp.route("/bookings/<uuid:booking_id>/reminders")
class BookingReminders(MethodView):
    @blp.response(200, ReminderSchema(many=True))
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.paginate()
    @authorize(policy, "list_for_booking")
    def get(self, booking_id: uuid.UUID, pagination_parameters):
        """List a booking's reminders (whoever may see the booking)"""
        return paged(services.list_booking_reminders, pagination_parameters, booking_id)


@blp.route("/reminders")
class Reminders(MethodView):
    @blp.arguments(ReminderQueryArgsSchema, location="query")
    @blp.response(200, ReminderSchema(many=True))
    @blp.paginate()
    @authorize(policy, "list")
    def get(self, args, pagination_parameters):
        """List reminders by status and due time"""
        page = services.list_reminders(
            unit_of_work(read_only=True), page=pagination_parameters.page,
            page_size=pagination_parameters.page_size, **args)
        return page_of(page, pagination_parameters)


@blp.route("/reminders/<uuid:reminder_id>/retry")
class ReminderRetry(MethodView):
    @idempotent
    @blp.response(200, ReminderSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "retry")
    def post(self, reminder_id: uuid.UUID):
        """Queue a failed or skipped reminder again (re-checked before it is sent)"""
        return services.retry_reminder(unit_of_work(), reminder_id, now=utcnow())


@blp.route("/inbound/sms")
class InboundSms(MethodView):
    @idempotent
    @blp.arguments(InboundSmsSchema, location="form")
    @blp.response(200, InboundSmsResultSchema)
    @authorize(policy, "receive_sms")
    def post(self, data):
        """Receive an SMS reply from the gateway (STOP-type words opt out, START opts in)

        Form fields `From` and `Body`, as a Twilio-compatible gateway posts them; other
        fields are ignored. STOP, STOPALL, QUIT, END, REVOKE, OPT OUT, CANCEL and
        UNSUBSCRIBE (trimmed, any case) opt the number out of SMS at once; START opts it in
        again. The answer is the same whether or not the number belongs to a patient.
        """
        action = services.receive_sms(unit_of_work(), sender=data["From"],
                                      body=data["Body"], now=utcnow())
        return {"received": True, "action": action}
