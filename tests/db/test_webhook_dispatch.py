"""Webhook delivery against a real receiver: a local HTTP server, written here, that checks
the signature with the reference Standard Webhooks verifier (the ``standardwebhooks``
package), the way the README tells integrators to. Time is simulated by passing ``now`` to
``run_once``."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import pytest
from sqlalchemy import select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from service.config import Settings
from service.db import utcnow
from service.domain.calendar.models import DeliveryStatus, WebhookDelivery
from service.domain.outbox import OutboxRunner
from service.domain.retries import backoff
from service.domain.webhooks.services import new_secret
from service.extensions import unit_of_work
from service.scheduler import OutboxScheduler, webhook_runner
from tests.scenario import build_clinic


class Receiver:
    """An integrator's endpoint: verifies the Standard Webhooks signature, answers the
    statuses it is told to (then 200), keeps every request, and counts the accepted
    events."""

    def __init__(self) -> None:
        self.secret = ""
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                valid = receiver.verify(dict(self.headers), body)
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if not valid:
                        status = 401
                    receiver.requests.append({
                        "path": self.path, "headers": dict(self.headers), "body": body,
                        "valid": valid, "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/clinic?source=test"

    def verify(self, headers: dict[str, str], body: bytes, secret: str | None = None) -> bool:
        """The receiver's check, by the reference library (it also refuses a timestamp more
        than five minutes off)."""
        try:
            Webhook(secret or self.secret).verify(body, headers)
        except WebhookVerificationError:
            return False
        return True

    def accepted(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["valid"] and 200 <= r["status"] < 300]

    def events(self) -> list[str]:
        return [r["headers"]["webhook-id"] for r in self.requests]


@pytest.fixture
def receiver():
    server = Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture
def local_targets(app):
    """Let the API accept the local receiver's 127.0.0.1 URL."""
    settings = app.config["SETTINGS"]
    app.config["SETTINGS"] = dataclasses.replace(settings, webhook_allow_private_targets=True)
    yield
    app.config["SETTINGS"] = settings


def settings(**overrides: Any) -> Settings:
    env = {"WEBHOOK_ALLOW_PRIVATE_TARGETS": "1", "WEBHOOK_TIMEOUT_SECONDS": "5",
           "WEBHOOK_LEASE_SECONDS": "30", "WEBHOOK_RETRY_BASE_SECONDS": "30"}
    return dataclasses.replace(Settings.from_env(env), **overrides)


def dispatcher(app, **overrides: Any) -> OutboxRunner:
    return webhook_runner(app.extensions["clinic.database"], settings(**overrides))


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def subscribe(api, receiver: Receiver, events: list[str] | None = None) -> dict[str, Any]:
    response = api.post("/api/v1/webhooks", role="integration", json={
        "url": receiver.url, "events": events or ["booking.created", "booking.cancelled"]})
    assert response.status_code == 201, response.get_json()
    hook = response.get_json()
    receiver.secret = hook["secret"]
    return hook


def book(clinic, hour: int = 14) -> dict[str, Any]:
    response = clinic.book("consultation", clinic.at(hour))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def rows(app) -> list[WebhookDelivery]:
    with app.app_context(), unit_of_work() as uow:
        return list(uow.session.scalars(select(WebhookDelivery).order_by(
            WebhookDelivery.created_at, WebhookDelivery.id)))


def log_of(api, hook, delivery_id) -> dict[str, Any]:
    response = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery_id}",
                       role="integration")
    assert response.status_code == 200
    return response.get_json()


def test_a_delivery_is_signed_thin_and_verified_by_the_receiver(app, api, clinic, receiver,
                                                                local_targets):
    hook = subscribe(api, receiver)
    booking = book(clinic)
    report = dispatcher(app).run_once()
    assert report.delivered == 1
    [request] = receiver.requests
    assert request["valid"] and request["status"] == 200
    assert request["path"] == "/hooks/clinic?source=test"
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Event-Type"] == "booking.created"
    assert headers["X-Delivery-Attempt"] == "1"
    body = json.loads(request["body"])
    assert body["id"] == headers["webhook-id"] and body["type"] == "booking.created"
    assert "X-Signature" not in headers and "X-Event-Id" not in headers
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["webhook-signature"].startswith("v1,") and " " not in headers[
        "webhook-signature"]
    assert body["data"]["booking_id"] == booking["id"] and body["data"]["status"] == "booked"
    for secret in (clinic.patient["first_name"], clinic.patient["last_name"],
                   clinic.patient["email"], clinic.patient["phone"]):
        assert secret not in request["body"].decode()
    [row] = rows(app)
    assert row.status is DeliveryStatus.DELIVERED and row.attempts == 1
    assert log_of(api, hook, row.id)["log"][0]["status_code"] == 200
    # A tampered body, an old timestamp or another secret fails the library's check.
    assert receiver.verify(headers, request["body"])
    assert not receiver.verify(headers, request["body"] + b" ")
    old = str(int(headers["webhook-timestamp"]) - 600)
    assert not receiver.verify({**headers, "webhook-timestamp": old}, request["body"])
    assert not receiver.verify(headers, request["body"], secret=new_secret())
    assert dispatcher(app).run_once().claimed == 0  # nothing twice


