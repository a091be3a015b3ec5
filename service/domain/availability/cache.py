"""The shared slot-search cache: Redis when ``REDIS_URL`` is set, a small in-process store
otherwise (issue 14).

A cached answer is keyed by the query and by the versions of everything it depends on
(availability/versions.py), read in the request's transaction, so an answer is used only
while nothing it depends on has changed: the cache is never stale, only cold.

Redis is an accelerator, never a dependency: every call has a short timeout, and a failure
(down, slow, full) is logged once, makes the search compute as it would without a cache,
and leaves Redis alone for ``REDIS_RETRY_SECONDS`` so an outage costs one timeout per period
at most, not one per request.

A value read or written with ``keep=True`` is also kept in this process (``RedisStore.kept``,
``COPIES_KEPT`` at most; the memory store keeps none, being local): a caller that checks what
it uses before using it (the slot answers check their versions) tries that copy first and
reads Redis only when it is behind.

Metrics (prometheus_client, default registry; served by the ``/metrics`` endpoint):
``slot_cache_requests_total{outcome=hit|miss|error}`` and ``slot_search_seconds{cache=...}``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Protocol

import redis
from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

TTL_SECONDS = 600  # versions make answers exact; the TTL only bounds memory
REDIS_TIMEOUT_SECONDS = 0.05
REDIS_RETRY_SECONDS = 5.0
MEMORY_ENTRIES = 512
COPIES_KEPT = 64  # Redis values kept per process (``RedisStore.kept``): about 3.5 MB

REQUESTS = Counter("slot_cache_requests", "Slot searches by cache outcome (hit, miss, error).",
                   ["outcome"])
LATENCY = Histogram("slot_search_seconds", "Slot search time inside the service, by cache "
                    "outcome.", ["cache"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                             1.0, 2.5))
# A hit's children, looked up once (``labels`` costs as much as the rest of the counting).
HITS = REQUESTS.labels("hit")
HIT_LATENCY = LATENCY.labels("hit")


class Store(Protocol):
    def get(self, key: str, *, keep: bool = False) -> bytes | None: ...

    def set(self, key: str, value: bytes, *, keep: bool = False) -> None: ...

    def kept(self, key: str) -> bytes | None:
        """A remote store's value under ``key`` as this process last read or wrote it with
        ``keep=True`` (None if not kept, or if the store is local anyway): maybe no longer
        the store's value, so only for values whose use is checked (the slot answers check
        the versions they were computed under, ``answers.py``)."""
        ...


class MemoryStore:
    """Per-process, least recently used entries first out."""

    def __init__(self, entries: int = MEMORY_ENTRIES) -> None:
        self.entries = entries
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, *, keep: bool = False) -> bytes | None:
        with self._lock:
            found = self._data.get(key)
            if found is None or found[0] < time.monotonic():
                return None
            self._data.move_to_end(key)
            return found[1]

    def set(self, key: str, value: bytes, *, keep: bool = False) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + TTL_SECONDS, value)
            self._data.move_to_end(key)
            while len(self._data) > self.entries:
                self._data.popitem(last=False)

    def kept(self, key: str) -> bytes | None:
        return None  # in this process already

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class RedisStore:
    """Redis with a short timeout; failures answer ``None`` (a miss) and are logged."""

    def __init__(self, url: str, *, timeout: float = REDIS_TIMEOUT_SECONDS,
                 retry_after: float = REDIS_RETRY_SECONDS) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=timeout,
                                           socket_connect_timeout=timeout,
                                           retry_on_timeout=False)
        self.retry_after = retry_after
        self._down_until = 0.0
        # What this process last read or wrote with keep=True, per key (a GET of a 55 kB
        # answer costs about 35 us of this process's CPU, and Redis's own).
        self._copies: dict[str, bytes] = {}

    def _failed(self, error: Exception) -> None:
        if time.monotonic() >= self._down_until:
            log.warning("slot cache unavailable (%s); searching without it for %.0f s",
                        type(error).__name__, self.retry_after)
        self._down_until = time.monotonic() + self.retry_after
        REQUESTS.labels("error").inc()

    def get(self, key: str, *, keep: bool = False) -> bytes | None:
        if time.monotonic() < self._down_until:
            return None
        try:
            value: bytes | None = self.client.get(key)  # type: ignore[assignment]
        except (redis.RedisError, OSError) as error:
            self._failed(error)
            return None
        if keep:
            self._keep(key, value)
        return value

    def set(self, key: str, value: bytes, *, keep: bool = False) -> None:
        if time.monotonic() < self._down_until:
            return
        try:
            self.client.set(key, value, ex=TTL_SECONDS)
        except (redis.RedisError, OSError) as error:
            self._failed(error)
            return
        if keep:
            self._keep(key, value)

    def kept(self, key: str) -> bytes | None:
        return self._copies.get(key)

    def _keep(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._copies.pop(key, None)
            return
        if len(self._copies) >= COPIES_KEPT and key not in self._copies:
            self._copies.clear()
        self._copies[key] = value


class NullStore:
    """Never answers: every search computes (benchmarks of the engine itself)."""

    def get(self, key: str, *, keep: bool = False) -> bytes | None:
        return None

    def set(self, key: str, value: bytes, *, keep: bool = False) -> None:
        return None

    def kept(self, key: str) -> bytes | None:
        return None


_store: list[Store] = [MemoryStore()]


def configure(redis_url: str | None) -> Store:
    """Use Redis at this URL for every search of this process (the memory store if None)."""
    _store[0] = RedisStore(redis_url) if redis_url else MemoryStore()
    return _store[0]


def use(store: Store) -> Store:
    """Use this store from now on; the one it replaces is returned."""
    previous, _store[0] = _store[0], store
    return previous


def store() -> Store:
    return _store[0]
