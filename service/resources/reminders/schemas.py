"""Schemas of reminders and of the SMS gateway's inbound webhook."""

from __future__ import annotations

import marshmallow as ma

from service.domain.reminders.models import ReminderChannel, ReminderStatus
from service.extensions import Schema
from service.resources.fields import Instant


class ReminderSchema(Schema):
    id = ma.fields.UUID(dump_only=True)
    booking_id = ma.fields.UUID(dump_only=True)
    kind = ma.fields.String(dump_only=True, metadata={
        "description": "confirmation, before_<hours>h or next_day_check_in",
        "example": "before_24h"})
    plan_version = ma.fields.Integer(dump_only=True, metadata={
        "description": "Bumped when the booking is rescheduled (the old plan is cancelled)"})
    dedupe_key = ma.fields.String(dump_only=True, metadata={
        "description": "<booking>.<kind>.v<version>: sent to the channel (Message-ID, "
                       "Idempotency-Key) so a resend after a crash is dropped there"})
    status = ma.fields.Enum(ReminderStatus, by_value=True, dump_only=True)
    channel = ma.fields.Enum(ReminderChannel, by_value=True, allow_none=True, dump_only=True,
                             metadata={"description": "How it went out (once sent)"})
    due_at = Instant(dump_only=True, metadata={
        "description": "When it is due (after any quiet-hours deferral)"})
    next_attempt_at = Instant(dump_only=True)
    attempts = ma.fields.Integer(dump_only=True)
    reason = ma.fields.String(allow_none=True, dump_only=True, metadata={
        "description": "Why it was skipped, cancelled or failed (a machine code)",
        "example": "past_due_at_planning"})
    sent_at = Instant(allow_none=True, dump_only=True)
    created_at = Instant(dump_only=True)
    updated_at = Instant(dump_only=True)


class ReminderQueryArgsSchema(ma.Schema):
    status = ma.fields.List(ma.fields.Enum(ReminderStatus, by_value=True),
                            validate=ma.validate.Length(max=6),
                            metadata={"description": "Repeatable"})
    due_before = Instant(metadata={"description": "Reminders due before this instant"})
    booking_id = ma.fields.UUID()


class InboundSmsSchema(Schema):
    """The gateway's form POST (Twilio style). Only From and Body are read; the gateway
    sends many more fields (MessageSid, To, ...), which are ignored, not refused."""

    class Meta:
        unknown = ma.EXCLUDE

    From = ma.fields.String(required=True, data_key="From",
                            validate=ma.validate.Length(min=1, max=32),
                            metadata={"example": "+16025550111"})
    Body = ma.fields.String(load_default="", data_key="Body",
                            validate=ma.validate.Length(max=1600),
                            metadata={"example": "STOP"})


class InboundSmsResultSchema(Schema):
    received = ma.fields.Boolean(metadata={"example": True})
    action = ma.fields.String(metadata={
        "description": "opt_out, opt_in or none: decided by the keyword alone, the same "
                       "whether or not the number belongs to a patient",
        "example": "opt_out"})