def test_a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends(
        app, api, clinic, receiver, local_targets):
    hook = subscribe(api, receiver)
    old = hook["secret"]
    response = api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", role="integration")
    assert response.status_code == 200, response.get_json()
    rotated = response.get_json()
    new = rotated["secret"]
    assert new != old and new.startswith("whsec_")
    receiver.secret = new
    expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert timedelta(hours=23, minutes=59) < expires - utcnow() <= timedelta(hours=24)
    read = api.get(f"/api/v1/webhooks/{hook['id']}", role="integration").get_json()
    assert "secret" not in read and "previous_secret" not in read
    book(clinic, 14)
    assert dispatcher(app).run_once().delivered == 1  # during the overlap
    during = receiver.requests[-1]
    assert len(during["headers"]["webhook-signature"].split(" ")) == 2
    assert receiver.verify(during["headers"], during["body"], secret=new)
    assert receiver.verify(during["headers"], during["body"], secret=old)
    book(clinic, 16)
    assert dispatcher(app).run_once(now=expires + timedelta(seconds=1)).delivered == 1
    late = receiver.requests[-1]  # after it
    assert len(late["headers"]["webhook-signature"].split(" ")) == 1
    assert receiver.verify(late["headers"], late["body"], secret=new)
    assert not receiver.verify(late["headers"], late["body"], secret=old)


