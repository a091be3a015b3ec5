"""Rate limits (flask-limiter): per API key by its role, per client address without a key,
tighter on refused keys and on calendar feeds.

The counters live in Redis when ``REDIS_URL`` is set, so every gunicorn worker and every
instance shares them; otherwise in each process's memory (the local default). The limits
are checked before the key itself (so a guessed key counts against its address):

- ``per-key``: requests carrying an API key, counted by the key's public id, at the limit
  of the role its prefix names (``RATE_LIMIT_ROLES``). A made-up public id gets a fresh
  counter, but its request is refused (401), which ``key-checks`` counts.
- ``key-checks``: refused keys (401) per client address (``RATE_LIMIT_KEY_CHECKS``).
- ``anonymous``: requests without a key per client address (``RATE_LIMIT_ANONYMOUS``),
  calendar feeds aside; the probes are exempt from every limit (load balancers poll them).
- ``calendar-feeds``: feed fetches per client address (``RATE_LIMIT_CALENDAR_FEEDS``).

A refused request gets 429 ``rate_limited`` (problem+json) with ``Retry-After``; every
limited answer carries the IETF ``RateLimit-Policy`` and ``RateLimit`` headers
(draft-ietf-httpapi-ratelimit-headers: ``"per-key";q=600;w=60`` and
``"per-key";r=599;t=60``). If the storage cannot be reached the request goes through (the
limits fail open), with one log line and ``clinic_rate_limit_storage_errors_total``.

With Redis, a request costs one round trip to it (``OneTripRedisStorage``): what
flask-limiter will ask of the storage for this request (its limits in its order: a count
for each limit spent, a read of each limit only tested, such as ``key-checks``) is sent as
one script, which stops where flask-limiter would stop (at the first breached limit), and
returns each counter with its time to live; flask-limiter's calls, and the headers, are
then answered from those figures. The counters are the same Redis keys as before. A
refused key (401) adds one round trip: its ``key-checks`` count, known only after the
answer.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask, Response, has_request_context, request
from flask.globals import request_ctx
from flask_limiter import (
    ApplicationLimit,
    ExemptionScope,
    Limiter,
    RateLimitExceeded,
    RequestLimit,
)
from flask_limiter._extension import LimiterContext
from flask_limiter._limits import RuntimeLimit
from flask_limiter._manager import LimitManager
from limits import RateLimitItem
from limits.storage import MemoryStorage, RedisStorage

from service.auth import CALENDAR_FEED_PATH
from service.config import Settings
from service.errors import problem
from service.metrics import RATE_LIMIT_STORAGE_ERRORS, RATE_LIMITED

log = logging.getLogger(__name__)

# ck_<role>_<public id>_<secret>
KEY_PATTERN = re.compile(r"ck_([a-z]+)_([A-Za-z0-9]+)_")
PROBES = frozenset({"/healthz", "/readyz"})
STORAGE_TIMEOUT_SECONDS = 0.5  # a Redis that stopped answering costs each request this much


class SweptMemoryStorage(MemoryStorage):
    """The counters in this process's memory (no ``REDIS_URL``): limits' own memory storage,
    whose expired counters are dropped here, in the request that counts, at most once every
    ``SWEEP_SECONDS``, instead of by a timer thread it starts again after 10 ms: that start
    (a new thread per request, waited for) cost a request milliseconds on a loaded machine.
    A counter's own expiry is checked whenever it is read, as before."""

    STORAGE_SCHEME = ["clinic-memory"]
    SWEEP_SECONDS = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False,
                 **options: str) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.timer.cancel()  # the one the constructor started
        self._next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces the timer's restart
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


MEMORY_STORAGE = "clinic-memory://"
KEY_PREFIX = "clinic-ratelimit"


@dataclasses.dataclass(frozen=True)
class Planned:
    """One storage call flask-limiter's check of a request will make: a count (``hit``) or
    a read (a limit only tested, counted after the answer), of ``key`` (unprefixed)."""

    key: str
    hit: bool
    amount: int  # the limit's allowance: past it, flask-limiter stops (first breach)
    expiry: int  # the window, seconds


