"""Schemas of API keys (``/api/v1/api-keys``) and of the calling key (``/api/v1/me``)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from service.db import utcnow
from service.domain.access.actor import Role
from service.extensions import Schema
from service.resources.fields import Instant, text

ROLE_TEXT = ("admin, staff, provider (bound to a provider), patient (bound to a patient) "
             "or integration")


def _role(**kwargs: Any) -> ma.fields.Enum:
    return ma.fields.Enum(Role, by_value=True, metadata={"description": ROLE_TEXT}, **kwargs)


STATES = ("active", "expired", "revoked")


class ApiKeySchema(Schema):
    """A key as its managers see it: never its secret, never its hash."""

    id = ma.fields.UUID(dump_only=True, metadata={
        "description": "The key's id (the audit trail's key_id)"})
    public_id = ma.fields.String(dump_only=True, metadata={
        "description": "The third part of the key (ck_<role>_<public id>_<secret>)",
        "example": "k3v9q2m8x1ab"})
    prefix = ma.fields.String(dump_only=True, metadata={
        "description": "What the key starts with, to recognize it",
        "example": "ck_patient_k3v9q2m8x1ab"})
    role = _role(required=True)
    label = text(100, required=True, metadata={
        "description": "Who or what uses the key", "example": "Patient portal: J. Rivera"})
    patient_id = ma.fields.UUID(allow_none=True, load_default=None, metadata={
        "description": "The patient a patient key acts for (required for, and only for, "
                       "role patient)"})
    provider_id = ma.fields.UUID(allow_none=True, load_default=None, metadata={
        "description": "The provider a provider key acts for (required for, and only for, "
                       "role provider)"})
    expires_at = Instant(allow_none=True, load_default=None, metadata={
        "description": "When the key stops working (401 api_key_expired after); null: "
                       "never"})
    created_at = Instant(dump_only=True)
    revoked_at = Instant(dump_only=True, allow_none=True)
    state = ma.fields.Method("_state", dump_only=True, metadata={
        "type": "string", "enum": list(STATES), "description": "At the time of the answer"})

    @staticmethod
    def _state(record: Any) -> str:
        return str(record.state(utcnow()))


class ApiKeyCreatedSchema(ApiKeySchema):
    key = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "The key itself: shown once, in this answer only (the service "
                       "keeps a hash). Send it as 'Authorization: Bearer <key>'. A replay "
                       "of this POST (same Idempotency-Key) answers null here.",
        "example": "ck_patient_k3v9q2m8x1ab_Qm9yZ2V0LW1lLW5vdC1hLXJlYWwta2V5LWV2ZXI"})


class ApiKeyQueryArgsSchema(ma.Schema):
    role = _role()
    patient_id = ma.fields.UUID()
    provider_id = ma.fields.UUID()
    include_revoked = ma.fields.Boolean(load_default=False, metadata={
        "description": "Also list revoked keys (expired ones are always listed)"})


class MeSchema(Schema):
    """The calling key: its role and whom it acts for."""

    key_id = ma.fields.UUID(attribute="id", metadata={
        "description": "The key's id (the audit trail's key_id)"})
    public_id = ma.fields.String(metadata={"example": "k3v9q2m8x1ab"})
    prefix = ma.fields.String(metadata={"example": "ck_patient_k3v9q2m8x1ab"})
    role = _role()
    label = ma.fields.String()
    patient_id = ma.fields.UUID(allow_none=True, metadata={
        "description": "The patient a patient key acts for; null for other roles"})
    provider_id = ma.fields.UUID(allow_none=True, metadata={
        "description": "The provider a provider key acts for; null for other roles"})
    expires_at = Instant(allow_none=True, metadata={
        "description": "When the key stops working; null: never"})
    created_at = Instant()
