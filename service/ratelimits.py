"""Rate limits: per API key by its role, per client address without a key, tighter on
refused keys and on calendar feeds. A small extension of our own over the ``limits``
library (its limit notation, its storage keys, its Redis storage), fixed windows.

The counters live in Redis when ``REDIS_URL`` is set, so every gunicorn worker and every
instance shares them; otherwise in each process's memory (the local default). The limits
are checked before the key itself (so a guessed key counts against its address):

- ``per-key``: requests carrying an API key, counted by the key's public id, at the limit
  of the role its prefix names (``RATE_LIMIT_ROLES``). A made-up public id gets a fresh
  counter, but its request is refused (401), which ``key-checks`` counts.
- ``key-checks``: refused keys (401) per client address (``RATE_LIMIT_KEY_CHECKS``): read
  by every limited request (refused once used up), counted after a 401 answer.
- ``anonymous``: requests without a key per client address (``RATE_LIMIT_ANONYMOUS``),
  calendar feeds aside; the probes are exempt from every limit (load balancers poll them),
  and so are requests that match no route.
- ``calendar-feeds``: feed fetches per client address (``RATE_LIMIT_CALENDAR_FEEDS``).

A request's limits are taken shortest window first (in the order above for equal
windows), and the check stops at the first one used up (the limits after it are not
counted). A refused request gets 429 ``rate_limited`` (problem+json) with ``Retry-After``;
every limited answer carries the IETF ``RateLimit-Policy`` and ``RateLimit`` headers
(draft-ietf-httpapi-ratelimit-headers: ``"per-key";q=600;w=60`` and
``"per-key";r=599;t=60``) of the limit used up, else of the one this kind of caller spends
(per key, anonymous, feed) rather than the refused-key count. If the storage cannot be
reached the request goes through (the limits fail open), with one log line and
``clinic_rate_limit_storage_errors_total``. ``RATELIMIT_ENABLED=False`` (app config)
turns the limits off.

The counters are those flask-limiter kept before this module replaced it (instances of
both share them during a rolling deploy): a limit's storage key is ``limits``' own
(``RateLimitItem.key_for``) of ``clinic-ratelimit``, the client (``key:<public id>`` or
``addr:<address>``) and the limit's name, e.g.
``LIMITS:LIMITER/clinic-ratelimit/key:abc/per-key/600/1/minute`` in Redis, a fixed window
counted as ``limits`` counts it (the window starts at its first count). With Redis, a
request costs one round trip (``OneTripRedisStorage``: one script counts and reads its
limits); a refused key (401) adds one, its ``key-checks`` count.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from flask import Blueprint, Flask, Response, request
from limits import RateLimitItem, parse_many
from limits.storage import RedisStorage, Storage, storage_from_string

from service.auth import CALENDAR_FEED_PATH
from service.config import Settings
from service.errors import problem
from service.metrics import RATE_LIMIT_STORAGE_ERRORS, RATE_LIMITED

log = logging.getLogger(__name__)

# ck_<role>_<public id>_<secret>
KEY_PATTERN = re.compile(r"ck_([a-z]+)_([A-Za-z0-9]+)_")
PROBES = frozenset({"/healthz", "/readyz"})
STORAGE_TIMEOUT_SECONDS = 0.5  # a Redis that stopped answering costs each request this much
MEMORY_STORAGE = "clinic-memory://"
KEY_PREFIX = "clinic-ratelimit"
KEY_CHECKS = "key-checks"
CLIENTS_KEPT = 1024  # the counter keys of so many callers remembered; then forgotten at once


@dataclasses.dataclass(frozen=True, eq=False)
class Limit:
    """One limit item (``limits``' notation: ``600/minute``) under its name (``scope``),
    counted per API key (``by_key``) or per client address; counted when checked, or only
    read then and counted after a 401 answer (``key-checks``)."""

    scope: str
    item: RateLimitItem
    by_key: bool = False
    counted: bool = True
    amount: int = dataclasses.field(init=False)
    expiry: int = dataclasses.field(init=False)  # the window, seconds
    policy: str = dataclasses.field(init=False)  # its RateLimit-Policy header

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", self.item.amount)
        object.__setattr__(self, "expiry", self.item.get_expiry())
        object.__setattr__(self, "policy", f'"{self.scope}";q={self.amount};w={self.expiry}')

    def key(self, client: str) -> str:
        """The counter's storage key (unprefixed): limits' own, as flask-limiter built it."""
        return self.item.key_for(KEY_PREFIX, client, self.scope)

    def used_up(self, count: int) -> bool:
        """Whether ``count`` (after this request's count, or read) refuses the request."""
        return count > self.amount if self.counted else count >= self.amount


def parsed(scope: str, text: str, *, by_key: bool = False, counted: bool = True
           ) -> tuple[Limit, ...]:
    return tuple(Limit(scope, item, by_key, counted) for item in parse_many(text))


Check = tuple[Limit, str]  # a limit and its counter's key, for one request
Window = tuple[int, float]  # a counter after the check: its count, when its window ends


def _breached(checks: Sequence[Check], windows: Sequence[Window]) -> bool:
    return len(windows) > 0 and checks[len(windows) - 1][0].used_up(windows[-1][0])


def take_each(storage: Storage | MemoryCounters, checks: Sequence[Check]) -> list[Window]:
    """Count (or read) ``checks`` in order through a storage's ``incr``, ``get`` and
    ``get_expiry`` (``limits'`` own storages, ``MemoryCounters``),
    stopping at the first limit used up: the counters' figures."""
    windows: list[Window] = []
    for limit, key in checks:
        count = storage.incr(key, limit.expiry) if limit.counted else storage.get(key)
        windows.append((count, storage.get_expiry(key)))
        if limit.used_up(count):
            break
    return windows


class MemoryCounters:
    """Fixed-window counters in this process's memory (no ``REDIS_URL``), as ``limits``'
    memory storage keeps them (a window starts at its first count; a read of no counter is
    0, ending now); expired counters are dropped at most once every ``SWEEP_SECONDS``, in
    the request that counts (no timer thread)."""

    SWEEP_SECONDS = 1.0

    def __init__(self) -> None:
        self._counters: dict[str, list[Any]] = {}  # key -> [count, window end]
        self._lock = threading.RLock()  # (take holds it across incr's and the reads)
        self._next_sweep = 0.0

    def take(self, checks: Sequence[Check]) -> list[Window]:
        """``take_each`` under the lock (a request's counts and reads seen together), after
        dropping expired counters if a sweep is due."""
        now = time.time()
        with self._lock:
            if now >= self._next_sweep:
                self._next_sweep = now + self.SWEEP_SECONDS
                counters = self._counters
                for key in [key for key, (_, ends) in counters.items() if ends <= now]:
                    del counters[key]
            return take_each(self, checks)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            counter = self._counters.get(key)
            if counter is None or counter[1] <= now:
                counter = self._counters[key] = [0, now + expiry]
            counter[0] += amount
            return int(counter[0])

    def get(self, key: str) -> int:
        counter = self._counters.get(key)
        return int(counter[0]) if counter is not None and counter[1] > time.time() else 0

    def get_expiry(self, key: str) -> float:
        counter = self._counters.get(key)
        now = time.time()
        return float(counter[1]) if counter is not None and counter[1] > now else now


class OneTripRedisStorage(RedisStorage):
    """limits' Redis storage (the same keys, the same fixed-window counters: ``incr``
    starts a window at its first count), with ``take``: a request's counts and reads in
    one script, one round trip, stopping at the first limit used up; each counter's figure
    comes back with its time to live. ``clinic-redis://`` (or ``clinic-rediss://``): a
    ``redis://`` URL (a single server: the script touches several keys)."""

    STORAGE_SCHEME = ["clinic-redis", "clinic-rediss"]  # (else it would take over redis://)
    SCRIPT_REQUEST = """
local found = {}
for i, key in ipairs(KEYS) do
  local counted = ARGV[i * 3 - 2] == "1"
  local amount = tonumber(ARGV[i * 3 - 1])
  local count
  if counted then
    count = redis.call("incrby", key, 1)
    if count == 1 then
      redis.call("expire", key, ARGV[i * 3])
    end
  else
    count = tonumber(redis.call("get", key) or "0")
  end
  found[#found + 1] = count
  found[#found + 1] = redis.call("ttl", key)
  if (counted and count > amount) or (not counted and count >= amount) then
    break
  end
end
return found
"""

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix("clinic-"), **options)

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_request = self.get_connection().register_script(self.SCRIPT_REQUEST)

    def take(self, checks: Sequence[Check]) -> list[Window]:
        args: list[int] = []
        for limit, _ in checks:
            args += (int(limit.counted), limit.amount, limit.expiry)
        found = self.lua_request([self.prefixed_key(key) for _, key in checks], args)
        now = time.time()  # a key without a window (ttl -2): 0, ending now, as get_expiry
        return [(int(found[index]), max(int(found[index + 1]), 0) + now)
                for index in range(0, len(found), 2)]


def _storage_uri(redis_url: str | None) -> str:
    """The counters' storage: Redis through ``OneTripRedisStorage`` (``redis://`` and
    ``rediss://`` URLs; any other scheme limits handles itself), else this process's memory."""
    if not redis_url:
        return MEMORY_STORAGE
    if redis_url.startswith(("redis://", "rediss://")):
        return "clinic-" + redis_url
    return redis_url


_CLAIMED = "clinic.claimed_key"  # the request's WSGI environ: the header read once


def _claimed_key(environ: dict[str, Any]) -> tuple[str, str] | None:
    """The (role, public id) an ``Authorization: Bearer ck_...`` header names (unchecked)."""
    claimed: tuple[str, str] | None | bool = environ.get(_CLAIMED, False)
    if claimed is not False:
        return claimed  # type: ignore[return-value]
    claimed = None
    scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "bearer":
        found = KEY_PATTERN.match(token.strip())
        claimed = (found.group(1), found.group(2)) if found else None
    environ[_CLAIMED] = claimed
    return claimed


class RouteLimitManager:
    """Which routes the limits apply to: all but the static files and those declared
    exempt (a view function, or a blueprint's routes), worked out once per endpoint;
    declaring an exemption forgets it."""

    def __init__(self) -> None:
        self._views: set[Callable[..., Any]] = set()
        self._blueprints: set[str] = set()
        self._limited: dict[str, bool] = {}

    def add_route_exemption(self, view: Callable[..., Any]) -> None:
        self._views.add(view)
        self._limited.clear()

    def add_blueprint_exemption(self, blueprint: str) -> None:
        self._blueprints.add(blueprint)
        self._limited.clear()

    def limited(self, view_functions: dict[str, Callable[..., Any]], endpoint: str) -> bool:
        found = self._limited.get(endpoint)
        if found is None:
            blueprint, _, name = endpoint.rpartition(".")
            found = self._limited[endpoint] = not (
                name == "static" or view_functions.get(endpoint) in self._views
                or (blueprint and blueprint in self._blueprints))
        return found


_CHECKED = "clinic.ratelimit_checked"  # the request's environ: its checks and windows


class RateLimiter:
    """The extension: checks a request's limits before the request (before the key check),
    refusing it with 429 when one is used up; after it, the headers, and a 401's
    ``key-checks`` count. ``app.extensions["limiter"]`` holds it."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.enabled = bool(app.config.setdefault("RATELIMIT_ENABLED", True))
        self.limit_manager = RouteLimitManager()
        self._view_functions = app.view_functions  # (the app's own dict: routes added later)
        self.storage: Any = None
        roles = dict(settings.rate_limit_roles)
        self._roles = roles
        self._lowest_role_limit = min(roles.values())  # an unknown role's (refused anyway)
        key_checks = parsed(KEY_CHECKS, settings.rate_limit_key_checks, counted=False)
        # A request's limits, in the order they are checked: shortest window first
        # (sorted stably, as flask-limiter did), for each kind of caller.
        self._ordered: dict[Any, tuple[Limit, ...]] = {
            "anonymous": _in_order(key_checks + parsed(
                "anonymous", settings.rate_limit_anonymous)),
            "feed": _in_order(key_checks + parsed(
                "calendar-feeds", settings.rate_limit_calendar_feeds))}
        for text in roles.values():
            self._ordered["per-key", text] = _in_order(
                parsed("per-key", text, by_key=True) + key_checks)
        self._known: dict[tuple[Any, str | None, str], tuple[Check, ...]] = {}
        app.extensions.setdefault("limiter", set()).add(self)
        if self.enabled:
            self.storage = self._storage(settings.redis_url)
            app.before_request(self.check)
            app.after_request(self.answered)

    @staticmethod
    def _storage(redis_url: str | None) -> Any:
        uri = _storage_uri(redis_url)
        if uri == MEMORY_STORAGE:
            return MemoryCounters()
        options = {"socket_connect_timeout": STORAGE_TIMEOUT_SECONDS,
                   "socket_timeout": STORAGE_TIMEOUT_SECONDS}
        return storage_from_string(uri, **options)

    def exempt(self, obj: Any) -> Any:
        """Exempt a view function, or every route of a blueprint, from the limits."""
        if isinstance(obj, Blueprint):
            self.limit_manager.add_blueprint_exemption(obj.name)
        else:
            self.limit_manager.add_route_exemption(obj)
        return obj

    def _checks(self, environ: dict[str, Any], path: str) -> tuple[Check, ...]:
        """This request's limits, in order, and their counters' keys: worked out once per
        kind of caller and client (the keys are the same strings each time)."""
        address = environ.get("REMOTE_ADDR") or "-"
        claimed = _claimed_key(environ)
        if claimed is not None:
            kind: Any = ("per-key", self._roles.get(claimed[0], self._lowest_role_limit))
            public_id: str | None = claimed[1]
        else:
            kind, public_id = "feed" if CALENDAR_FEED_PATH.fullmatch(path) else "anonymous", None
        known = self._known
        checks = known.get((kind, public_id, address))
        if checks is None:
            if len(known) >= CLIENTS_KEPT:
                known.clear()
            by_key, by_address = f"key:{public_id}", f"addr:{address}"
            checks = known[kind, public_id, address] = tuple(
                (limit, limit.key(by_key if limit.by_key else by_address))
                for limit in self._ordered[kind])
        return checks

    def check(self) -> Response | None:
        """Before the request: count it; the 429 answer if a limit is used up."""
        current = request._get_current_object()  # type: ignore[attr-defined]
        endpoint, path = current.endpoint, current.path
        if endpoint is None or path in PROBES or not self.limit_manager.limited(
                self._view_functions, endpoint):
            return None
        environ = current.environ
        checks = self._checks(environ, path)
        try:
            take = getattr(self.storage, "take", None)
            windows = take(checks) if take else take_each(self.storage, checks)
        except Exception as exc:  # noqa: BLE001 - the storage went away: fail open
            _storage_error("rate limits not checked (failing open)", exc)
            return None
        environ[_CHECKED] = (checks, windows)
        if _breached(checks, windows):
            limit = checks[len(windows) - 1][0]
            return _refused(limit, windows[-1][1])
        return None

    def answered(self, response: Response) -> Response:
        """After the request: the RateLimit headers; a 401 counts its ``key-checks``."""
        checked = request.environ.get(_CHECKED)
        if checked is None:
            return response
        checks, windows = checked
        shown = len(windows) - 1 if _breached(checks, windows) else _spent(checks, windows)
        limit = checks[shown][0]
        count, ends = windows[shown]
        headers = response.headers  # (no view sets these: added, not replaced)
        headers.add("RateLimit-Policy", limit.policy)
        headers.add("RateLimit", f'"{limit.scope}";r={max(0, limit.amount - count)};'
                    f't={max(0, int(_reset_at(ends) - time.time()))}')
        if response.status_code == 401:
            for limit, key in checks[:len(windows)]:
                if not limit.counted:
                    try:
                        self.storage.incr(key, limit.expiry)
                    except Exception as exc:  # noqa: BLE001 - fail open
                        _storage_error("refused key not counted (failing open)", exc)
        return response


def _spent(checks: Sequence[Check], windows: Sequence[Window]) -> int:
    """The index of the limit this kind of caller spends, of those counted (or read): the
    first that is not the refused-key count; else the first."""
    for index in range(len(windows)):
        if checks[index][0].scope != KEY_CHECKS:
            return index
    return 0


def _in_order(limits: tuple[Limit, ...]) -> tuple[Limit, ...]:
    return tuple(sorted(limits, key=lambda limit: limit.item.GRANULARITY.seconds))


def _reset_at(ends: float) -> int:
    """When a window ends, as the headers state it: the whole second after its end (as
    flask-limiter stated it: ``t=60`` for a window just started)."""
    return int(ends + 1)


def _storage_error(what: str, exc: Exception) -> None:
    RATE_LIMIT_STORAGE_ERRORS.inc()
    log.warning("%s: storage unreachable: %s", what, type(exc).__name__)


def _refused(limit: Limit, ends: float) -> Response:
    RATE_LIMITED.labels(limit.scope).inc()
    retry_after = max(1, int(_reset_at(ends) - time.time()))
    return problem(429, "rate_limited", "Too many requests",
                   f"The {limit.scope} limit ({limit.item}) is used up; retry after the "
                   "number of seconds in Retry-After.",
                   headers={"Retry-After": str(retry_after)}, limit=limit.scope)


def init_app(app: Flask, settings: Settings) -> RateLimiter:
    return RateLimiter(app, settings)
