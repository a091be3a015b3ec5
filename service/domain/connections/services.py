"""Use cases of connected calendars: connect, change, remove, push busy time, and what the
slot search reads (busy intervals and stale sources).

A connection's address and credentials go in through ``create_connection`` /
``update_connection`` and are sealed at once (``secrets.py``); no use case returns them.
The busy intervals are replaced as a whole for a window: by the poller for iCalendar and
CalDAV connections (``polling.py``), by ``push_busy`` for push connections. Every write of
intervals also writes the connection's freshness (``last_synced_at``, ``status``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import delete, func, insert, select

from service.config import Settings
from service.domain.access.actor import Actor
from service.domain.availability import versions
from service.domain.connections.events import CalendarStaleEnded, CalendarWentStale
from service.domain.connections.models import (
    CalendarConnection,
    ConnectionKind,
    ExternalBusy,
    SyncStatus,
)
from service.domain.connections.policy import policy
from service.domain.connections.secrets import Sealed, SecretBox
from service.domain.connections.writeback import queue_future_visits
from service.domain.errors import InvalidInput, NotFound
from service.domain.providers.models import Provider
from service.domain.records import Page, apply_changes, paginate
from service.domain.time import to_utc
from service.domain.webhooks.services import check_target
from service.uow import UnitOfWork

MAX_PUSH_INTERVALS = 5000
MAX_PUSH_WINDOW = timedelta(days=400)
MIN_INTERVAL_MINUTES = 5
MAX_INTERVAL_MINUTES = 24 * 60
MAX_CONNECTIONS_PER_PROVIDER = 10


@dataclass(frozen=True)
class ConnectionRules:
    """What the settings say about connections (read once by the caller, injected)."""

    box: SecretBox
    default_interval_minutes: int = 15
    stale_multiple: float = 3.0
    allow_private: bool = False


def connection_rules(settings: Settings) -> ConnectionRules:
    return ConnectionRules(box=SecretBox(settings.calendar_secret_key),
                           default_interval_minutes=settings.calendar_sync_interval_minutes,
                           stale_multiple=settings.calendar_stale_multiple,
                           allow_private=settings.calendar_allow_private_targets)


@dataclass(frozen=True)
class PushResult:
    connection: CalendarConnection
    removed: int
    stored: int


# Connecting, changing, removing -------------------------------------------------------------


def _provider(uow: UnitOfWork, provider_id: uuid.UUID) -> Provider:
    provider = uow.session.get(Provider, provider_id)
    if provider is None:
        raise NotFound("No provider with this id.", code="provider_not_found")
    return provider


def _connection(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID,
                connection_id: uuid.UUID, *, lock: bool = False) -> CalendarConnection:
    record = policy.load(uow.session, actor, connection_id, lock=lock)
    if record.provider_id != provider_id:
        raise policy.missing.error()
    return record


def calendar_url(url: str, *, allow_private: bool) -> str:
    """An http(s) address the service may fetch (``webcal://`` is read as ``https://``)."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() in ("webcal", "webcals"):
        parts = parts._replace(scheme="https")
    url = urlunsplit(parts)
    try:
        return check_target(url, allow_private=allow_private)
    except InvalidInput as refused:
        raise InvalidInput(refused.detail.replace("webhook URL", "calendar address"),
                           code="calendar_url_not_allowed") from None


def _interval_seconds(minutes: int | None, rules: ConnectionRules) -> int:
    minutes = rules.default_interval_minutes if minutes is None else minutes
    if not MIN_INTERVAL_MINUTES <= minutes <= MAX_INTERVAL_MINUTES:
        raise InvalidInput(f"A sync interval is {MIN_INTERVAL_MINUTES} to "
                           f"{MAX_INTERVAL_MINUTES} minutes.", code="invalid_input")
    return minutes * 60


def _seal(kind: ConnectionKind, data: dict[str, Any], rules: ConnectionRules) -> str | None:
    if kind is ConnectionKind.PUSH:
        if data.get("url") or data.get("username") or data.get("password"):
            raise InvalidInput("A push connection has no address or credentials.",
                               code="invalid_input")
        return None
    if not data.get("url"):
        raise InvalidInput("An iCalendar or CalDAV connection needs its url.",
                           code="invalid_input")
    if kind is ConnectionKind.ICS and (data.get("username") or data.get("password")):
        raise InvalidInput("An iCalendar address carries its secret in the URL; no "
                           "username or password.", code="invalid_input")
    url = calendar_url(data["url"], allow_private=rules.allow_private)
    return rules.box.seal(Sealed(url=url, username=data.get("username"),
                                 password=data.get("password")))


def create_connection(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID, *,
                      rules: ConnectionRules, now: datetime, kind: str, label: str,
                      include_all_day: bool = False, write_back: bool = False,
                      interval_minutes: int | None = None, **secret: Any) -> CalendarConnection:
    """Connect one of the provider's calendars; polled connections sync at once."""
    policy.check_owner(actor, provider_id, "change")
    connection_kind = ConnectionKind(kind)
    if write_back and connection_kind is not ConnectionKind.CALDAV:
        raise InvalidInput("Visits are written back to CalDAV calendars only.",
                           code="invalid_input")
    interval = _interval_seconds(interval_minutes, rules)
    sealed = _seal(connection_kind, secret, rules)

    def work() -> CalendarConnection:
        _provider(uow, provider_id)
        count = len(uow.session.scalars(select(CalendarConnection.id).where(
            CalendarConnection.provider_id == provider_id)).all())
        if count >= MAX_CONNECTIONS_PER_PROVIDER:
            raise InvalidInput(f"A provider has at most {MAX_CONNECTIONS_PER_PROVIDER} "
                               f"connected calendars.", code="invalid_input")
        record = CalendarConnection(
            provider_id=provider_id, kind=connection_kind, label=label, secret=sealed,
            include_all_day=include_all_day, write_back=write_back,
            interval_seconds=interval, status=SyncStatus.PENDING, next_sync_at=now,
            created_at=now, updated_at=now)
        uow.session.add(record)
        uow.session.flush()
        if write_back:
            queue_future_visits(uow.session, record, now=now)
        return record

    return uow.run(work)


def list_connections(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID, *, page: int,
                     page_size: int) -> Page[CalendarConnection]:
    policy.check_owner(actor, provider_id, "read")
    query = (policy.visible(actor, select(CalendarConnection))
             .where(CalendarConnection.provider_id == provider_id)
             .order_by(CalendarConnection.created_at, CalendarConnection.id))
    with uow:
        _provider(uow, provider_id)
        return paginate(uow.session, query, page=page, page_size=page_size)


def oversee_connections(uow: UnitOfWork, actor: Actor, *, stale_only: bool, page: int,
                        page_size: int) -> Page[CalendarConnection]:
    """Every connection of the clinic (staff), the stale ones first: the staff alert."""
    policy.require(actor, "oversee")
    query = select(CalendarConnection).where(CalendarConnection.active.is_(True))
    if stale_only:
        query = query.where(CalendarConnection.stale_since.is_not(None))
    query = query.order_by(CalendarConnection.stale_since.is_(None),
                           CalendarConnection.stale_since, CalendarConnection.id)
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)


