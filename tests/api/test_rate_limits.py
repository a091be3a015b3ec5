"""Rate limits: per key by role, per address without a key, tighter on refused keys and
calendar feeds; 429 problem+json with Retry-After and the IETF RateLimit headers; shared
through Redis by several instances, and failing open when Redis goes away."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator

import pytest
import redis.connection
from flask import Flask
from limits.storage import MemoryStorage

from service import ratelimits
from service.app import create_app
from service.config import Settings
from service.domain.access import services as keys
from service.domain.access.actor import Role
from service.extensions import unit_of_work
from service.metrics import RATE_LIMIT_STORAGE_ERRORS, RATE_LIMITED
from service.ratelimits import (
    MemoryCounters,
    OneTripRedisStorage,
    RouteLimitManager,
    parsed,
    take_each,
)
from tests import processes

LIMITS = {"RATE_LIMIT_ROLES": "staff=3/minute,patient=2/minute",
          "RATE_LIMIT_KEY_CHECKS": "2/minute", "RATE_LIMIT_ANONYMOUS": "2/minute",
          "RATE_LIMIT_CALENDAR_FEEDS": "2/minute"}
POLICY = re.compile(r'"(?P<name>[a-z-]+)";q=(?P<q>\d+);w=(?P<w>\d+)')
STATE = re.compile(r'"(?P<name>[a-z-]+)";r=(?P<r>\d+);t=(?P<t>\d+)')


def limited_app(app: Flask, monkeypatch: pytest.MonkeyPatch, **env: str) -> Flask:
    for name, setting in {**LIMITS, **env}.items():
        monkeypatch.setenv(name, setting)
    limited = create_app({"DATABASE_URL": app.config["DATABASE_URL"], "TESTING": True})
    monkeypatch.delenv("REDIS_URL", raising=False)
    return limited


@pytest.fixture
def limited(app, monkeypatch) -> Iterator[Flask]:
    limited = limited_app(app, monkeypatch)
    yield limited
    limited.extensions["clinic.database"].dispose()


def issue(app: Flask, role: Role, **binding) -> str:
    with app.app_context():
        return keys.issue_key(unit_of_work(), role=role, label=f"limits {role}", **binding).key


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_key_gets_its_roles_limit_then_429_problem_with_retry_after(limited):
    client = limited.test_client()
    token, other = issue(limited, Role.STAFF), issue(limited, Role.STAFF)
    remaining = []
    for _ in range(3):
        answer = client.get("/api/v1/providers", headers=bearer(token))
        assert answer.status_code == 200
        policy = POLICY.fullmatch(answer.headers["RateLimit-Policy"])
        assert policy and policy["name"] == "per-key" and policy["q"] == "3"
        assert policy["w"] == "60"
        state = STATE.fullmatch(answer.headers["RateLimit"])
        assert state and 0 < int(state["t"]) <= 60
        remaining.append(int(state["r"]))
    assert remaining == [2, 1, 0]
    before = RATE_LIMITED.labels("per-key")._value.get()
    refused = client.get("/api/v1/providers", headers=bearer(token))
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    body = refused.get_json()
    assert body["code"] == "rate_limited" and body["limit"] == "per-key"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert STATE.fullmatch(refused.headers["RateLimit"])["r"] == "0"
    assert RATE_LIMITED.labels("per-key")._value.get() == before + 1
    # Another key of the same role has its own allowance.
    assert client.get("/api/v1/providers", headers=bearer(other)).status_code == 200


def test_the_limit_follows_the_keys_role(limited):
    client = limited.test_client()
    admin = issue(limited, Role.ADMIN)  # admin keeps the default (600/minute)
    for _ in range(5):
        answer = client.get("/api/v1/me", headers=bearer(admin))
        assert answer.status_code == 200
    assert POLICY.fullmatch(answer.headers["RateLimit-Policy"])["q"] == "600"


def test_refused_keys_are_limited_per_address(limited):
    client = limited.test_client()
    for _ in range(2):
        assert client.get("/api/v1/providers", headers=bearer(
            "ck_staff_guessed0000_not-a-real-secret")).status_code == 401
    refused = client.get("/api/v1/providers", headers=bearer(
        "ck_staff_guessed0001_another-guess"))
    assert refused.status_code == 429
    assert refused.get_json()["limit"] == "key-checks"
    # Another address is not affected.
    other = client.get("/api/v1/providers", headers=bearer("ck_staff_x_y"),
                       environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 401


def test_calls_without_a_key_are_limited_per_address_and_probes_are_exempt(limited):
    client = limited.test_client()
    for _ in range(2):
        assert client.get("/openapi.json").status_code == 200
    refused = client.get("/problems/rate_limited")
    assert refused.status_code == 429
    assert refused.get_json()["limit"] == "anonymous"
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
        assert "RateLimit" not in client.get("/healthz").headers


def test_calendar_feeds_are_limited_per_address(limited):
    client = limited.test_client()
    for _ in range(2):
        assert client.get("/api/v1/calendars/not-a-token.ics").status_code == 404
    refused = client.get("/api/v1/calendars/still-not-a-token.ics")
    assert refused.status_code == 429
    assert refused.get_json()["limit"] == "calendar-feeds"


def test_role_limits_are_configurable_and_checked():
    settings = Settings.from_env({"RATE_LIMIT_ROLES": "patient=10/minute"})
    assert dict(settings.rate_limit_roles)["patient"] == "10/minute"
    assert dict(settings.rate_limit_roles)["staff"] == "1200/minute"
    with pytest.raises(ValueError, match="RATE_LIMIT_ROLES"):
        Settings.from_env({"RATE_LIMIT_ROLES": "janitor=1/second"})


# Redis: shared by instances, failing open -------------------------------------------------


@pytest.fixture
def redis_server(tmp_path) -> Iterator[tuple[processes.Process, str]]:
    """A Redis of this test's own on a spare port (never the shared one on 6379)."""
    with processes.redis_server(tmp_path) as (server, url):
        yield server, url.rsplit("/", 1)[0] + "/3"


