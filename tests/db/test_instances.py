"""Several instances, proved: two gunicorn servers and two schedulers on one PostgreSQL and
one Redis (a redis-server of the test's own), as ``compose.yaml`` runs them.

- 50 clients booking one slot, split across both servers: exactly one wins, 49 get 409;
- reminders planned through either server are sent once (one attempt, one log line, by
  whichever scheduler claimed them);
- the change feed reads the same through either server, before and after a change;
- the rate limits are shared: one key's allowance is spent across both servers.

PostgreSQL only (SQLite is one file on one machine: not the shape being proved).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from service.domain.access import services as keys
from service.domain.access.actor import Role
from service.domain.reminders.models import Reminder, ReminderStatus
from service.extensions import unit_of_work
from tests import processes
from tests.conftest import BACKEND
from tests.scenario import build_clinic

pytestmark = pytest.mark.skipif(BACKEND != "postgresql",
                                reason="several instances share a PostgreSQL")

CLIENTS = 50
SHARED_LIMIT = 6


@pytest.fixture
def cluster(app, tmp_path):
    """Redis, two servers (one sync worker each, the suite runs on two cores) and two
    schedulers, all on the test database."""
    with processes.redis_server(tmp_path) as (_, redis_url):
        env = {"DATABASE_URL": app.config["DATABASE_URL"], "REDIS_URL": redis_url,
               "RATE_LIMIT_ROLES": f"integration={SHARED_LIMIT}/hour",
               "REMINDER_CHANNEL": "log", "WEBHOOK_CHANNEL": "log",
               "REMINDER_POLL_SECONDS": "1", "WEBHOOK_POLL_SECONDS": "1",
               "QUIET_HOURS_START": "00:00", "QUIET_HOURS_END": "00:00"}
        with processes.gunicorn("api-1", env, tmp_path) as first, \
                processes.gunicorn("api-2", env, tmp_path) as second, \
                processes.scheduler("scheduler-1", env, tmp_path) as one, \
                processes.scheduler("scheduler-2", env, tmp_path) as two:
            yield [first, second], [one, two]


def post_json(port: int, path: str, token: str, body: dict) -> tuple[int, dict]:
    status, _, raw = processes.call(port, "POST", path, body=json.dumps(body).encode(),
                                    headers={"Authorization": f"Bearer {token}",
                                             "Content-Type": "application/json"})
    return status, json.loads(raw or b"{}")


def get_json(port: int, path: str, token: str) -> tuple[int, dict, dict]:
    status, headers, raw = processes.call(port, "GET", path,
                                          headers={"Authorization": f"Bearer {token}"})
    return status, headers, json.loads(raw or b"null")


def feed(port: int, token: str, sync_token: str | None = None) -> tuple[list, str]:
    """Every page of the change feed through one server: its items and the next token."""
    items: list = []
    query = {"sync_token": sync_token} if sync_token else {}
    while True:
        status, _, body = get_json(port, f"/api/v1/sync/bookings?{urlencode(query)}", token)
        assert status == 200, body
        items.extend(body["items"])
        if body["next_page_token"] is None:
            return items, body["next_sync_token"]
        query = {"page_token": body["next_page_token"]}


def test_two_servers_and_two_schedulers_on_one_database(app, api, cluster):
    (first, second), schedulers = cluster
    clinic = build_clinic(api)
    staff = api.tokens["staff"]
    patients = [clinic.add_patient(first_name=f"Racer{i}", email=f"racer{i}@example.com",
                                   email_consent=True)
                for i in range(CLIENTS)]
    consultation = clinic.services["consultation"]
    start = clinic.at(14)

    # 1. The 50-way race, split across both servers: one winner.
    barrier = threading.Barrier(CLIENTS)
    statuses: list[int] = []
    lock = threading.Lock()

    def book(index: int) -> None:
        server = (first, second)[index % 2]
        body = {"patient_id": patients[index]["id"], "provider_id": clinic.doctor["id"],
                "service_type_id": consultation["id"], "location_id": clinic.virtual["id"],
                "start": start.isoformat(), "patient_state": "AZ"}
        barrier.wait()
        status, _ = post_json(server.port, "/api/v1/bookings", staff, body)
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=book, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert Counter(statuses) == {201: 1, 409: CLIENTS - 1}, Counter(statuses)

    # 2. Reminders planned through either server are sent once.
    booked = []
    for hour, server in ((15, first), (16, second)):
        status, body = post_json(server.port, "/api/v1/bookings", staff, {
            "patient_id": patients[hour]["id"], "provider_id": clinic.doctor["id"],
            "service_type_id": consultation["id"], "location_id": clinic.virtual["id"],
            "start": clinic.at(hour).isoformat(), "patient_state": "AZ"})
        assert status == 201, body
        booked.append(uuid.UUID(body["id"]))

    def confirmations() -> list[Reminder]:
        with app.app_context(), unit_of_work(read_only=True) as uow:
            return list(uow.session.scalars(select(Reminder).where(
                Reminder.kind == "confirmation")))

    deadline = time.monotonic() + 60
    while any(r.status in (ReminderStatus.PLANNED, ReminderStatus.SENDING)
              for r in confirmations()):
        assert time.monotonic() < deadline, "the schedulers did not send the confirmations"
        time.sleep(0.5)
    sent = confirmations()
    assert {r.booking_id for r in sent} >= set(booked)
    assert all(r.status == ReminderStatus.SENT and r.attempts == 1 for r in sent), [
        (r.status, r.attempts) for r in sent]
    logs = "".join(scheduler.log() for scheduler in schedulers)
    for reminder in sent:
        assert len(re.findall(rf"reminder {reminder.id} delivered", logs)) == 1, reminder.id

    # 3. The change feed is the same through either server, before and after a change.
    items_one, token_one = feed(first.port, staff)
    items_two, token_two = feed(second.port, staff)
    assert items_one == items_two and len(items_one) == 3
    cancelled, body = post_json(second.port, f"/api/v1/bookings/{booked[0]}/cancel", staff,
                                {"reason": "patient request"})
    assert cancelled == 200, body
    # Each server's token read through the other one (a token carries its issue time).
    changes_one, _ = feed(first.port, staff, token_two)
    changes_two, _ = feed(second.port, staff, token_one)
    assert changes_one == changes_two
    assert [(item["id"], item.get("deleted")) for item in changes_one] == [
        (str(booked[0]), True)]

    # 4. The rate limit is shared: one allowance, spent through both servers.
    with app.app_context():
        integration = keys.issue_key(unit_of_work(), role=Role.INTEGRATION,
                                     label="shared limit").key
    answers = [get_json((first, second)[i % 2].port, "/api/v1/me", integration)
               for i in range(SHARED_LIMIT + 4)]
    assert [status for status, _, _ in answers] == [200] * SHARED_LIMIT + [429] * 4
    assert answers[-1][1]["Retry-After"].isdigit()