def get_connection(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID,
                   connection_id: uuid.UUID) -> CalendarConnection:
    policy.check_owner(actor, provider_id, "read")
    with uow:
        return _connection(uow, actor, provider_id, connection_id)


def update_connection(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID,
                      connection_id: uuid.UUID, *, rules: ConnectionRules, now: datetime,
                      expected_version: int | None,
                      changes: dict[str, Any]) -> CalendarConnection:
    """Change a connection's settings; a new address or credentials replace the old ones
    (all of them: url, and for CalDAV username and password) and sync at once."""
    policy.check_owner(actor, provider_id, "change")
    changes = dict(changes)
    secret = {name: changes.pop(name) for name in ("url", "username", "password")
              if name in changes}

    def work() -> CalendarConnection:
        record = _connection(uow, actor, provider_id, connection_id, lock=True)
        apply_changes(record, {}, expected_version=expected_version)
        if secret:
            record.secret = _seal(record.kind, secret, rules)
            record.etag = record.last_modified = None
            record.next_sync_at = now
        if "interval_minutes" in changes:
            record.interval_seconds = _interval_seconds(changes.pop("interval_minutes"), rules)
        if changes.get("write_back") and record.kind is not ConnectionKind.CALDAV:
            raise InvalidInput("Visits are written back to CalDAV calendars only.",
                               code="invalid_input")
        turned_on = (changes.get("write_back") and not record.write_back) or (
            changes.get("active") and not record.active and record.write_back)
        if "active" in changes and changes["active"] != record.active:
            # Its busy time starts or stops blocking: cached slot answers must not survive.
            versions.bump(uow.session, [versions.provider_scope(record.provider_id)])
            if not changes["active"]:
                end_stale(uow, record, now)  # switched off: no longer a stale source
        for name in ("label", "include_all_day", "write_back", "active"):
            if name in changes:
                setattr(record, name, changes[name])
        if turned_on:
            queue_future_visits(uow.session, record, now=now)
        if changes.get("include_all_day") is not None:
            record.etag = record.last_modified = None  # read the whole feed again
            record.next_sync_at = now
        record.updated_at = now
        uow.session.flush()
        return record

    return uow.run(work)


