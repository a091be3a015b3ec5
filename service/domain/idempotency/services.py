"""Idempotency keys (IETF draft-ietf-httpapi-idempotency-key-header): the storage rules.

A POST sent with an ``Idempotency-Key`` first claims the key with a not-completed record
(``begin``); the first answer is then stored (``finish``) and every later request with the
same key and the same request gets that answer again instead of running twice. Keys are
scoped to the API key that sent them and kept 24 hours.

The unique index on (api_key_id, idempotency_key) decides who claimed a key first when the
same key arrives twice at once: the loser's INSERT ... ON CONFLICT DO NOTHING inserts
nothing (one statement, no savepoint: a failed statement would abort the transaction on
PostgreSQL), and the loser then reads the winner's row, locked, to decide what to answer.

``settle`` needs no claim first: the request's change and its answer are written in one
transaction, the answer's INSERT its last statement. Whoever commits the key first wins; a
request that finds the key taken gives its own change up (the caller rolls it back) and
answers as the key's row says: its stored answer, or ``idempotency_key_reused``, or
``idempotency_key_in_progress`` while an older claim (``begin``) may still be running. On
PostgreSQL a second request with the key waits at that INSERT until the first one's
transaction has ended; two changes that exclude each other (the same slot) meet earlier, at
the change, and the loser's error answer is settled the same way.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.domain.errors import Conflict, InvalidInput
from service.domain.idempotency.models import IdempotencyRecord
from service.uow import UnitOfWork

RETENTION = timedelta(hours=24)
"""How long a key (and the answer stored with it) is kept."""

LEASE = timedelta(seconds=35)
"""How long a not-completed record blocks its key by default: the gunicorn worker timeout
(30 s; a sync worker still busy with a request after it is killed) plus a small margin. A
record older than its lease belongs to a request that can no longer be running; the next
request with the key takes it over. The service passes its own lease (``IDEMPOTENCY_LEASE_
SECONDS``, derived from ``GUNICORN_TIMEOUT``)."""

_ATTEMPTS = 3


@dataclass(frozen=True)
class Replay:
    """The stored first answer to a request, to send again."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


def begin(uow: UnitOfWork, *, api_key_id: uuid.UUID, key: str, method: str, path: str,
          request_hash: str, now: datetime, lease: timedelta = LEASE) -> Replay | None:
    """Claim ``key`` for this request (None: go ahead), or answer with the stored Replay.

    Raises ``idempotency_key_reused`` when the key was used with another request and
    ``idempotency_key_in_progress`` while the first request with the key may still be
    running, that is for ``lease`` after it began; the error's ``retry_after`` says how many
    seconds remain until the key is free (or answered).
    """
    with uow:
        session = uow.session
        for _ in range(_ATTEMPTS):
            claimed = session.execute(_insert(session).values(
                api_key_id=api_key_id, idempotency_key=key, method=method, path=path,
                request_hash=request_hash, completed=False, created_at=now,
                expires_at=now + RETENTION).on_conflict_do_nothing(
                index_elements=[IdempotencyRecord.api_key_id,
                                IdempotencyRecord.idempotency_key]).returning(IdempotencyRecord.id))
            if claimed.first() is not None:
                uow.commit()
                return None
            # The key exists (nothing was inserted, the transaction goes on).
            existing = session.scalars(
                select(IdempotencyRecord)
                .where(IdempotencyRecord.api_key_id == api_key_id,
                       IdempotencyRecord.idempotency_key == key)
                .with_for_update()
            ).one_or_none()
            if existing is None:
                continue  # deleted in between (abandoned or purged): claim it again
            replay = _decide(existing, method=method, path=path, request_hash=request_hash,
                             now=now, lease=lease)
            uow.commit()
            return replay
    raise _in_progress(timedelta(seconds=1))