@dataclasses.dataclass
class _Window:
    count: int
    expires_at: float
    pending: bool  # counted by the script, flask-limiter's own count call not yet answered


_WINDOWS = "clinic.ratelimit_windows"  # the request's environ: its figures (key -> _Window)


class OneTripRedisStorage(RedisStorage):
    """limits' Redis storage (the same keys, the same fixed-window counters), whose calls
    within a request cost one round trip in all: at the first call, ``planner`` tells what
    flask-limiter will ask (``Planned``, in its order) and one script does it all, stopping
    at the first breached limit as flask-limiter does; each later call for a key the
    script answered is answered from its figures (a count it made is returned once, as
    flask-limiter makes it; the headers' reads after it). Anything else, or a call outside
    a request, goes to Redis as before. ``clinic-redis://`` (or ``clinic-rediss://``): a
    ``redis://`` URL (a single server: the script touches several keys)."""

    STORAGE_SCHEME = ["clinic-redis", "clinic-rediss"]
    SCRIPT_REQUEST = """
local stop_on_breach = ARGV[1] == "1"
local found = {}
for i, key in ipairs(KEYS) do
  local hit = ARGV[i * 3 - 1] == "1"
  local amount = tonumber(ARGV[i * 3])
  local count
  if hit then
    count = redis.call("incrby", key, 1)
    if count == 1 then
      redis.call("expire", key, ARGV[i * 3 + 1])
    end
  else
    count = tonumber(redis.call("get", key) or "0")
  end
  found[#found + 1] = count
  found[#found + 1] = redis.call("ttl", key)
  if stop_on_breach and ((hit and count > amount) or (not hit and count >= amount)) then
    break
  end
end
return found
"""

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix("clinic-"), **options)
        self.planner: Callable[[], list[Planned]] | None = None
        self.stop_on_breach = True

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_request = self.get_connection().register_script(self.SCRIPT_REQUEST)

    def _windows(self) -> dict[str, _Window] | None:
        """This request's figures: planned and fetched at its first call (once, even if
        Redis fails then: the limits fail open for the rest of the request)."""
        if self.planner is None or not has_request_context():
            return None
        environ = request.environ  # this request's own (an app context may hold several)
        windows: dict[str, _Window] | None = environ.get(_WINDOWS)
        if windows is None:
            windows = environ[_WINDOWS] = {}
            plan = self.planner()
            if plan:
                args: list[str | int] = ["1" if self.stop_on_breach else "0"]
                for step in plan:
                    args += ["1" if step.hit else "0", step.amount, step.expiry]
                found = self.lua_request([self.prefixed_key(step.key) for step in plan], args)
                now = time.time()
                for step, index in zip(plan, range(0, len(found), 2), strict=False):
                    windows[step.key] = _Window(int(found[index]),
                                                max(int(found[index + 1]), 0) + now,
                                                pending=step.hit)
        return windows

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        windows = self._windows()
        if windows is not None:
            window = windows.get(key)
            if window is not None and window.pending and amount == 1:
                window.pending = False
                return window.count
            windows.pop(key, None)  # counted here: read afresh if asked again
        return super().incr(key, expiry, amount)

    def get(self, key: str) -> int:
        windows = self._windows()
        window = windows.get(key) if windows else None
        return window.count if window is not None else super().get(key)

    def get_expiry(self, key: str) -> float:
        windows = self._windows()
        window = windows.get(key) if windows else None
        return window.expires_at if window is not None else super().get_expiry(key)


_CLAIMED = "clinic.claimed_key"  # the request's WSGI environ: the header read once


def _claimed_key() -> tuple[str, str] | None:
    """The (role, public id) an ``Authorization: Bearer ck_...`` header names (unchecked).
    Read once per request (the key function and three limits' conditions ask for it)."""
    environ = request._get_current_object().environ  # type: ignore[attr-defined]
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