def test_two_instances_share_the_limit_through_redis(app, monkeypatch, redis_server):
    _, url = redis_server
    first = limited_app(app, monkeypatch, REDIS_URL=url)
    second = limited_app(app, monkeypatch, REDIS_URL=url)
    token = issue(first, Role.STAFF)
    statuses = [instance.test_client().get("/api/v1/providers", headers=bearer(token))
                .status_code for instance in (first, second, first, second)]
    assert statuses == [200, 200, 200, 429]  # 3 a minute, whichever instance answers
    for instance in (first, second):
        instance.extensions["clinic.database"].dispose()


def test_limits_fail_open_when_redis_stops(app, monkeypatch, redis_server, caplog):
    process, url = redis_server
    instance = limited_app(app, monkeypatch, REDIS_URL=url)
    client = instance.test_client()
    token = issue(instance, Role.STAFF)
    assert client.get("/api/v1/providers", headers=bearer(token)).status_code == 200
    process.stop()
    before = RATE_LIMIT_STORAGE_ERRORS._value.get()
    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        statuses = [client.get("/api/v1/providers", headers=bearer(token)).status_code
                    for _ in range(5)]
        elapsed = time.monotonic() - started
    assert statuses == [200] * 5  # beyond the limit of 3: nothing is limited any more
    assert elapsed < 10
    assert RATE_LIMIT_STORAGE_ERRORS._value.get() >= before + 5
    lines = [r.getMessage() for r in caplog.records if r.name == "service.ratelimits"]
    assert lines and all("failing open" in line or "skipped" in line for line in lines)
    assert all(r.exc_info is None for r in caplog.records if r.name == "service.ratelimits")
    assert not [r for r in caplog.records if r.exc_info]  # one line each, no traceback
    instance.extensions["clinic.database"].dispose()


# Redis: one round trip a request, the same answers as the memory storage -----------------


