"""The slot cache is never stale: every change that can change an answer (a booking, hours,
time off, a license) bumps a schedule version in its own transaction, and a cached answer is
used only under the versions it was computed with. Redis down or blocked mid-run costs speed,
never an answer (issue 14)."""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from prometheus_client import REGISTRY

from service.domain.availability import cache, search
from service.domain.availability import slots as engine
from tests.factories import NPIS
from tests.scenario import build_clinic


@pytest.fixture
def clinic(api):
    return build_clinic(api)


@pytest.fixture(autouse=True)
def _memory_store_afterwards() -> Iterator[None]:
    yield
    cache.configure(None)


def hits() -> float:
    return REGISTRY.get_sample_value("slot_cache_requests_total", {"outcome": "hit"}) or 0.0


def starts(clinic, service: str = "consultation", **params) -> list[datetime]:
    return [datetime.fromisoformat(s["start"]) for s in clinic.slots(service, **params)]


def check_never_stale(clinic, api) -> None:
    """Each change is followed by a search that must see it (and not a cached answer)."""
    first = starts(clinic)
    before = hits()
    assert starts(clinic) == first
    assert hits() == before + 1  # the repeated search was answered from the cache
    # A booking.
    response = clinic.book("consultation", clinic.at(14))
    assert response.status_code == 201, response.get_json()
    booking = response.get_json()
    assert clinic.at(14) not in starts(clinic) and clinic.at(13) in starts(clinic)
    # Its cancellation.
    cancelled = api.post(f"/api/v1/bookings/{booking['id']}/cancel", json={"reason": "test"})
    assert cancelled.status_code == 200, cancelled.get_json()
    assert clinic.at(14) in starts(clinic)
    # Time off.
    api.create(f"/api/v1/providers/{clinic.doctor['id']}/time-off", {
        "starts_at": clinic.at(13).isoformat(), "ends_at": clinic.at(14).isoformat()})
    assert clinic.at(13) not in starts(clinic) and clinic.at(14) in starts(clinic)
    # Weekly hours (replaced in bulk).
    clinic.set_hours(clinic.doctor, [
        {"location_id": clinic.virtual["id"], "weekday": d, "start": "15:00", "end": "17:00"}
        for d in range(7)])
    assert min(starts(clinic)) == clinic.at(15)
    # A second provider, then their license suspended.
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    assert clinic.at(13) in starts(clinic)
    license_id = api.get(f"/api/v1/providers/{other['id']}/licenses").get_json()[0]["id"]
    path = f"/api/v1/providers/{other['id']}/licenses/{license_id}"
    etag = api.get(path).headers["ETag"]
    changed = api.patch(path, json={"status": "suspended"}, headers={"If-Match": etag})
    assert changed.status_code == 200, changed.get_json()
    assert clinic.at(13) not in starts(clinic)