def _address() -> str:
    return f"addr:{request._get_current_object().remote_addr or '-'}"  # type: ignore[attr-defined]


def _key() -> str:
    claimed = _claimed_key()
    return f"key:{claimed[1]}" if claimed else _address()


class _StorageErrors(logging.Filter):
    """flask-limiter logs a storage failure with its traceback: make it one line of ours
    (the error type only) and count it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            RATE_LIMIT_STORAGE_ERRORS.inc()
            log.warning("rate limits not checked (failing open): storage unreachable: %s",
                        type(record.exc_info[1]).__name__)
            return False
        return True


KEYS_KEPT = 1024  # storage keys remembered per limit (by client); then forgotten at once


def _key_for(self: Any, *identifiers: Any) -> str:
    keys: dict[tuple[Any, ...], str] = self._keys
    key = keys.get(identifiers)
    if key is None:
        if len(keys) >= KEYS_KEPT:
            keys.clear()
        key = keys[identifiers] = RateLimitItem.key_for(self, *identifiers)
    return key


_KEYED: dict[type[RateLimitItem], type[RateLimitItem]] = {}


def _keyed(item: RateLimitItem) -> RateLimitItem:
    """The same limit item (equal to it, same amount and window), whose storage key for
    given identifiers is built once: flask-limiter and limits build it for each count,
    read and header of a request, joining the same strings again each time."""
    kind = type(item)
    keyed = _KEYED.get(kind)
    if keyed is None:
        keyed = _KEYED[kind] = type(kind)(f"Keyed{kind.__name__}", (kind,), {
            "__slots__": ("_keys",), "key_for": _key_for})
    copy = keyed(item.amount, item.multiples, item.namespace)
    copy._keys = {}  # type: ignore[attr-defined]
    return copy


class _HashedOnce(RuntimeLimit):
    """A ``RuntimeLimit`` (immutable in use) whose hash is computed once: flask-limiter puts
    each request's limits in ordered sets, which hash every field of each limit each time."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


@dataclasses.dataclass(kw_only=True, unsafe_hash=True)
class ParsedLimit(ApplicationLimit):
    """flask-limiter's application limit, whose limit text is parsed once per distinct text
    instead of on every request (``Limit.__iter__`` parses it and builds its ``RuntimeLimit``
    objects anew each time): the same limits, checked the same way, for less work."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._parsed: dict[str, tuple[RuntimeLimit, ...]] = {}

    def __iter__(self) -> Iterator[RuntimeLimit]:
        # A limit this request is exempt from is not listed at all: flask-limiter would skip
        # it as exempt (no count, no header) after sorting and set work for it.
        if self.exempt_when is not None and self.exempt_when():
            return iter(())
        text = self.limit_provider() if callable(self.limit_provider) else self.limit_provider
        parsed = self._parsed.get(text)
        if parsed is None:  # (a callable gives the same text again within the request)
            parsed = self._parsed[text] = tuple(
                _HashedOnce(**{f.name: _keyed(limit.limit) if f.name == "limit"
                               else getattr(limit, f.name) for f in dataclasses.fields(limit)})
                for limit in super().__iter__())
        return iter(parsed)


class RouteLimitManager(LimitManager):
    """flask-limiter's limit manager, whose answers that follow from a route's place alone
    are worked out once per route instead of on every request (it asks twice a request):
    a route's exemption scope, and its blueprint's (from the exemptions declared, the app's
    view functions and blueprints, none of which a request changes). Declaring an exemption
    forgets them. With no blueprint limit declared (this app declares application limits
    only), a blueprint's limits are none, as flask-limiter finds after its own lookups."""

    _resolved: dict[tuple[Any, ...], Any]

    @classmethod
    def adopt(cls, manager: LimitManager) -> None:
        """Make a limiter's manager (made by ``Limiter``) this kind, before any request."""
        manager.__class__ = cls
        manager._resolved = {}  # type: ignore[attr-defined]

    def _once(self, key: tuple[Any, ...], work: Callable[[], Any]) -> Any:
        try:
            return self._resolved[key]
        except KeyError:
            found = self._resolved[key] = work()
            return found

    def exemption_scope(self, app: Flask, endpoint: str | None, blueprint: str | None
                        ) -> ExemptionScope:
        return self._once(("route", app, endpoint, blueprint),
                          lambda: super(RouteLimitManager, self).exemption_scope(
                              app, endpoint, blueprint))

    def _blueprint_exemption_scope(self, app: Flask, blueprint_name: str
                                   ) -> tuple[ExemptionScope, dict[str, ExemptionScope]]:
        return self._once(("blueprint", app, blueprint_name),
                          lambda: super(RouteLimitManager, self)._blueprint_exemption_scope(
                              app, blueprint_name))

    def blueprint_limits(self, app: Flask, blueprint: str) -> list[RuntimeLimit]:
        if not self._blueprint_limits:
            return []
        return super().blueprint_limits(app, blueprint)

    def add_route_exemption(self, route: str, scope: ExemptionScope) -> None:
        self._resolved.clear()
        super().add_route_exemption(route, scope)

    def add_blueprint_exemption(self, blueprint: str, scope: ExemptionScope) -> None:
        self._resolved.clear()
        super().add_blueprint_exemption(blueprint, scope)


