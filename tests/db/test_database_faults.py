"""A database that stops or hangs: every endpoint answers 503 database_unavailable fast.

Against a PostgreSQL server of its own (``tests/pgcluster.py``), never the shared one: the
test stops it (``pg_ctl stop -m immediate``) and pauses it (SIGSTOP on the postmaster and
every backend: sockets open, nothing answers). Meanwhile a list read, an API key check, a
booking POST, ``/readyz`` and a FHIR read must answer 503 ``database_unavailable`` with
``Retry-After`` within 10 s (``/readyz`` within about 2 s), ``/healthz`` 200, with one log
line per failed request and no traceback; once the server is back, the same app (not
recreated) answers them again, and the booking acknowledged before the fault is still there.

Independent of TEST_DATABASE; it runs in the PostgreSQL pass only (once is enough). Skipped
there only when no PostgreSQL binaries are installed, and then it fails instead when CI=true.
Bounded: about 25 s.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from service import db, migrate
from service.app import create_app
from service.domain.access import services as keys
from service.domain.access.actor import Role
from service.extensions import unit_of_work
from tests.conftest import BACKEND
from tests.factories import Api
from tests.pgcluster import Cluster, find_binaries, temporary_cluster
from tests.scenario import Clinic, build_clinic

PROBLEM = "application/problem+json"
FHIR = "application/fhir+json"
BOUND_SECONDS = 10.0  # every endpoint answers within this while the database is broken
READINESS_SECONDS = 3.0  # READINESS_TIMEOUT_SECONDS (2) plus scheduling slack

pytestmark = pytest.mark.skipif(BACKEND != "postgresql",
                                reason="runs once, in the PostgreSQL pass (TEST_DATABASE)")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    binaries = find_binaries()
    if binaries is None:
        message = "no PostgreSQL binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    with temporary_cluster(binaries) as server:
        yield server


@dataclass
class Faulty:
    cluster: Cluster
    api: Api
    clinic: Clinic


@pytest.fixture(scope="module")
def faulty(cluster: Cluster) -> Iterator[Faulty]:
    url = cluster.url()
    migrate.upgrade(url)
    application = create_app({"DATABASE_URL": url, "TESTING": True})
    with application.app_context():
        tokens = {role: keys.issue_key(unit_of_work(), role=role, label=f"fault {role}").key
                  for role in (Role.ADMIN, Role.STAFF)}
    api = Api(app=application, client=application.test_client(), tokens=tokens)
    try:
        yield Faulty(cluster=cluster, api=api, clinic=build_clinic(api))
    finally:
        application.extensions["clinic.database"].dispose()


@dataclass
class Answer:
    status: int
    mimetype: str
    headers: dict[str, str]
    body: Any
    seconds: float

    @property
    def code(self) -> str | None:
        if self.mimetype == FHIR:  # an OperationOutcome carries the code in details.coding
            return self.body["issue"][0]["details"]["coding"][0]["code"]
        return (self.body or {}).get("code")


def requests(faulty: Faulty, *, booking_id: str, hour: int) -> dict[str, dict[str, Any]]:
    """The requests every fault is tried with: name -> arguments of client.open."""
    clinic, api = faulty.clinic, faulty.api
    staff = api.headers("staff")
    public_id = api.tokens["staff"].split("_")[2]
    unknown_key = {"Authorization": f"Bearer ck_staff_{public_id}_not-the-secret"}
    body = {"patient_id": clinic.patient["id"], "provider_id": clinic.doctor["id"],
            "service_type_id": clinic.services["consultation"]["id"],
            "location_id": clinic.virtual["id"], "start": clinic.at(hour).isoformat(),
            "patient_state": "AZ"}
    return {
        "patient list": {"path": "/api/v1/patients", "headers": staff},
        "provider list": {"path": "/api/v1/providers", "headers": staff},
        "unknown key": {"path": "/api/v1/providers", "headers": unknown_key},
        "booking POST": {"path": "/api/v1/bookings", "method": "POST", "json": body,
                         "headers": {**staff, "Idempotency-Key": f"fault-booking-{hour}"}},
        "FHIR read": {"path": f"/fhir/R4/Appointment/{booking_id}", "headers": staff},
        "readyz": {"path": "/readyz"},
        "healthz": {"path": "/healthz"},
    }


def send_all(faulty: Faulty, calls: dict[str, dict[str, Any]]) -> dict[str, Answer]:
    """Every request at once, each from a thread and a test client of its own."""
    answers: dict[str, Answer] = {}

    def send(name: str, arguments: dict[str, Any]) -> None:
        client = faulty.api.app.test_client()
        started = time.monotonic()
        response = client.open(**arguments)
        seconds = time.monotonic() - started
        body = response.get_json(silent=True, force=True)
        answers[name] = Answer(response.status_code, response.mimetype,
                               dict(response.headers), body, seconds)

    threads = [threading.Thread(target=send, args=item, daemon=True) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)
    assert set(answers) == set(calls), f"no answer at all from {set(calls) - set(answers)}"
    return answers


def book(faulty: Faulty, hour: int) -> str:
    response = faulty.clinic.book("consultation", faulty.clinic.at(hour))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def assert_unavailable(answers: dict[str, Answer], caplog: pytest.LogCaptureFixture) -> None:
    timings = {name: round(answer.seconds, 2) for name, answer in answers.items()}
    for name, answer in answers.items():
        assert answer.seconds < BOUND_SECONDS, timings
        if name == "healthz":
            assert answer.status == 200, (name, answer)
            continue
        assert answer.status == 503, (name, answer)
        assert answer.code == "database_unavailable", (name, answer)
        assert int(answer.headers["Retry-After"]) > 0, (name, answer)
        assert answer.mimetype == (FHIR if name == "FHIR read" else PROBLEM), (name, answer)
    assert answers["readyz"].seconds < READINESS_SECONDS, timings

    failed = len(answers) - 1
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    unavailable = [r for r in lines if "database unavailable" in r.getMessage()]
    assert len(unavailable) == failed, [r.getMessage() for r in lines]
    assert len(lines) == failed, [f"{r.name}: {r.getMessage()}" for r in lines]
    for record in lines:
        assert record.exc_info is None and "Traceback" not in record.getMessage(), record
        assert "Robin" not in record.getMessage()  # the patient's name never


def assert_recovered(faulty: Faulty, *, booking_id: str, hour: int) -> None:
    answers = send_all(faulty, requests(faulty, booking_id=booking_id, hour=hour))
    expected = {"patient list": 200, "provider list": 200, "unknown key": 401,
                "booking POST": 201, "FHIR read": 200, "readyz": 200, "healthz": 200}
    assert {name: a.status for name, a in answers.items()} == expected, {
        name: (a.status, a.code) for name, a in answers.items()}
    # The acknowledged booking survived (an immediate shutdown is a crash to PostgreSQL).
    kept = faulty.api.get(f"/api/v1/bookings/{booking_id}")
    assert kept.status_code == 200 and kept.get_json()["status"] == "booked"


def test_a_stopped_database_answers_503_at_once_and_the_service_recovers(faulty, caplog):
    booking_id = book(faulty, 13)  # acknowledged before the fault
    caplog.clear()
    caplog.set_level(logging.INFO)
    faulty.cluster.stop("immediate")
    try:
        answers = send_all(faulty, requests(faulty, booking_id=booking_id, hour=14))
    finally:
        faulty.cluster.start()
    assert_unavailable(answers, caplog)
    assert_recovered(faulty, booking_id=booking_id, hour=14)


def test_a_paused_database_answers_503_within_seconds_and_the_service_recovers(faulty,
                                                                               caplog):
    booking_id = book(faulty, 15)
    caplog.clear()
    caplog.set_level(logging.INFO)
    paused = faulty.cluster.pause()
    assert len(paused) > 1  # the postmaster and its backends
    try:
        answers = send_all(faulty, requests(faulty, booking_id=booking_id, hour=16))
    finally:
        faulty.cluster.resume()
    assert_unavailable(answers, caplog)
    assert_recovered(faulty, booking_id=booking_id, hour=16)



@pytest.mark.parametrize(("mode", "ping_after_idle"), [
    ("immediate", 3600.0),  # never idle long enough: only the closed sockets tell
    ("fast", db.PING_AFTER_IDLE_SECONDS),
])
def test_a_database_restarted_between_requests_goes_unnoticed(faulty, monkeypatch, mode,
                                                               ping_after_idle):
    """The pooled connections of a server that restarted while no request was in flight
    are stale: each is found out before use (pinged when the server closed it or when it
    idled long) and replaced, so the first requests after the restart are answered."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", ping_after_idle)
    staff = faulty.api.headers("staff")
    reads = {f"{name} {n}": {"path": path, "headers": staff} for n in range(3)
             for name, path in (("patients", "/api/v1/patients"),
                                ("providers", "/api/v1/providers"))}
    before = send_all(faulty, reads)  # at once: several pooled connections
    assert {a.status for a in before.values()} == {200}, before
    faulty.cluster.stop(mode)
    faulty.cluster.start()
    after = send_all(faulty, reads)
    assert {name: a.status for name, a in after.items()} == dict.fromkeys(reads, 200), {
        name: (a.status, a.code) for name, a in after.items()}


