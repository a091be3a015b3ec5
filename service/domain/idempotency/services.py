"""Idempotency keys (IETF draft-ietf-httpapi-idempotency-key-header): the storage rules.

A POST sent with an ``Idempotency-Key`` stores its first answer with the key (``settle``),
and every later request with the same key and the same request gets that answer again
instead of running twice. Keys are scoped to the API key that sent them and kept 24 hours.

``settle`` needs no claim first: the request's change and its answer are written in one
transaction, the answer's INSERT its last statement. The unique index on (api_key_id,
idempotency_key) decides who wrote a key first: the loser's INSERT ... ON CONFLICT DO
NOTHING inserts nothing (one statement, no savepoint: a failed statement would abort the
transaction on PostgreSQL); it then reads the winner's row, locked, gives its own change up
(the caller rolls it back) and answers as the row says: its stored answer, or
``idempotency_key_reused``, or ``idempotency_key_in_progress`` while a not-completed claim
left by an earlier version of the service (which claimed a key before running the request)
is within its lease. On
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

from sqlalchemy import delete, select
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


def settle(uow: UnitOfWork, *, api_key_id: uuid.UUID, key: str, method: str, path: str,
           request_hash: str, now: datetime, status: int, body: str, headers: dict[str, str],
           lease: timedelta = LEASE) -> Replay | None:
    """Store this answer for ``key`` and commit it with what the request wrote in ``uow``'s
    transaction (None), or, when the key already has its request: the stored Replay to
    send instead (nothing committed; the caller rolls the request's change back). Raises
    ``idempotency_key_reused``, or ``idempotency_key_in_progress`` while an earlier
    version's not-completed claim is within its lease."""
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


def purge_expired(uow: UnitOfWork, *, now: datetime) -> int:
    """Delete the records past their 24 hours; returns how many were deleted."""
    with uow:
        result = uow.session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < now))
        uow.commit()
        return result.rowcount or 0
