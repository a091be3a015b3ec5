"""Schemas of connected calendars: the address and credentials go in, never come out."""

from __future__ import annotations

import marshmallow as ma

from service.domain.connections.models import ConnectionKind, SyncStatus
from service.domain.connections.services import (
    MAX_INTERVAL_MINUTES,
    MAX_PUSH_INTERVALS,
    MIN_INTERVAL_MINUTES,
)
from service.extensions import PartialUpdate, RecordSchema, Schema
from service.parsing import Integer
from service.resources.fields import Instant

INTERVAL = ma.validate.Range(min=MIN_INTERVAL_MINUTES, max=MAX_INTERVAL_MINUTES)


def _write_only(max_length: int, description: str, **kwargs: object) -> ma.fields.String:
    return ma.fields.String(load_only=True, validate=ma.validate.Length(min=1, max=max_length),
                            metadata={"description": f"{description} Write-only: stored "
                                                     "encrypted, never returned."}, **kwargs)


class ConnectionSchema(RecordSchema):
    provider_id = ma.fields.UUID(dump_only=True)
    kind = ma.fields.Enum(ConnectionKind, by_value=True, required=True, metadata={
        "description": "ics: a secret iCalendar address (Google, Outlook), polled; caldav: a "
                       "CalDAV calendar, queried over the sync window (and written to when "
                       "write_back); push: an integration replaces the busy intervals "
                       "itself (PUT .../busy)"})
    label = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100),
                             metadata={"example": "Hospital shifts"})
    url = _write_only(2000, "ics: the calendar's address (https:// or webcal://); caldav: "
                            "the calendar collection's URL.")
    username = _write_only(200, "caldav: the account name.")
    password = _write_only(500, "caldav: the password or app password.")
    include_all_day = ma.fields.Boolean(load_default=False, metadata={
        "description": "Whether all-day events block their whole days (off by default: "
                       "many calendars use them for reminders)"})
    write_back = ma.fields.Boolean(load_default=False, metadata={
        "description": "caldav only: write the provider's visits into this calendar "
                       "(summary such as \"Video visit (60 min)\", never a patient's name)"})
    interval_minutes = Integer(load_default=None, validate=INTERVAL, metadata={
        "description": "How often it is read (ics, caldav) or expected to be pushed (push); "
                       "default CALENDAR_SYNC_INTERVAL_MINUTES"})
    active = ma.fields.Boolean(dump_only=True)
    has_secret = ma.fields.Boolean(dump_only=True, metadata={
        "description": "Whether an address / credentials are stored (never shown)"})
    status = ma.fields.Enum(SyncStatus, by_value=True, dump_only=True, metadata={
        "description": "pending: never synced; ok: the last sync worked; error: the last "
                       "attempt failed (last_error), the busy time read before is kept"})
    last_synced_at = Instant(dump_only=True, allow_none=True)
    last_attempt_at = Instant(dump_only=True, allow_none=True)
    last_error = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "A machine code: http_404, unauthorized, timeout, invalid_icalendar, "
                       "url_not_allowed, secret_key_unavailable, ..."})
    stale = ma.fields.Boolean(dump_only=True, metadata={
        "description": "Not synced for CALENDAR_STALE_MULTIPLE times its interval: slot "
                       "answers say they were computed with a stale source"})
    stale_since = Instant(dump_only=True, allow_none=True)
    busy_count = ma.fields.Integer(dump_only=True, metadata={
        "description": "Busy intervals stored (only intervals: never titles or attendees)"})
    next_sync_at = Instant(dump_only=True)


class ConnectionUpdateSchema(PartialUpdate, ConnectionSchema):
    """PATCH body: any subset; a new url (and for caldav username / password) replaces the
    stored ones. The kind of a connection stays as created."""

    kind = ma.fields.Enum(ConnectionKind, by_value=True, dump_only=True)
    label = ma.fields.String(validate=ma.validate.Length(min=1, max=100))
    url = _write_only(2000, "A new address.")
    username = _write_only(200, "A new account name (caldav).")
    password = _write_only(500, "A new password (caldav).")
    include_all_day = ma.fields.Boolean()
    write_back = ma.fields.Boolean()
    interval_minutes = Integer(validate=INTERVAL)
    active = ma.fields.Boolean(metadata={"description": "false: its busy time stops "
                                                        "blocking and it is not synced"})


class ConnectionQueryArgsSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    stale = ma.fields.Boolean(load_default=False, metadata={
        "description": "true: only the connections flagged stale (the staff alert)"})


class BusyIntervalSchema(Schema):
    start = Instant(required=True)
    end = Instant(required=True, metadata={"example": "2026-12-01T11:00:00-07:00"})


class BusyPushSchema(Schema):
    """The whole busy time of a push connection for ``[start, end)``: what was stored for
    that window is replaced. Sending the same body again changes nothing."""

    start = Instant(required=True, metadata={"example": "2026-12-01T00:00:00-07:00"})
    end = Instant(required=True, metadata={"example": "2026-12-31T00:00:00-07:00"})
    intervals = ma.fields.List(ma.fields.Nested(BusyIntervalSchema), required=True,
                               validate=ma.validate.Length(max=MAX_PUSH_INTERVALS),
                               metadata={"description": "Each starts inside the window; "
                                                        "overlapping ones are merged"})


class BusyPushResultSchema(Schema):
    removed = ma.fields.Integer(metadata={"description": "Intervals of the window replaced"})
    stored = ma.fields.Integer(metadata={"description": "Intervals stored (after merging)"})
    connection = ma.fields.Nested(ConnectionSchema)