@pytest.mark.parametrize("fault", ["stopped", "paused", "restarted"])
def test_a_repeated_slot_search_meets_the_fault_as_any_read_does(faulty, caplog, fault):
    """A cached slot search's one query (the versions, through the pool straight to the
    driver: ``versions.read_pooled``) while the server is down or hung: 503
    database_unavailable within the bound, one log line; after a restart, or once the
    server is back, the same answer again."""
    clinic = faulty.clinic
    search = {"path": "/api/v1/slots", "headers": faulty.api.headers("staff"),
              "query_string": {"service_type": clinic.services["consultation"]["id"],
                               "start": clinic.day.isoformat(),
                               "end": (clinic.day + timedelta(days=1)).isoformat()}}
    client = faulty.api.app.test_client()
    answered = client.open(**search)
    assert answered.status_code == 200
    assert client.open(**search).get_data() == answered.get_data()  # stored; key cached
    caplog.clear()
    caplog.set_level(logging.INFO)
    if fault == "restarted":
        faulty.cluster.stop("immediate")
        faulty.cluster.start()
    else:
        pause = faulty.cluster.pause if fault == "paused" else (
            lambda: faulty.cluster.stop("immediate"))
        resume = faulty.cluster.resume if fault == "paused" else faulty.cluster.start
        pause()
        try:
            answers = send_all(faulty, {"repeated slot search": search})
        finally:
            resume()
        answer = answers["repeated slot search"]
        assert answer.seconds < BOUND_SECONDS and answer.status == 503, answer
        assert answer.code == "database_unavailable" and answer.mimetype == PROBLEM, answer
        lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1 and "database unavailable" in lines[0].getMessage(), [
            r.getMessage() for r in lines]
        assert lines[0].exc_info is None
    again = client.open(**search)
    assert again.status_code == 200 and again.get_data() == answered.get_data()