def settle(uow: UnitOfWork, *, api_key_id: uuid.UUID, key: str, method: str, path: str,
           request_hash: str, now: datetime, status: int, body: str, headers: dict[str, str],
           lease: timedelta = LEASE) -> Replay | None:
    """Store this answer for ``key`` and commit it with what the request wrote in ``uow``'s
    transaction (None), or, when the key already has its request: the stored Replay to
    send instead (nothing committed; the caller rolls the request's change back). Raises
    ``idempotency_key_reused`` and ``idempotency_key_in_progress`` as ``begin`` does."""
    answer = {"completed": True, "response_status": status, "response_body": body,
              "response_headers": json.dumps(headers)}
    with uow:
        session = uow.session
        for _ in range(_ATTEMPTS):
            stored = session.execute(_insert(session).values(
                api_key_id=api_key_id, idempotency_key=key, method=method, path=path,
                request_hash=request_hash, created_at=now, expires_at=now + RETENTION,
                **answer).on_conflict_do_nothing(
                index_elements=[IdempotencyRecord.api_key_id,
                                IdempotencyRecord.idempotency_key]).returning(IdempotencyRecord.id))
            if stored.first() is not None:
                uow.commit()
                return None
            existing = session.scalars(
                select(IdempotencyRecord)
                .where(IdempotencyRecord.api_key_id == api_key_id,
                       IdempotencyRecord.idempotency_key == key)
                .with_for_update()
            ).one_or_none()
            if existing is None:
                continue  # deleted in between (abandoned or purged): store it again
            replay = _decide(existing, method=method, path=path, request_hash=request_hash,
                             now=now, lease=lease)
            if replay is not None:
                return replay
            for name, value in answer.items():  # the key was free again: this answer
                setattr(existing, name, value)
            uow.commit()
            return None
    raise _in_progress(timedelta(seconds=1))


def _insert(session: Session):  # type: ignore[no-untyped-def]
    """An INSERT that can skip a row whose key exists (one statement, no savepoint)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(IdempotencyRecord)


def _in_progress(remaining: timedelta) -> Conflict:
    return Conflict("A request with this Idempotency-Key is still running; retry later.",
                    code="idempotency_key_in_progress",
                    retry_after=max(1, math.ceil(remaining.total_seconds())))


def _decide(existing: IdempotencyRecord, *, method: str, path: str, request_hash: str,
            now: datetime, lease: timedelta) -> Replay | None:
    """What the row found for the key means for this request (the row is locked)."""
    if existing.expires_at < now:
        # Forgotten: the key starts over for this request (the row is reused in place, so
        # a concurrent request waiting on its lock sees the new claim).
        _claim(existing, method=method, path=path, request_hash=request_hash, now=now)
        existing.expires_at = now + RETENTION
        return None
    if (existing.request_hash, existing.method, existing.path) != (request_hash, method, path):
        raise InvalidInput("This Idempotency-Key was already used with a different request.",
                           code="idempotency_key_reused")
    if not existing.completed:
        lease_ends = existing.created_at + lease
        if lease_ends > now:
            raise _in_progress(lease_ends - now)
        # The first request can no longer be running (its worker was killed at the latest
        # at the worker timeout, which the lease outlasts): take the key over.
        _claim(existing, method=method, path=path, request_hash=request_hash, now=now)
        return None
    return Replay(status=existing.response_status or 200, body=existing.response_body or "",
                  headers=json.loads(existing.response_headers or "{}"))


def _claim(record: IdempotencyRecord, *, method: str, path: str, request_hash: str,
           now: datetime) -> None:
    record.method, record.path, record.request_hash = method, path, request_hash
    record.completed = False
    record.response_status = record.response_body = record.response_headers = None
    record.created_at = now


def _held(api_key_id: uuid.UUID, key: str, claimed_at: datetime | None) -> list[Any]:
    """The conditions of the in-progress claim on ``key`` made at ``claimed_at`` (a request
    that outlived its lease finds the key taken over and leaves the new claim alone)."""
    conditions: list[Any] = [IdempotencyRecord.api_key_id == api_key_id,
                             IdempotencyRecord.idempotency_key == key,
                             IdempotencyRecord.completed.is_(False)]
    if claimed_at is not None:
        conditions.append(IdempotencyRecord.created_at == claimed_at)
    return conditions


def finish(uow: UnitOfWork, *, api_key_id: uuid.UUID, key: str, status: int, body: str,
           headers: dict[str, str], claimed_at: datetime | None = None) -> None:
    """Store the first answer to the request holding ``key`` (the claim made at
    ``claimed_at``, the ``now`` given to ``begin``) and mark it completed."""
    with uow:
        uow.session.execute(
            update(IdempotencyRecord)
            .where(*_held(api_key_id, key, claimed_at))
            .values(completed=True, response_status=status, response_body=body,
                    response_headers=json.dumps(headers))
        )
        uow.commit()


def abandon(uow: UnitOfWork, *, api_key_id: uuid.UUID, key: str,
            claimed_at: datetime | None = None) -> None:
    """Forget the in-progress claim on ``key`` (the request failed; the client may retry)."""
    with uow:
        uow.session.execute(
            delete(IdempotencyRecord).where(*_held(api_key_id, key, claimed_at)))
        uow.commit()


def purge_expired(uow: UnitOfWork, *, now: datetime) -> int:
    """Delete the records past their 24 hours; returns how many were deleted."""
    with uow:
        result = uow.session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < now))
        uow.commit()
        return result.rowcount or 0