class RequestLimiter(Limiter):
    """flask-limiter's extension, whose per-request state (``context``, asked for about ten
    times a request) is found on the request context directly, where flask-limiter keeps
    it, instead of through two proxy lookups and an attribute test each time."""

    @property
    def context(self) -> LimiterContext:
        ctx = request_ctx._get_current_object()  # type: ignore[attr-defined]
        try:
            contexts = ctx._limiter_request_context  # type: ignore[attr-defined]
        except AttributeError:
            contexts = ctx._limiter_request_context = defaultdict(  # type: ignore[attr-defined]
                LimiterContext)
        return contexts[self]  # type: ignore[no-any-return]


def _limits(settings: Settings) -> list[ApplicationLimit]:
    roles = dict(settings.rate_limit_roles)

    def role_limit() -> str:
        claimed = _claimed_key()
        return roles.get(claimed[0], min(roles.values())) if claimed else "1/second"

    def anonymous_exempt() -> bool:  # a feed's token is its credential: its own limit
        if _claimed_key() is not None:
            return True
        path = request._get_current_object().path  # type: ignore[attr-defined]
        return path in PROBES or CALENDAR_FEED_PATH.fullmatch(path) is not None

    return [
        ParsedLimit(role_limit, key_function=_key, scope="per-key",
                    exempt_when=lambda: _claimed_key() is None),
        ParsedLimit(settings.rate_limit_key_checks, key_function=_address,
                    scope="key-checks", deduct_when=lambda r: r.status_code == 401),
        ParsedLimit(settings.rate_limit_anonymous, key_function=_address,
                    scope="anonymous", exempt_when=anonymous_exempt),
        ParsedLimit(settings.rate_limit_calendar_feeds, key_function=_address,
                    scope="calendar-feeds",
                    exempt_when=lambda: not CALENDAR_FEED_PATH.fullmatch(
                        request._get_current_object().path)),  # type: ignore[attr-defined]
    ]


def _plan(limits: list[ApplicationLimit]) -> list[Planned]:
    """What flask-limiter's check of this request asks of the storage, in its order: the
    limits not exempt, sorted as it sorts them (by window, stable), each counted or, with a
    ``deduct_when``, read (its count comes after the answer)."""
    runtime = sorted((limit for declared in limits for limit in declared),
                     key=lambda limit: limit.limit)
    return [Planned(limit.limit.key_for(KEY_PREFIX, limit.key_func(), str(limit.scope)),
                    hit=limit.deduct_when is None, amount=limit.limit.amount,
                    expiry=limit.limit.get_expiry())
            for limit in runtime if not limit.is_exempt]


