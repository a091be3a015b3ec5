"""Slot answers cached by request, as the caller rendered them (issue 14).

A repeated search (same query, nothing it depends on changed) is answered with the bytes
rendered for it last time, after ONE query: the versions of every scope the answer was
computed under (``catalog`` and ``all``, and the providers', chairs' and ... scopes the
search read), stored with the bytes. Nothing else is read: which providers and locations a
query considers, their zones, the service's rules and terms change only with the
``catalog`` version, and staleness of connected calendars with the providers' versions
(availability/versions.py). The versions are read before anything an answer is computed
from, so an answer is never stored under versions older than its data: a stored answer is
used only while it is exactly what computing would give.

The clock moves the bookable window (minimum notice, horizon): an entry also records for
which windows the same answer holds (``search.Holds``); outside them the search computes
(its own cache, keyed by the data's versions, usually answers without loading anything).

Patient searches (their own visits are busy, their clearance is checked) always compute.
The store is the search's (``cache.store()``): Redis, or the memory store; a cache outage
costs speed, never an answer. With Redis, each process keeps a copy of the entries it read
or wrote (``RedisStore.kept``) and tries it first: checked against the versions like the
stored one, it answers without a GET; when it is behind, the store's entry is read (another
process may have stored the answer for the current versions).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time as clock
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from service.domain.access.actor import Actor
from service.domain.availability import cache, versions
from service.domain.availability.policy import policy
from service.domain.availability.search import SlotSearch, find_open_slots, open_slots
from service.uow import UnitOfWork

Render = Callable[[SlotSearch], bytes]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAGIC = b"SA1"
_MINUTE_US = 60_000_000
_DAY_US = 86_400_000_000


def _us(instant: datetime) -> int:
    return (instant - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class Entry:
    """A rendered answer, the versions it was computed under and the windows it holds for."""

    versions: dict[str, int]
    start: int  # the range searched, integer microseconds since the epoch (UTC)
    end: int
    notice_minutes: int
    horizon_days: int
    earliest: int
    earliest_up_to: int | None
    latest: int
    latest_up_to: int | None
    body: bytes

    def holds_at(self, now: datetime) -> bool:
        """Whether the bookable window of a search made ``now`` gives this same answer."""
        now_us = _us(now)
        earliest = max(now_us + self.notice_minutes * _MINUTE_US, self.start)
        latest = min(now_us + self.horizon_days * _DAY_US, self.end - 1)
        return (self.earliest <= earliest
                and (self.earliest_up_to is None or earliest <= self.earliest_up_to)
                and self.latest <= latest
                and (self.latest_up_to is None or latest <= self.latest_up_to))

    def encode(self) -> bytes:
        header = json.dumps([self.versions, self.start, self.end, self.notice_minutes,
                             self.horizon_days, self.earliest, self.earliest_up_to,
                             self.latest, self.latest_up_to], separators=(",", ":")).encode()
        return b"".join((_MAGIC, len(header).to_bytes(4, "big"), header, self.body))

    @classmethod
    def decode(cls, value: bytes) -> Entry | None:
        if not value.startswith(_MAGIC):
            return None
        size = int.from_bytes(value[3:7], "big")
        header = value[7:7 + size]
        fields = _HEADERS.get(header)
        try:
            if fields is None:
                fields = _remember_header(header, json.loads(header))
            return cls(*fields, body=value[7 + size:])
        except (ValueError, TypeError):  # not an entry of this format: computed again
            return None


# The headers of the entries read lately, decoded (the same bytes decode to the same
# values: a repeated search decodes its entry's header once per process, not per request).
_HEADERS: dict[bytes, list] = {}
_HEADERS_KEPT = 1024


def _remember_header(header: bytes, fields: list) -> list:
    if not isinstance(fields, list):
        raise TypeError("not an entry header")
    if len(_HEADERS) >= _HEADERS_KEPT:
        _HEADERS.clear()
    _HEADERS[header] = fields
    return fields


# The scopes each query's search depended on, as this process last computed it: read with
# the catalog's version next time (a guess, checked by the search; never an answer).
_SCOPES: dict[str, tuple[str, ...]] = {}
_SCOPES_KEPT = 1024


def request_key(*, service_type_id: uuid.UUID, start: date | datetime, end: date | datetime,
                default_zone: str, zone_name: str | None,
                provider_ids: Sequence[uuid.UUID] | None, location_id: uuid.UUID | None,
                patient_state: str | None, limit: int) -> str:
    """Everything of the query the answer depends on (times with their kind: a date is a
    local day)."""
    return _request_key(service_type_id, start, end, default_zone, zone_name,
                        tuple(provider_ids or ()), location_id, patient_state, limit)


@functools.lru_cache(maxsize=1024)  # a repeated search: its key is made once per process
def _request_key(service_type_id: uuid.UUID, start: date | datetime, end: date | datetime,
                 default_zone: str, zone_name: str | None,
                 provider_ids: tuple[uuid.UUID, ...], location_id: uuid.UUID | None,
                 patient_state: str | None, limit: int) -> str:
    def moment(value: date | datetime) -> str:
        return (f"t{value.isoformat()}" if isinstance(value, datetime)
                else f"d{value.isoformat()}")

    parts = [str(service_type_id), moment(start), moment(end), default_zone, zone_name,
             sorted({str(p) for p in provider_ids}), str(location_id), patient_state,
             limit]
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()
    return f"slots:answer:v1:{digest}"


def answer_open_slots(uow: UnitOfWork, actor: Actor, *, render: Render,
                      service_type_id: uuid.UUID, start: date | datetime,
                      end: date | datetime, now: datetime, default_zone: str,
                      zone_name: str | None = None,
                      provider_ids: Sequence[uuid.UUID] | None = None,
                      location_id: uuid.UUID | None = None,
                      patient_id: uuid.UUID | None = None, patient_state: str | None = None,
                      limit: int = 200) -> bytes:
    """``find_open_slots``, rendered by ``render``: the stored bytes of the same query when
    they are still exactly the answer, else computed, rendered and stored."""
    query = dict(service_type_id=service_type_id, start=start, end=end,
                 default_zone=default_zone, zone_name=zone_name, provider_ids=provider_ids,
                 location_id=location_id, patient_state=patient_state, limit=limit)
    if policy.searching_for(actor, patient_id) is not None:
        return render(find_open_slots(uow, actor, now=now, patient_id=patient_id, **query))
    began = clock.perf_counter()
    key = request_key(**query)
    store = cache.store()
    entry = _holding(store.kept(key), now)  # this process's copy of a remote store's value
    kept = entry is not None
    if not kept:
        entry = _holding(store.get(key, keep=True), now)
    with uow:
        current: dict[str, int] | None = None
        if entry is not None:
            current = versions.read_pooled(uow.session, entry.versions)
            if current != entry.versions and kept:
                # The copy is behind; the store may hold the answer for the current versions
                # (computed by another process since).
                entry = _holding(store.get(key, keep=True), now)
                if entry is not None:
                    current = versions.read_pooled(uow.session, entry.versions)
            if entry is not None and current == entry.versions:
                cache.HITS.inc()
                cache.HIT_LATENCY.observe(clock.perf_counter() - began)
                return entry.body
        if current is None or versions.CATALOG not in current:
            # With the scopes the same query depended on last time (a guess: the search
            # reads any other it needs), in one statement.
            current = versions.read(uow.session, [versions.CATALOG, *_SCOPES.get(key, ())])
        first = {scope: current[scope] for scope in (versions.CATALOG, versions.ALL)}
        # Read before the catalog rows the search reads next.
        found = open_slots(uow, actor, now=now, patient_id=None, catalog=current, **query)
    if len(_SCOPES) >= _SCOPES_KEPT and key not in _SCOPES:
        _SCOPES.clear()
    _SCOPES[key] = tuple(found.versions)
    body = render(found)
    holds = found.holds
    if holds is not None:
        service_type = found.service_type
        store.set(key, Entry(
            versions={**found.versions, **first}, start=_us(holds.start), end=_us(holds.end),
            notice_minutes=service_type.min_notice_minutes,
            horizon_days=service_type.horizon_days, earliest=_us(holds.earliest),
            earliest_up_to=None if holds.earliest_up_to is None
            else _us(holds.earliest_up_to),
            latest=_us(holds.latest),
            latest_up_to=None if holds.latest_up_to is None else _us(holds.latest_up_to),
            body=body).encode(), keep=True)
    return body


def _holding(stored: bytes | None, now: datetime) -> Entry | None:
    """The stored entry, if it decodes and its answer holds at ``now``."""
    entry = Entry.decode(stored) if stored is not None else None
    return entry if entry is not None and entry.holds_at(now) else None