def remove_connection(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID,
                      connection_id: uuid.UUID, *, now: datetime) -> None:
    """Disconnect: its busy intervals stop blocking at once (the rows go with it); a stale
    alert about it is resolved."""
    policy.check_owner(actor, provider_id, "change")

    def work() -> None:
        record = _connection(uow, actor, provider_id, connection_id, lock=True)
        end_stale(uow, record, now)
        uow.session.execute(delete(ExternalBusy).where(
            ExternalBusy.connection_id == record.id))
        versions.bump(uow.session, [versions.provider_scope(record.provider_id)])
        uow.session.delete(record)

    uow.run(work)


def sync_soon(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID,
              connection_id: uuid.UUID, *, now: datetime) -> CalendarConnection:
    """Ask the scheduler to sync this connection at its next run (not a push one)."""
    policy.check_owner(actor, provider_id, "change")

    def work() -> CalendarConnection:
        record = _connection(uow, actor, provider_id, connection_id, lock=True)
        if record.kind is ConnectionKind.PUSH:
            raise InvalidInput("A push connection is synced by its integration.",
                               code="invalid_input")
        if record.claim_token is None:
            record.next_sync_at = now
        return record

    return uow.run(work)


# Storing busy time ----------------------------------------------------------------------------


def replace_busy(session, record: CalendarConnection,  # type: ignore[no-untyped-def]
                 intervals: Sequence[tuple[datetime, datetime]], *,
                 start: datetime | None = None, end: datetime | None = None) -> tuple[int, int]:
    """Replace the connection's intervals that start in ``[start, end)`` (everything when no
    window is given) by ``intervals``; returns (removed, stored)."""
    query = delete(ExternalBusy).where(ExternalBusy.connection_id == record.id)
    if start is not None and end is not None:
        query = query.where(ExternalBusy.starts_at >= start, ExternalBusy.starts_at < end)
    removed = session.execute(query.execution_options(synchronize_session=False)).rowcount
    if intervals:
        session.execute(insert(ExternalBusy), [
            {"id": uuid.uuid4(), "connection_id": record.id, "provider_id": record.provider_id,
             "starts_at": first, "ends_at": last} for first, last in intervals])
    record.busy_count = session.scalar(select(func.count()).select_from(ExternalBusy).where(
        ExternalBusy.connection_id == record.id)) or 0
    if removed or intervals:  # the provider's slots changed: cached answers must not survive
        versions.bump(session, [versions.provider_scope(record.provider_id)])
    return removed or 0, len(intervals)