def _refused(limit: RequestLimit) -> Response:
    scope = _scope(limit)
    RATE_LIMITED.labels(scope).inc()
    retry_after = max(1, int(limit.reset_at - _now()))
    return problem(429, "rate_limited", "Too many requests",
                   f"The {scope} limit ({limit.limit}) is used up; retry after the number of "
                   "seconds in Retry-After.", headers={"Retry-After": str(retry_after)},
                   limit=scope)


def _scope(limit: RequestLimit) -> str:
    """The limit's name: the last of its storage key's parts ([prefix,] key, scope)."""
    return str(limit.request_args[-1])


def _shown(limiter: Limiter) -> RequestLimit | None:
    """The limit the headers describe: a breached one, else the one this kind of caller
    spends (per key, anonymous, feed) rather than the refused-key count."""
    checked = limiter.current_limits
    for limit in checked:
        if limit.breached:
            return limit
    return next((limit for limit in checked if _scope(limit) != "key-checks"),
                checked[0] if checked else None)


def _now() -> float:
    return time.time()


def _storage_uri(redis_url: str | None) -> str:
    """The counters' storage: Redis through ``OneTripRedisStorage`` (``redis://`` and
    ``rediss://`` URLs; any other scheme limits handles itself), else this process's memory."""
    if not redis_url:
        return MEMORY_STORAGE
    if redis_url.startswith(("redis://", "rediss://")):
        return "clinic-" + redis_url
    return redis_url


def init_app(app: Flask, settings: Settings) -> Limiter:
    limiter_log = logging.getLogger("flask-limiter")
    if not any(isinstance(existing, _StorageErrors) for existing in limiter_log.filters):
        limiter_log.addFilter(_StorageErrors())  # once per process, however many apps
    options: dict[str, float] = {}
    if settings.redis_url:
        options = {"socket_connect_timeout": STORAGE_TIMEOUT_SECONDS,
                   "socket_timeout": STORAGE_TIMEOUT_SECONDS}
    limits = _limits(settings)
    limiter = RequestLimiter(
        _key, app=app, application_limits=limits,
        storage_uri=_storage_uri(settings.redis_url), storage_options=options,  # type: ignore[arg-type]
        strategy="fixed-window", key_prefix=KEY_PREFIX, headers_enabled=False,
        swallow_errors=True, on_breach=_refused)
    RouteLimitManager.adopt(limiter.limit_manager)
    storage = limiter.storage if limiter.enabled else None  # (RATELIMIT_ENABLED=False)
    if isinstance(storage, OneTripRedisStorage):
        storage.planner = functools.partial(_plan, limits)
        storage.stop_on_breach = bool(limiter._fail_on_first_breach)

    limiter.request_filter(
        lambda: request._get_current_object().path in PROBES)  # type: ignore[attr-defined]

    def refused(exc: RateLimitExceeded) -> Response:
        """The 429 that ``_refused`` built (problem+json, Retry-After)."""
        if exc.response is not None:
            return exc.response
        return problem(429, "rate_limited", "Too many requests", str(exc.description))

    app.register_error_handler(RateLimitExceeded, refused)

    def headers(response: Response) -> Response:
        current = _shown(limiter)
        if current is None:
            return response
        try:
            remaining, reset = current.remaining, current.reset_at
        except Exception as exc:  # noqa: BLE001 - the storage went away: no headers
            RATE_LIMIT_STORAGE_ERRORS.inc()
            log.warning("rate-limit headers skipped: storage unreachable: %s",
                        type(exc).__name__)
            return response
        scope = _scope(current)
        response.headers["RateLimit-Policy"] = (
            f'"{scope}";q={current.limit.amount};w={current.limit.get_expiry()}')
        response.headers["RateLimit"] = (
            f'"{scope}";r={max(0, remaining)};t={max(0, int(reset - _now()))}')
        return response

    app.after_request(headers)
    return limiter