def test_memory_store_is_never_stale(clinic, api):
    cache.configure(None)
    check_never_stale(clinic, api)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def redis_server(tmp_path) -> Iterator[tuple[subprocess.Popen, str]]:
    """A redis-server of this test's own, on a spare port (not the shared one)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    try:
        yield process, url
    finally:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait()


def test_redis_store_is_never_stale(clinic, api, redis_server):
    _, url = redis_server
    cache.configure(url)
    check_never_stale(clinic, api)


def test_redis_stopped_mid_run_costs_speed_never_an_answer(clinic, api, redis_server, caplog):
    process, url = redis_server
    store = cache.configure(url)
    assert isinstance(store, cache.RedisStore)
    store.retry_after = 0.5
    expected = starts(clinic)
    before = hits()
    assert starts(clinic) == expected and hits() == before + 1
    # Blocked: it accepts connections but never answers (the timeout applies).
    process.send_signal(signal.SIGSTOP)
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        began = time.monotonic()
        assert starts(clinic) == expected
        assert time.monotonic() - began < 5
        response = clinic.book("consultation", clinic.at(14))  # a change while it is blocked
        assert response.status_code == 201, response.get_json()
        assert clinic.at(14) not in starts(clinic)
    assert any("slot cache unavailable" in r.getMessage() for r in caplog.records)
    # Back: it is used again after the pause, and still never stale.
    process.send_signal(signal.SIGCONT)
    time.sleep(store.retry_after + 0.1)
    assert clinic.at(14) not in starts(clinic)
    before = hits()
    assert clinic.at(14) not in starts(clinic) and hits() == before + 1
    # Gone: killed outright.
    process.kill()
    process.wait()
    time.sleep(store.retry_after + 0.1)
    assert clinic.at(14) not in starts(clinic) and clinic.at(13) in starts(clinic)


def test_a_wider_cached_answer_serves_only_what_it_can_tell():
    """The cached computation runs from the notice rounded down to the horizon rounded up,
    with some starts more than the limit; a request takes its own part, or computes. The
    starts are keys: start (microseconds) * pairs + the pair's rank, here of two pairs."""
    count, base, minute = 2, engine.to_us(datetime(2030, 1, 1, tzinfo=UTC)), 60_000_000

    def at(minutes: int) -> int:
        return base + minutes * minute

    wide = [at(15 * n) * count + n % count for n in range(10)]
    # Complete (not cut): any window inside it is exact.
    assert search._serve((wide, False), at(20), at(60), 5, count) == (wide[2:5], False)
    assert search._serve((wide, False), at(0), at(9 * 60), 3, count) == (wide[:3], True)
    # Cut after its last start: more than the limit of this request's starts is exact...
    assert search._serve((wide, True), at(30), at(9 * 60), 4, count) == (wide[2:6], True)
    # ...fewer cannot tell whether more follow: compute.
    assert search._serve((wide, True), at(30), at(9 * 60), 8, count) is None
    # Cut beyond this request's latest: exact again.
    assert search._serve((wide, True), at(0), at(50), 8, count) == (wide[:4], False)


def test_each_process_answers_from_its_copy_of_redis_checked_like_the_stored_one(
        app, clinic, api, redis_server, monkeypatch):
    """A repeated search answers from this process's copy of the Redis entry, without a
    GET, while its versions are current; behind them, the stored entry is read (another
    process may have stored the current answer: then it answers, without computing)."""
    process, url = redis_server
    first_worker = cache.configure(url)
    assert isinstance(first_worker, cache.RedisStore)
    params = {"service_type": clinic.services["consultation"]["id"],
              "start": clinic.day.isoformat(),
              "end": (clinic.day + timedelta(days=1)).isoformat()}

    def answer() -> bytes:
        response = api.get("/api/v1/slots", query_string=params)
        assert response.status_code == 200, response.get_json()
        return response.get_data()

    def computed() -> bytes:
        previous = cache.use(cache.NullStore())
        try:
            return answer()
        finally:
            cache.use(previous)

    gets: list[str] = []
    get = redis.Redis.get

    def counted(client, key):  # type: ignore[no-untyped-def]
        gets.append(key)
        return get(client, key)

    monkeypatch.setattr(redis.Redis, "get", counted)
    first = answer()
    gets.clear()
    before = hits()
    assert answer() == first == computed()
    assert hits() == before + 1 and not [k for k in gets if k.startswith("slots:answer:")]
    # Another process (a store of its own) computes after a change and stores its answer.
    response = clinic.book("consultation", clinic.at(14))
    assert response.status_code == 201, response.get_json()
    other_worker = cache.RedisStore(url)
    cache.use(other_worker)
    changed = answer()
    assert changed != first and changed == computed()
    # This process's copy is behind: the stored entry answers, not a computation.
    cache.use(first_worker)
    gets.clear()
    before = hits()
    assert answer() == changed
    assert hits() == before + 1 and [k for k in gets if k.startswith("slots:answer:")]
    # Redis gone: the copy still answers only while it is current.
    process.kill()
    process.wait()
    assert answer() == changed
    response = clinic.book("consultation", clinic.at(13))
    assert response.status_code == 201, response.get_json()
    assert answer() == computed() != changed