class RoundTrips:
    """Counts the commands sent to Redis (each send is one round trip: a pipeline or a
    script is one send)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def counted(connection, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.sent += 1
            return original(connection, *args, **kwargs)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command",
                            counted)


def _scenario(instance: Flask, trips: RoundTrips | None = None
              ) -> list[tuple[int, str | None, str | None, str | None, int]]:
    """Requests of every kind of caller against ``instance``'s limits: each answer's status,
    RateLimit-Policy, remaining (``r``), refused limit, and the round trips it cost."""
    client = instance.test_client()
    token, other = issue(instance, Role.STAFF), issue(instance, Role.STAFF)
    other_address = {"REMOTE_ADDR": "192.0.2.9"}
    calls = [
        *[("/api/v1/providers", bearer(token), None)] * 4,  # the 4th over the key's limit
        ("/api/v1/providers", bearer("ck_staff_guessed0000_not-a-real-secret"), None),
        ("/api/v1/providers", bearer("ck_staff_guessed0001_another-guess"), None),
        ("/api/v1/providers", bearer("ck_staff_guessed0002_and-another"), None),  # 429
        ("/api/v1/providers", bearer(other), None),  # refused: the address's key checks
        ("/api/v1/providers", bearer(other), other_address),  # counted before?
        *[("/openapi.json", {}, other_address)] * 3,
        *[("/api/v1/calendars/not-a-token.ics", {}, {"REMOTE_ADDR": "192.0.2.10"})] * 3,
        ("/healthz", {}, None),
        ("/api/v1/no-such-route", bearer(other), other_address),
    ]
    answers = []
    for path, headers, environ in calls:
        before = trips.sent if trips else 0
        answer = client.get(path, headers=headers, environ_base=environ or {})
        state = STATE.fullmatch(answer.headers.get("RateLimit", ""))
        body = answer.get_json(silent=True) if answer.status_code == 429 else None
        answers.append((answer.status_code, answer.headers.get("RateLimit-Policy"),
                        state["r"] if state else None, body["limit"] if body else None,
                        (trips.sent - before) if trips else 0))
    return answers


@pytest.mark.parametrize("one_app_context", [False, True])  # requests sharing flask.g
@pytest.mark.parametrize("roles", ["staff=3/minute", "staff=3/hour"])  # key checks first
def test_a_request_costs_one_redis_round_trip_with_the_same_answers(app, monkeypatch,
                                                                    redis_server, roles,
                                                                    one_app_context):
    _, url = redis_server
    in_memory = limited_app(app, monkeypatch, RATE_LIMIT_ROLES=roles)
    expected = [answer[:4] for answer in _scenario(in_memory)]
    shared = limited_app(app, monkeypatch, RATE_LIMIT_ROLES=roles, REDIS_URL=url)
    storage = shared.extensions["limiter"].copy().pop().storage
    assert isinstance(storage, OneTripRedisStorage)
    # Connected, its scripts known to the server: what every request after the first finds.
    connection = storage.get_connection()
    for script in (storage.lua_request, storage.lua_incr_expire):
        connection.script_load(script.script)
    trips = RoundTrips(monkeypatch)
    if one_app_context:
        with shared.app_context():
            answers = _scenario(shared, trips)
    else:
        answers = _scenario(shared, trips)
    assert [answer[:4] for answer in answers] == expected
    assert [status for status, *_ in answers] == [
        200, 200, 200, 429, 401, 401, 429, 429, 200, 200, 200, 429, 404, 404, 429, 200, 404]
    for status, *_, sent in answers:
        assert sent <= (2 if status == 401 else 1)  # a refused key's count comes after
    assert answers[0][4] == 1  # once connected: one script a request
    assert answers[-2][4] == answers[-1][4] == 0  # a probe, and no route, are not limited
    for instance in (in_memory, shared):
        instance.extensions["clinic.database"].dispose()


def test_the_one_trip_storage_answers_outside_a_request_as_redis_does(redis_server):
    _, url = redis_server
    storage = OneTripRedisStorage("clinic-" + url)
    assert storage.incr("a/key", 60) == 1
    assert storage.incr("a/key", 60) == 2
    assert storage.get("a/key") == 2
    assert time.time() < storage.get_expiry("a/key") <= time.time() + 61


def test_an_exemption_declared_after_requests_applies(limited):
    """The route exemption scopes worked out once per route (``RouteLimitManager``) are
    forgotten when an exemption is declared: the route is exempt from then on."""
    limiter = next(iter(limited.extensions["limiter"]))
    assert isinstance(limiter.limit_manager, RouteLimitManager)
    client = limited.test_client()
    token = issue(limited, Role.STAFF)
    path = "/api/v1/providers"
    assert [client.get(path, headers=bearer(token)).status_code for _ in range(4)] == [
        200, 200, 200, 429]
    limiter.exempt(limited.view_functions["providers.providers_collection"])
    answer = client.get(path, headers=bearer(token))
    assert answer.status_code == 200
    assert "RateLimit" not in answer.headers


# The extension's own parts --------------------------------------------------------------


def test_the_counters_keep_their_redis_keys(app, monkeypatch, redis_server):
    """The keys (and fixed-window counters) flask-limiter kept, which instances of the
    version before this extension still count during a rolling deploy."""
    _, url = redis_server
    instance = limited_app(app, monkeypatch, REDIS_URL=url)
    client = instance.test_client()
    token = issue(instance, Role.STAFF)
    public_id = token.split("_")[2]
    assert client.get("/api/v1/providers", headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/providers", headers=bearer(
        "ck_patient_guessed0000_x")).status_code == 401
    anonymous = {"REMOTE_ADDR": "192.0.2.9"}
    assert client.get("/openapi.json", environ_base=anonymous).status_code == 200
    assert client.get("/api/v1/calendars/x.ics", environ_base=anonymous).status_code == 404
    storage = next(iter(instance.extensions["limiter"])).storage
    connection = storage.get_connection()
    found = {key.decode(): int(connection.get(key)) for key in connection.keys("*")}
    prefix = "LIMITS:LIMITER/clinic-ratelimit"
    assert found == {
        f"{prefix}/key:{public_id}/per-key/3/1/minute": 1,
        f"{prefix}/key:guessed0000/per-key/2/1/minute": 1,
        f"{prefix}/addr:127.0.0.1/key-checks/2/1/minute": 1,  # the 401, counted after it
        f"{prefix}/addr:192.0.2.9/anonymous/2/1/minute": 1,
        f"{prefix}/addr:192.0.2.9/calendar-feeds/2/1/minute": 1,
    }
    assert all(0 < connection.ttl(key) <= 60 for key in found)
    instance.extensions["clinic.database"].dispose()


def test_rate_limits_can_be_turned_off(app, monkeypatch):
    for name, setting in LIMITS.items():
        monkeypatch.setenv(name, setting)
    instance = create_app({"DATABASE_URL": app.config["DATABASE_URL"], "TESTING": True,
                           "RATELIMIT_ENABLED": False})
    client = instance.test_client()
    answers = [client.get("/openapi.json") for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200] * 4
    assert not [answer for answer in answers if "RateLimit" in answer.headers]
    instance.extensions["clinic.database"].dispose()


def test_a_blueprint_declared_exempt_is_not_limited(limited):
    limiter = next(iter(limited.extensions["limiter"]))
    client = limited.test_client()
    token = issue(limited, Role.STAFF)
    assert client.get("/api/v1/providers", headers=bearer(token)).status_code == 200
    limiter.exempt(limited.blueprints["providers"])
    answers = [client.get("/api/v1/providers", headers=bearer(token)) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200] * 4
    assert not [answer for answer in answers if "RateLimit" in answer.headers]


def test_memory_counters_count_as_limits_storages_do(monkeypatch):
    """The memory counters' one pass (``take``) gives what the calls of any limits storage
    give (``take_each``), stopping at the first limit used up; expired windows restart and
    are swept."""
    counted = parsed("anonymous", "2/minute")[0]
    read = parsed(ratelimits.KEY_CHECKS, "1/minute", counted=False)[0]
    checks = [(counted, counted.key("addr:x")), (read, read.key("addr:x"))]
    now = [1000.0]
    monkeypatch.setattr(ratelimits.time, "time", lambda: now[0])
    ours, theirs = MemoryCounters(), MemoryStorage()
    for expected in ([(1, 1060.0), (0, 1000.0)], [(2, 1060.0), (0, 1000.0)], [(3, 1060.0)]):
        assert ours.take(checks) == expected
        assert take_each(theirs, checks) == expected
    assert ours.incr(read.key("addr:x"), read.expiry) == 1  # a refused key, counted after
    assert ours.take(checks[1:]) == [(1, 1060.0)]  # now used up
    now[0] = 1061.0
    assert ours.take(checks) == [(1, 1121.0), (0, 1061.0)]
    assert ours.get(read.key("addr:x")) == 0 and ours.get_expiry("no/such/key") == 1061.0
    assert len(ours._counters) == 1  # the expired key-checks counter swept
