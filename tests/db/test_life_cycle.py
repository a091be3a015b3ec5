"""Graceful life cycle: on SIGTERM gunicorn turns readiness 503 first (the load balancer
drains the instance), keeps serving for DRAIN_SECONDS, then lets the request in flight
finish; the scheduler lets its jobs finish within SCHEDULER_GRACE_SECONDS."""

from __future__ import annotations

import dataclasses
import signal
import socket
import threading
import time

from prometheus_client.parser import text_string_to_metric_families

from service.config import Settings
from service.domain.access import services as keys
from service.domain.access.actor import Role
from service.extensions import unit_of_work
from service.scheduler import OutboxScheduler
from tests import processes


def test_sigterm_drains_then_finishes_the_request_in_flight(app, tmp_path):
    env = {"DATABASE_URL": app.config["DATABASE_URL"], "DRAIN_SECONDS": "1.5",
           "GRACEFUL_TIMEOUT": "10"}
    with processes.gunicorn("drain", env, tmp_path, workers=2) as server:
        assert processes.call(server.port, "GET", "/readyz")[0] == 200
        # A request in flight: its body arrives in two parts, around the SIGTERM.
        body = b'{"patient_id": null}'
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        slow.sendall(b"POST /api/v1/bookings HTTP/1.1\r\nHost: test\r\n"
                     b"Content-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:8])
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        readiness = processes.call(server.port, "GET", "/readyz")
        assert readiness[0] == 503, readiness  # drained first ...
        assert processes.call(server.port, "GET", "/healthz")[0] == 200  # ... still serving
        time.sleep(1.7)  # past DRAIN_SECONDS: the workers have been told to stop
        slow.sendall(body[8:])
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
        slow.close()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]  # answered, not dropped
        server.process.wait(timeout=15)
        assert server.process.returncode == 0, server.log()[-2000:]
        assert "draining (readiness 503)" in server.log()


def test_the_scheduler_waits_for_its_jobs_within_the_grace(app):
    settings = dataclasses.replace(Settings.from_env({}),
                                   database_url=app.config["DATABASE_URL"])
    outbox = OutboxScheduler(settings, database=app.extensions["clinic.database"])
    for job in outbox.scheduler.get_jobs():
        job.remove()
    release = threading.Event()
    running = threading.Event()

    def busy() -> None:
        running.set()
        release.wait(10)

    outbox.scheduler.add_job(busy, id="busy", max_instances=1)
    thread = threading.Thread(target=outbox.scheduler.start, daemon=True)
    thread.start()
    assert running.wait(10)
    # The main loop removes the one-off job from its store just after submitting it; a
    # shutdown that marks the scheduler stopped before that makes APScheduler look for it
    # among pending jobs and raise JobLookupError in its thread. Shut down after.
    deadline = time.monotonic() + 10
    while outbox.scheduler.get_job("busy") is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    assert outbox.shutdown_within(0.5) is False  # the job outlasts the grace
    assert 0.4 < time.monotonic() - started < 3
    release.set()
    thread.join(10)
    assert not thread.is_alive()


def test_scheduler_grace_is_configurable():
    assert Settings.from_env({}).scheduler_grace_seconds == 30
    assert Settings.from_env({"SCHEDULER_GRACE_SECONDS": "5"}).scheduler_grace_seconds == 5


def test_metrics_add_up_across_gunicorn_workers_and_the_scheduler_exports_its_own(app,
                                                                                 tmp_path):
    with app.app_context():
        admin = keys.issue_key(unit_of_work(), role=Role.ADMIN, label="scraper").key
    env = {"DATABASE_URL": app.config["DATABASE_URL"], "SCHEDULER_METRICS_PORT":
           str(processes.free_port()), "REMINDER_CHANNEL": "log", "WEBHOOK_CHANNEL": "log"}
    with processes.gunicorn("metrics", env, tmp_path, workers=2) as server, \
            processes.scheduler("scheduler", env, tmp_path):
        for _ in range(20):
            assert processes.call(server.port, "GET", "/healthz")[0] == 200
        status, headers, body = processes.call(server.port, "GET", "/metrics", headers={
            "Authorization": f"Bearer {admin}"})
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(body.decode())
                   for s in family.samples}
        assert samples[("clinic_http_requests_total", (
            ("method", "GET"), ("route", "/healthz"), ("status", "200")))] >= 20
        status, _, exported = processes.call(int(env["SCHEDULER_METRICS_PORT"]), "GET",
                                             "/metrics")
        assert status == 200
        text = exported.decode()
        assert 'clinic_outbox_depth{outbox="reminders"}' in text
        assert "clinic_scheduler_job_duration_seconds_count" in text