def push_busy(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID,
              connection_id: uuid.UUID, *, start: datetime, end: datetime,
              intervals: Sequence[dict[str, datetime]], now: datetime) -> PushResult:
    """A push connection's whole busy time for ``[start, end)``: what was stored for that
    window is replaced by ``intervals`` (each must start in the window). The same body twice
    leaves the same state."""
    policy.check_owner(actor, provider_id, "push")
    start, end = to_utc(start), to_utc(end)
    if not start < end:
        raise InvalidInput("The window must end after it starts.", code="invalid_time_range")
    if end - start > MAX_PUSH_WINDOW:
        raise InvalidInput(f"Push at most {MAX_PUSH_WINDOW.days} days at a time.",
                           code="range_too_long")
    if len(intervals) > MAX_PUSH_INTERVALS:
        raise InvalidInput(f"Push at most {MAX_PUSH_INTERVALS} intervals at a time.",
                           code="invalid_input")
    pairs = []
    for item in intervals:
        first, last = to_utc(item["start"]), to_utc(item["end"])
        if not first < last:
            raise InvalidInput("Each interval must end after it starts.",
                               code="invalid_time_range")
        if not start <= first < end:
            raise InvalidInput("Each interval starts inside the window it replaces.",
                               code="busy_outside_window")
        pairs.append((first, last))
    merged = _merge(pairs)

    def work() -> PushResult:
        record = _connection(uow, actor, provider_id, connection_id, lock=True)
        if record.kind is not ConnectionKind.PUSH:
            raise InvalidInput("Only a push connection takes busy intervals through the API.",
                               code="not_a_push_connection")
        removed, stored = replace_busy(uow.session, record, merged, start=start, end=end)
        mark_synced(uow, record, now)
        uow.session.flush()
        return PushResult(connection=record, removed=removed, stored=stored)

    return uow.run(work)


def _merge(pairs: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for first, last in sorted(pairs):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return merged


def mark_synced(uow: UnitOfWork, record: CalendarConnection, now: datetime) -> None:
    """A successful sync: fresh again (its stale alert resolved), failures forgotten."""
    record.status = SyncStatus.OK
    record.last_synced_at = record.last_attempt_at = now
    record.last_error = None
    record.failures = 0
    end_stale(uow, record, now)
    record.updated_at = now


def end_stale(uow: UnitOfWork, record: CalendarConnection, now: datetime) -> None:
    """Clear the stale flag; when it was set, ``CalendarStaleEnded`` resolves its alert."""
    if record.stale_since is not None:
        record.stale_since = None
        uow.record(CalendarStaleEnded(connection_id=record.id, provider_id=record.provider_id,
                                      occurred_at=now))


# Freshness ------------------------------------------------------------------------------------


def flag_stale(uow: UnitOfWork, *, now: datetime, multiple: float) -> list[uuid.UUID]:
    """Flag the active connections not synced for ``multiple`` times their interval (or
    never, that long after they were made); clear the flag of those synced since. Returns
    the ids newly flagged. Each newly flagged one records ``CalendarWentStale`` (an alert for
    staff and its provider, once per stale episode); each cleared one ``CalendarStaleEnded``."""

    def work() -> list[uuid.UUID]:
        flagged = []
        rows = uow.session.scalars(select(CalendarConnection).where(
            CalendarConnection.active.is_(True))).all()
        for record in rows:
            since = record.last_synced_at or record.created_at
            stale = since < now - timedelta(seconds=record.interval_seconds * multiple)
            if stale and record.stale_since is None:
                record.stale_since = now
                flagged.append(record.id)
                uow.record(CalendarWentStale(connection_id=record.id,
                                             provider_id=record.provider_id, occurred_at=now))
            elif not stale:
                end_stale(uow, record, now)
        return flagged

    return uow.run(work)