def test_deliveries_match_the_published_event_catalogue(app, api, clinic, receiver,
                                                        local_targets):
    catalogue = api.get("/api/v1/webhooks/events", role="integration")
    assert catalogue.status_code == 200, catalogue.get_json()
    schemas = {entry["type"]: entry["schema"] for entry in catalogue.get_json()}
    assert set(schemas) == {"booking.created", "booking.rescheduled", "booking.cancelled",
                            "booking.no_show", "series.created", "booking.attention",
                            "alert.raised", "alert.acknowledged",
                            "waitlist.offered", "waitlist.filled"}
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    subscribe(api, receiver, ["booking.created", "booking.cancelled"])
    booking = book(clinic)
    cancelled = api.post(f"/api/v1/bookings/{booking['id']}/cancel", role="staff",
                         json={"reason": "patient request"})
    assert cancelled.status_code in (200, 201), cancelled.get_json()
    assert dispatcher(app).run_once().delivered == 2
    for request in receiver.requests:
        body = json.loads(request["body"])
        checker = jsonschema.Draft202012Validator(
            schemas[body["type"]], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        checker.validate(body)
    assert [json.loads(r["body"])["type"] for r in receiver.requests] == [
        "booking.created", "booking.cancelled"]


def test_a_receiver_that_fails_twice_then_succeeds_accepts_exactly_one(app, api, clinic,
                                                                      receiver, local_targets):
    hook = subscribe(api, receiver)
    book(clinic)
    receiver.statuses = [500, 503]
    worker = dispatcher(app)
    now = utcnow()
    assert worker.run_once(now=now).retried == 1
    assert worker.run_once(now=now + timedelta(seconds=10)).claimed == 0  # backing off
    second = now + backoff(1, 30) + timedelta(seconds=1)
    assert worker.run_once(now=second).retried == 1
    third = second + backoff(2, 30) + timedelta(seconds=1)
    assert worker.run_once(now=third).delivered == 1
    assert worker.run_once(now=third + timedelta(hours=2)).claimed == 0

    assert [r["status"] for r in receiver.requests] == [500, 503, 200]
    assert len(set(receiver.events())) == 1  # the same event id on every attempt
    assert [r["headers"]["X-Delivery-Attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert len(receiver.accepted()) == 1
    [row] = rows(app)
    assert row.status is DeliveryStatus.DELIVERED and row.attempts == 3
    log = log_of(api, hook, row.id)
    assert [(a["attempt"], a["status_code"], a["error"]) for a in log["log"]] == [
        (1, 500, "http_500"), (2, 503, "http_503"), (3, 200, None)]


def test_retries_back_off_for_24_hours_then_the_subscription_is_disabled(
        app, api, clinic, receiver, local_targets):
    hook = subscribe(api, receiver)
    book(clinic, 14)
    book(clinic, 16)
    receiver.statuses = [500] * 1000
    worker = dispatcher(app)
    start = at = utcnow()
    while any(r.status is DeliveryStatus.PENDING for r in rows(app)):
        worker.run_once(now=at)
        pending = [r.next_attempt_at for r in rows(app) if r.status is DeliveryStatus.PENDING]
        at = min(pending, default=at)
        assert at - start < timedelta(hours=25)
    failed = [r for r in rows(app) if r.status is DeliveryStatus.FAILED]
    assert len(failed) == 1 and failed[0].attempts >= 20
    log = log_of(api, hook, failed[0].id)["log"]
    times = [datetime.fromisoformat(a["attempted_at"]) for a in log]
    assert len(times) == failed[0].attempts
    assert times[-1] - failed[0].created_at <= timedelta(hours=24)
    assert times[-1] + backoff(len(times), 30) - failed[0].created_at > timedelta(hours=24)
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    for attempt, gap in enumerate(gaps, start=1):  # doubling from 30 s, at most an hour
        assert backoff(attempt, 30) <= gap <= backoff(attempt, 30) + timedelta(seconds=30)
    assert backoff(1, 30) == timedelta(seconds=30) and max(gaps) <= timedelta(hours=1, seconds=30)
    other = [r for r in rows(app) if r.id != failed[0].id]
    assert [(r.status, r.last_error) for r in other] == [
        (DeliveryStatus.CANCELLED, "subscription_disabled")]
    read = api.get(f"/api/v1/webhooks/{hook['id']}", role="integration").get_json()
    assert read["active"] is False and read["disabled_reason"] == "delivery_failures"
    assert read["version"] == 2
    # Nothing is queued for a disabled subscription; redelivery needs it enabled again.
    book(clinic, 15)
    assert len(rows(app)) == 2


def test_redelivery_sends_the_same_event_with_a_fresh_signature(app, api, clinic, receiver,
                                                               local_targets):
    hook = subscribe(api, receiver)
    book(clinic)
    worker = dispatcher(app)
    worker.run_once()
    [first] = rows(app)
    response = api.post(f"/api/v1/webhooks/{hook['id']}/deliveries/{first.id}/redeliver",
                        role="integration")
    assert response.status_code == 201, response.get_json()
    assert worker.run_once().delivered == 1
    assert len(receiver.requests) == 2 and all(r["valid"] for r in receiver.requests)
    one, two = receiver.requests
    assert one["body"] == two["body"]
    assert one["headers"]["webhook-id"] == two["headers"]["webhook-id"]
    assert one["headers"]["X-Delivery-Id"] != two["headers"]["X-Delivery-Id"]


def test_a_claimed_row_whose_sender_died_is_sent_after_its_lease(app, api, clinic, receiver,
                                                                local_targets):
    subscribe(api, receiver)
    book(clinic)
    now = utcnow()
    crashed = dispatcher(app)
    assert len(crashed.claim(now, limit=10)) == 1  # ... and never sends
    worker = dispatcher(app)
    assert worker.run_once(now=now + timedelta(seconds=5)).claimed == 0  # leased
    assert worker.run_once(now=now + timedelta(seconds=31)).delivered == 1
    [row] = rows(app)
    assert row.attempts == 2 and len(receiver.requests) == 1


def test_a_disabled_subscriptions_queued_deliveries_are_cancelled(app, api, clinic, receiver,
                                                                  local_targets):
    hook = subscribe(api, receiver)
    book(clinic)
    api.patch(f"/api/v1/webhooks/{hook['id']}", json={"active": False},
              headers={"If-Match": '"v1"'}, role="integration")
    report = dispatcher(app).run_once()
    assert (report.cancelled, report.claimed) == (1, 0) and receiver.requests == []
    assert rows(app)[0].last_error == "subscription_inactive"


def test_an_unreachable_or_refused_target_is_retried(app, api, clinic, receiver, local_targets):
    subscribe(api, receiver)
    book(clinic)
    receiver.server.shutdown()
    receiver.server.server_close()
    now = utcnow()
    assert dispatcher(app).run_once(now=now).retried == 1
    assert rows(app)[0].last_error == "connection_refused"
    strict = dispatcher(app, webhook_allow_private_targets=False)
    assert strict.run_once(now=now + timedelta(minutes=5)).retried == 1
    assert rows(app)[0].last_error == "target_not_allowed"


def test_two_dispatchers_never_send_the_same_delivery_twice(app, api, clinic, receiver,
                                                            local_targets):
    hooks = [subscribe(api, receiver, ["booking.created"]) for _ in range(3)]
    receiver.secret = hooks[0]["secret"]  # signatures of the others fail: still counted
    for hour in (13, 14, 15, 16):
        book(clinic, hour)
    workers = [dispatcher(app, webhook_batch_size=3) for _ in range(2)]
    barrier = threading.Barrier(2)

    def drain(worker: OutboxRunner) -> None:
        barrier.wait()
        worker.run_once()

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    sent = Counter(r["headers"]["X-Delivery-Id"] for r in receiver.requests)
    assert len(sent) == 12 and set(sent.values()) == {1}


def test_the_scheduler_runs_the_webhook_outbox_like_the_reminders(app):
    outbox = OutboxScheduler(Settings.from_env({}), database=app.extensions["clinic.database"])
    job = outbox.scheduler.get_job("webhooks")
    assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, None)
    assert job.trigger.interval == timedelta(seconds=5)
