"""Schemas of the audit trail."""

from __future__ import annotations

import marshmallow as ma

from service.domain.audit.models import AuditAction, AuditOutcome
from service.extensions import Schema
from service.resources.fields import Instant


class AuditEventSchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    occurred_at = Instant(dump_only=True)
    key_id = ma.fields.UUID(dump_only=True, allow_none=True, metadata={
        "description": "The API key (principal) that made the request"})
    role = ma.fields.String(dump_only=True, allow_none=True)
    action = ma.fields.Enum(AuditAction, by_value=True, dump_only=True)
    resource_type = ma.fields.String(dump_only=True, metadata={"example": "vital_sign"})
    resource_id = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "The record's id; null for a collection"})
    patient_id = ma.fields.UUID(dump_only=True, allow_none=True, metadata={
        "description": "The patient whose data it was"})
    outcome = ma.fields.Enum(AuditOutcome, by_value=True, dump_only=True)
    method = ma.fields.String(dump_only=True)
    request_id = ma.fields.String(dump_only=True)
    client_address = ma.fields.String(dump_only=True, allow_none=True)


class AuditQueryArgsSchema(ma.Schema):
    patient_id = ma.fields.UUID(metadata={"description": "Rows about this patient"})
    since = Instant(metadata={"description": "At or after this time"})
    until = Instant(metadata={"description": "Before this time"})
    resource_type = ma.fields.String(validate=ma.validate.Length(max=40))
    key_id = ma.fields.UUID(metadata={"description": "Rows of this API key"})
