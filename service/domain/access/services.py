"""Issuing, listing, revoking and checking API keys.

A key is ``ck_<role>_<public id>_<secret>``: the readable prefix names the role, the public
id finds the row, and the whole key's SHA-256 is compared in constant time. The secret has
256 bits of entropy, so a fast hash is the right tool (as for GitHub or Stripe tokens); a
slow password hash would only add latency to every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select

from service.db import utcnow
from service.domain.access.actor import Actor, Role
from service.domain.access.models import ApiKey
from service.domain.errors import InvalidInput, NotFound, Unauthenticated
from service.domain.patients.models import Patient
from service.domain.providers.models import Provider
from service.uow import UnitOfWork

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _public_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(12))


@dataclass(frozen=True)
class IssuedKey:
    record: ApiKey
    key: str  # shown once


def issue_key(uow: UnitOfWork, *, role: Role | str, label: str,
              provider_id: uuid.UUID | None = None, patient_id: uuid.UUID | None = None,
              key: str | None = None) -> IssuedKey:
    """Create a key. ``key`` lets the demo seed install its documented local-only keys."""
    role = Role(role)
    if role is Role.PROVIDER and provider_id is None:
        raise InvalidInput("A provider key must be bound to a provider.", code="key_binding")
    if role is Role.PATIENT and patient_id is None:
        raise InvalidInput("A patient key must be bound to a patient.", code="key_binding")
    if role not in (Role.PROVIDER,) and provider_id is not None:
        raise InvalidInput("Only a provider key is bound to a provider.", code="key_binding")
    if role not in (Role.PATIENT,) and patient_id is not None:
        raise InvalidInput("Only a patient key is bound to a patient.", code="key_binding")

    def work() -> IssuedKey:
        if provider_id is not None and uow.session.get(Provider, provider_id) is None:
            raise NotFound("No such provider.", code="provider_not_found")
        if patient_id is not None and uow.session.get(Patient, patient_id) is None:
            raise NotFound("No such patient.", code="patient_not_found")
        public_id = _public_id()
        if key is None:
            issued = f"ck_{role.value}_{public_id}_{secrets.token_urlsafe(32)}"
        else:
            issued = key
            parsed = _parse(key)
            if parsed is None or parsed[0] != role.value:
                raise InvalidInput("Malformed key.", code="key_format")
            public_id = parsed[1]
        record = ApiKey(public_id=public_id, secret_hash=hash_key(issued), label=label,
                        role=role, provider_id=provider_id, patient_id=patient_id)
        uow.session.add(record)
        return IssuedKey(record=record, key=issued)

    return uow.run(work)


def _parse(key: str) -> tuple[str, str, str] | None:
    parts = key.split("_", 3)
    if len(parts) != 4 or parts[0] != "ck" or parts[1] not in Role.__members__.values():
        return None
    return parts[1], parts[2], parts[3]


def authenticate(uow: UnitOfWork, key: str) -> Actor:
    parsed = _parse(key)
    if parsed is None:
        raise Unauthenticated("The API key is malformed.", code="invalid_api_key")
    with uow:
        record = uow.session.scalar(select(ApiKey).where(ApiKey.public_id == parsed[1]))
        if record is None or not hmac.compare_digest(record.secret_hash, hash_key(key)):
            raise Unauthenticated("The API key is not valid.", code="invalid_api_key")
        if record.revoked_at is not None:
            raise Unauthenticated("The API key was revoked.", code="revoked_api_key")
        return Actor(key_id=record.id, role=record.role, provider_id=record.provider_id,
                     patient_id=record.patient_id)


def list_keys(uow: UnitOfWork, *, include_revoked: bool = False) -> list[ApiKey]:
    with uow:
        query = select(ApiKey).order_by(ApiKey.created_at)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        return list(uow.session.scalars(query))


def revoke_key(uow: UnitOfWork, *, public_id: str) -> ApiKey:
    def work() -> ApiKey:
        record = uow.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
        if record is None:
            raise NotFound("No such API key.", code="api_key_not_found")
        if record.revoked_at is None:
            record.revoked_at = utcnow()
        return record

    return uow.run(work)
