"""Issuing, listing, revoking and checking API keys.

A key is ``ck_<role>_<public id>_<secret>``: the readable prefix names the role, the public
id finds the row, and the whole key's SHA-256 is compared in constant time. The secret has
256 bits of entropy, so a fast hash is the right tool (as for GitHub or Stripe tokens); a
slow password hash would only add latency to every request.

Keys are issued by the command line (``issue_key``, the clinic itself) or through the API
(``create_key``, as an actor): an admin issues any key; staff issue, list and revoke patient
keys only (a front end acting for a signed-in patient). A key may expire; an expired or
revoked key is refused (401) with its own code.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, false, select

from service.db import utcnow
from service.domain.access import policy
from service.domain.access.actor import Actor, Role
from service.domain.access.models import ApiKey
from service.domain.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from service.domain.patients.models import Patient
from service.domain.providers.models import Provider
from service.domain.records import Page, paginate
from service.uow import UnitOfWork

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_PUBLIC_ID = re.compile(r"[a-z0-9]{1,16}")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _public_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(12))


@dataclass(frozen=True)
class IssuedKey:
    record: ApiKey
    key: str  # shown once

    def __getattr__(self, name: str) -> Any:  # a schema reads the record's fields
        return getattr(self.record, name)


def issue_key(uow: UnitOfWork, *, role: Role | str, label: str,
              provider_id: uuid.UUID | None = None, patient_id: uuid.UUID | None = None,
              key: str | None = None, expires_at: datetime | None = None,
              now: datetime | None = None) -> IssuedKey:
    """Create a key. ``key`` lets the demo seed install its documented local-only keys;
    ``expires_at`` (offset-aware, in the future) ends its validity."""
    role = Role(role)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidInput("A key's expiry needs an offset (RFC 3339).",
                               code="naive_datetime")
        if expires_at <= (now or utcnow()):
            raise InvalidInput("A key's expiry must be in the future.",
                               code="invalid_key_expiry")
    policy.keys.check_binding(role, provider_id=provider_id, patient_id=patient_id)

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
                        role=role, provider_id=provider_id, patient_id=patient_id,
                        expires_at=expires_at)
        uow.session.add(record)
        return IssuedKey(record=record, key=issued)

    return uow.run(work)


def _parse(key: str) -> tuple[str, str, str] | None:
    parts = key.split("_", 3)
    if len(parts) != 4 or parts[0] != "ck" or parts[1] not in Role.__members__.values():
        return None
    if not _PUBLIC_ID.fullmatch(parts[2]):  # the row is looked up by it: letters and digits
        return None
    return parts[1], parts[2], parts[3]


@dataclass(frozen=True)
class _Known:
    until: float  # time.monotonic() after which the key is looked up again
    key_id: uuid.UUID
    actor: Actor
    expires_at: datetime | None


# Keys this process looked up lately, by the SHA-256 of the whole key (so only a key that
# matched is ever found here). A revocation made in this process removes its key at once;
# one made elsewhere (another worker, the command line) takes effect within the cache's
# seconds. Expiry is checked on every use.
_known: dict[str, _Known] = {}
_known_lock = threading.Lock()
KNOWN_KEYS_MAX = 10_000


def forget_key(key_id: uuid.UUID | None = None) -> None:
    """Drop a key (or, without an id, every key) from this process's lookup cache."""
    with _known_lock:
        if key_id is None:
            _known.clear()
        else:
            for digest in [d for d, k in _known.items() if k.key_id == key_id]:
                del _known[digest]


def _refuse_expired(expires_at: datetime | None, now: datetime | None) -> None:
    if expires_at is not None and expires_at <= (now or utcnow()):
        raise Unauthenticated("The API key expired; ask for a new one.", code="api_key_expired")


def authenticate(uow: UnitOfWork | Callable[[], UnitOfWork], key: str, *,
                 now: datetime | None = None, cache_seconds: float = 0.0) -> Actor:
    """The actor of a key; ``cache_seconds`` > 0 lets this process reuse a lookup that long
    (``API_KEY_CACHE_SECONDS``: the bound on a revocation made by another process).
    ``uow`` may be a function giving one, called only when the key must be looked up."""
    parsed = _parse(key)
    if parsed is None:
        raise Unauthenticated("The API key is malformed.", code="invalid_api_key")
    digest = hash_key(key)
    if cache_seconds > 0:
        known = _known.get(digest)
        if known is not None and known.until > time.monotonic():
            _refuse_expired(known.expires_at, now)
            return known.actor
    if not isinstance(uow, UnitOfWork):
        uow = uow()
    with uow:
        record = uow.session.scalar(select(ApiKey).where(ApiKey.public_id == parsed[1]))
        if record is None or not hmac.compare_digest(record.secret_hash, digest):
            raise Unauthenticated("The API key is not valid.", code="invalid_api_key")
        if record.revoked_at is not None:
            raise Unauthenticated("The API key was revoked.", code="revoked_api_key")
        _refuse_expired(record.expires_at, now)
        actor = Actor(key_id=record.id, role=record.role, provider_id=record.provider_id,
                      patient_id=record.patient_id)
        if cache_seconds > 0:
            with _known_lock:
                if len(_known) >= KNOWN_KEYS_MAX:
                    _known.clear()
                _known[digest] = _Known(time.monotonic() + cache_seconds, record.id, actor,
                                        record.expires_at)
        return actor


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

    revoked = uow.run(work)
    forget_key(revoked.id)
    return revoked


# Keys managed through the API, as an actor ---------------------------------------------------

# Which keys each role may issue, list and revoke (an admin: any; staff: patient keys only).
ISSUABLE: dict[Role, frozenset[Role]] = {
    Role.ADMIN: frozenset(Role),
    Role.STAFF: frozenset({Role.PATIENT}),
}


def _issuable(actor: Actor) -> frozenset[Role]:
    return ISSUABLE.get(actor.role, frozenset())


def visible_keys(actor: Actor, query: Select) -> Select:
    """Restrict a query over keys to those the actor manages (admins: all; staff: patient
    keys; anyone else: none)."""
    roles = _issuable(actor)
    if roles == frozenset(Role):
        return query
    if not roles:
        return query.where(false())
    return query.where(ApiKey.role.in_(sorted(roles)))


def create_key(uow: UnitOfWork, actor: Actor, *, role: Role | str, label: str,
               provider_id: uuid.UUID | None = None, patient_id: uuid.UUID | None = None,
               expires_at: datetime | None = None, now: datetime) -> IssuedKey:
    """Issue a key for a front end or an integration; its secret is in the answer only."""
    role = Role(role)
    if role not in _issuable(actor):
        raise Forbidden(f"The {actor.role.value} role may not issue {role.value} keys.",
                        code="key_role_not_allowed",
                        allowed_roles=sorted(r.value for r in _issuable(actor)))
    return issue_key(uow, role=role, label=label, provider_id=provider_id,
                     patient_id=patient_id, expires_at=expires_at, now=now)


def search_keys(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                role: Role | None = None, patient_id: uuid.UUID | None = None,
                provider_id: uuid.UUID | None = None,
                include_revoked: bool = False) -> Page[ApiKey]:
    """The keys the actor manages, oldest first; revoked ones only when asked for."""
    query = visible_keys(actor, select(ApiKey)).order_by(ApiKey.created_at, ApiKey.id)
    if role is not None:
        query = query.where(ApiKey.role == role)
    if patient_id is not None:
        query = query.where(ApiKey.patient_id == patient_id)
    if provider_id is not None:
        query = query.where(ApiKey.provider_id == provider_id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)


def _find(uow: UnitOfWork, actor: Actor, key_id: uuid.UUID) -> ApiKey:
    record = uow.session.scalar(visible_keys(actor, select(ApiKey)).where(ApiKey.id == key_id))
    if record is None:
        raise NotFound("No such API key.", code="api_key_not_found")
    return record


def get_key(uow: UnitOfWork, actor: Actor, key_id: uuid.UUID) -> ApiKey:
    with uow:
        return _find(uow, actor, key_id)


def revoke(uow: UnitOfWork, actor: Actor, key_id: uuid.UUID, *, now: datetime) -> ApiKey:
    """Revoke a key the actor manages (again: nothing changes). It is refused at once."""

    def work() -> ApiKey:
        record = _find(uow, actor, key_id)
        if record.revoked_at is None:
            record.revoked_at = now
        return record

    revoked = uow.run(work)
    forget_key(revoked.id)
    return revoked


def current_key(uow: UnitOfWork, actor: Actor) -> ApiKey:
    """The calling key's own record (``GET /me``)."""
    if actor.key_id is None:
        raise NotFound("The caller has no API key.", code="api_key_not_found")
    with uow:
        record = uow.session.get(ApiKey, actor.key_id)
        if record is None:
            raise NotFound("No such API key.", code="api_key_not_found")
        return record
