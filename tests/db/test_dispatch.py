"""Reminder dispatch against real peers: a local SMTP server (aiosmtpd) and a local HTTP sink
standing in for the SMS gateway. Time is simulated by passing ``now`` to ``run_once``; the
multi-process tests (PostgreSQL) run real processes on the real clock with short leases."""

from __future__ import annotations

import contextlib
import dataclasses
import email
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from datetime import time as wall_time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import event, select

from service import bootstrap
from service.config import Settings
from service.db import utcnow
from service.domain.outbox import OutboxRunner
from service.domain.reminders.content import OPT_OUT_TEXT, forbidden_words
from service.domain.reminders.models import Reminder, ReminderStatus, dedupe_key
from service.domain.time import local_to_utc
from service.extensions import unit_of_work
from service.scheduler import OutboxScheduler, reminder_runner
from tests.scenario import build_clinic

ROOT = Path(__file__).resolve().parents[2]
SMS_FROM = "+16025550000"
NO_QUIET = {"QUIET_HOURS_START": "00:00", "QUIET_HOURS_END": "00:00"}


# The channels' peers ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MailSink:
    """A real SMTP server (aiosmtpd) that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.content)
        self.messages.append({
            "to": envelope.rcpt_tos, "message_id": message["Message-ID"],
            "key": message["X-Reminder-Key"], "subject": message["Subject"],
            "body": message.get_payload(decode=True).decode()})
        return "250 Message accepted for delivery"

    def keys(self) -> list[str]:
        return [m["key"] for m in self.messages]


class SmsSink:
    """A Twilio-style Messages endpoint over HTTP/1.1 keep-alive, in a thread."""

    PATH = "/2010-04-01/Accounts/ACtest/Messages.json"

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # answers to give first; then 201
        self.delay = 0.0
        self.on_request: Callable[[dict[str, Any]], bool] | None = None
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's name
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                record = {"to": form["To"][0], "from": form["From"][0],
                          "body": form["Body"][0], "key": self.headers["Idempotency-Key"],
                          "auth": self.headers.get("Authorization"), "path": self.path,
                          "at": time.time()}
                with sink.lock:
                    sink.requests.append(record)
                    status = sink.statuses.pop(0) if sink.statuses else 201
                if sink.on_request is not None and not sink.on_request(record):
                    self.close_connection = True  # no answer at all
                    return
                if sink.delay:
                    time.sleep(sink.delay)
                payload = json.dumps({"sid": f"SM{uuid.uuid4().hex}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self._headers_buffer.append(b"\r\n" + payload)  # one write: no Nagle wait
                self.flush_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.PATH}"

    def keys(self) -> list[str]:
        with self.lock:
            return [r["key"] for r in self.requests]


@dataclasses.dataclass
class Sinks:
    mail: MailSink
    sms: SmsSink

    def keys(self) -> list[str]:
        return self.mail.keys() + self.sms.keys()

    def env(self) -> dict[str, str]:
        """The environment that points a dispatcher process at these sinks."""
        return {"REMINDER_CHANNEL": "live", "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(self.mail.port), "SMTP_FROM": "reminders@clinic.test",
                "SMS_GATEWAY_URL": self.sms.url, "SMS_ACCOUNT_SID": "ACtest",
                "SMS_AUTH_TOKEN": "secret", "SMS_FROM": SMS_FROM}


@contextlib.contextmanager
def running_sinks() -> Iterator[Sinks]:
    """A local SMTP server and SMS gateway, stopped at the end of the block."""
    mail, sms = MailSink(), SmsSink()
    mail.controller.start()
    sms.thread.start()
    try:
        yield Sinks(mail, sms)
    finally:
        mail.controller.stop()
        sms.server.shutdown()
        sms.server.server_close()


@pytest.fixture
def sinks():
    with running_sinks() as started:
        yield started


@pytest.fixture(autouse=True)
def _no_quiet_hours_when_planning(app):
    """Planning runs on the real clock: keep the test's time of day out of it."""
    quiet_free = dataclasses.replace(app.config["SETTINGS"], quiet_hours_start=wall_time(0, 0),
                                     quiet_hours_end=wall_time(0, 0))
    bus = app.extensions["clinic.bus"]
    app.extensions["clinic.bus"] = bootstrap.bootstrap(quiet_free)
    yield
    app.extensions["clinic.bus"] = bus


def live_settings(sinks: Sinks, **overrides: Any) -> Settings:
    env = {**sinks.env(), **NO_QUIET, "REMINDER_MAX_ATTEMPTS": "3",
           "REMINDER_RETRY_BASE_SECONDS": "60", "REMINDER_LEASE_SECONDS": "2",
           "CHANNEL_TIMEOUT_SECONDS": "5"}
    return dataclasses.replace(Settings.from_env(env), **overrides)


def dispatcher(app, settings: Settings) -> OutboxRunner:
    return reminder_runner(app.extensions["clinic.database"], settings)


# The clinic --------------------------------------------------------------------------------


@pytest.fixture
def clinic(api):
    return build_clinic(api)


PHONES = iter(f"+1602555{n:04d}" for n in range(2000, 9999))


def patient(clinic, *, sms=True, mail=True, **fields: Any) -> dict[str, Any]:
    return clinic.add_patient(first_name=fields.pop("first_name", "Robin"),
                              phone=next(PHONES), email=f"p{uuid.uuid4().hex[:8]}@example.com",
                              sms_consent=sms, email_consent=mail, **fields)


def book(clinic, who: dict[str, Any], hour: int = 14, day_offset: int = 0) -> dict[str, Any]:
    response = clinic.book("consultation",
                           clinic.at(hour, day=clinic.day + timedelta(days=day_offset)),
                           patient=who)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def rows(api, booking: dict[str, Any]) -> list[dict[str, Any]]:
    response = api.get(f"/api/v1/bookings/{booking['id']}/reminders")
    assert response.status_code == 200
    return response.get_json()


def row(api, booking: dict[str, Any], kind: str, version: int = 1) -> dict[str, Any]:
    return next(r for r in rows(api, booking)
                if r["kind"] == kind and r["plan_version"] == version)


def due(api, booking, kind: str, version: int = 1) -> datetime:
    return datetime.fromisoformat(row(api, booking, kind, version)["due_at"])


def start_of(booking) -> datetime:
    return datetime.fromisoformat(booking["start"])


def key(booking, kind: str, version: int = 1) -> str:
    return dedupe_key(uuid.UUID(booking["id"]), kind, version)


def set_plan(api, clinic, service: str, plan: dict[str, Any]) -> None:
    service_type = clinic.services[service]
    response = api.patch(f"/api/v1/service-types/{service_type['id']}",
                         json={"reminder_plan": plan},
                         headers={"If-Match": f'"v{service_type["version"]}"'})
    assert response.status_code == 200, response.get_json()
    clinic.services[service] = response.get_json()


CONFIRMATION_ONLY = {"confirmation": True, "hours_before": [], "next_day_check_in": False}


# Sending ----------------------------------------------------------------------------------


def test_due_reminders_go_out_by_sms_and_email_with_their_dedupe_keys(app, api, clinic,
                                                                      sinks):
    by_sms, by_mail = patient(clinic), patient(clinic, sms=False, first_name="Ava")
    first, second = book(clinic, by_sms, 14), book(clinic, by_mail, 15)
    now = due(api, second, "before_24h") + timedelta(seconds=1)

    report = dispatcher(app, live_settings(sinks)).run_once(now=now)

    assert sorted(sinks.sms.keys()) == sorted([key(first, "confirmation"),
                                               key(first, "before_24h")])
    assert sorted(sinks.mail.keys()) == sorted([key(second, "confirmation"),
                                                key(second, "before_24h")])
    assert report.sent == 4 and report.skipped == 2  # the 72 h ones, superseded
    sms = next(r for r in sinks.sms.requests if r["key"] == key(first, "before_24h"))
    assert (sms["to"], sms["from"], sms["path"]) == (by_sms["phone"], SMS_FROM, SmsSink.PATH)
    assert sms["auth"].startswith("Basic ")
    assert sms["body"].startswith("Hi Robin, ") and sms["body"].endswith(OPT_OUT_TEXT)
    assert len(sms["body"]) <= 160 and forbidden_words(sms["body"]) == []
    mail = next(m for m in sinks.mail.messages if m["key"] == key(second, "before_24h"))
    assert mail["to"] == [by_mail["email"]]
    assert mail["message_id"] == f"<{key(second, 'before_24h')}@clinic.test>"
    assert "Hi Ava," in mail["body"] and forbidden_words(mail["body"] + mail["subject"]) == []
    sent = row(api, first, "before_24h")
    assert (sent["status"], sent["channel"], sent["attempts"]) == ("sent", "sms", 1)
    assert row(api, second, "before_24h")["channel"] == "email"
    assert row(api, first, "before_72h")["reason"] == "superseded"


def test_the_log_channel_records_ids_only(app, api, clinic, caplog):
    who = patient(clinic, first_name="Quinn")
    booking = book(clinic, who)
    caplog.set_level("INFO")
    report = dispatcher(app, Settings.from_env()).run_once(
        now=due(api, booking, "before_72h") + timedelta(seconds=1))
    assert report.sent == 2
    assert row(api, booking, "before_72h")["channel"] == "log"
    logged = caplog.text
    assert key(booking, "before_72h") in logged
    for secret in ("Quinn", who["phone"], who["email"], "Reply STOP"):
        assert secret not in logged


def test_cancel_one_second_before_due_sends_nothing(app, api, clinic, sinks):
    booking = book(clinic, patient(clinic))
    due_24h = due(api, booking, "before_24h")
    send = dispatcher(app, live_settings(sinks))
    send.run_once(now=due_24h - timedelta(seconds=1))
    assert key(booking, "before_72h") in sinks.keys()

    cancelled = api.post(f"/api/v1/bookings/{booking['id']}/cancel",
                         json={"reason": "Patient request"})
    assert cancelled.status_code == 200
    for later in (due_24h, due_24h + timedelta(hours=1),
                  start_of(booking) - timedelta(hours=2), start_of(booking)):
        send.run_once(now=later)

    assert not {key(booking, "before_24h"), key(booking, "before_2h")} & set(sinks.keys())
    for kind in ("before_24h", "before_2h"):
        assert (row(api, booking, kind)["status"], row(api, booking, kind)["reason"]) == (
            "cancelled", "booking_cancelled")


def test_reschedule_sends_nothing_at_the_old_time_and_one_at_the_new(app, api, clinic, sinks):
    booking = book(clinic, patient(clinic))
    old_due = due(api, booking, "before_24h")
    moved = api.post(f"/api/v1/bookings/{booking['id']}/reschedule",
                     json={"start": clinic.at(14, day=clinic.day + timedelta(days=1))
                           .isoformat(), "patient_state": "AZ"},
                     headers={"If-Match": '"v1"'})
    assert moved.status_code == 200, moved.get_json()
    new_due = due(api, booking, "before_24h", version=2)
    assert new_due == old_due + timedelta(days=1)
    send = dispatcher(app, live_settings(sinks))

    send.run_once(now=old_due + timedelta(seconds=1))
    assert key(booking, "before_24h") not in sinks.keys()
    send.run_once(now=new_due + timedelta(seconds=1))
    send.run_once(now=new_due + timedelta(minutes=5))

    counted = Counter(sinks.keys())
    assert counted[key(booking, "before_24h", 2)] == 1
    assert counted[key(booking, "before_24h", 1)] == 0
    assert row(api, booking, "before_24h", 1)["reason"] == "rescheduled"


def test_downtime_overdue_reminders_go_out_on_restart_unless_the_visit_passed(app, api, clinic,
                                                                             sinks):
    upcoming = book(clinic, patient(clinic), 14)
    passed = book(clinic, patient(clinic), 13)
    # The dispatcher was down from before the 72 h reminders until an hour after the 2 h
    # reminder of the 14:00 visit was due, which is when the 13:00 visit starts.
    restart = due(api, upcoming, "before_2h") + timedelta(hours=1)
    assert restart == start_of(passed)

    dispatcher(app, live_settings(sinks)).run_once(now=restart)

    keys = Counter(sinks.keys())
    assert keys[key(upcoming, "before_2h")] == 1
    assert not [k for k in keys if k.startswith(passed["id"]) and ".before_" in k]
    assert row(api, passed, "before_2h")["reason"] == "visit_passed"
    assert row(api, upcoming, "before_24h")["reason"] == "superseded"


def test_opt_out_stops_the_next_sms(app, api, clinic, sinks):
    who = patient(clinic)  # SMS and email consent
    booking = book(clinic, who)
    send = dispatcher(app, live_settings(sinks))
    send.run_once(now=due(api, booking, "before_72h") + timedelta(seconds=1))
    assert key(booking, "before_72h") in sinks.sms.keys()

    reply = api.post("/api/v1/inbound/sms", data={"From": who["phone"], "Body": " Stop "},
                     role="integration")
    assert reply.status_code == 200 and reply.get_json()["action"] == "opt_out"
    send.run_once(now=due(api, booking, "before_24h") + timedelta(seconds=1))

    assert key(booking, "before_24h") not in sinks.sms.keys()
    assert key(booking, "before_24h") in sinks.mail.keys()  # email consent still holds


def test_opt_out_without_email_consent_skips_with_a_reason(app, api, clinic, sinks):
    who = patient(clinic, mail=False)
    booking = book(clinic, who)
    api.post("/api/v1/inbound/sms", data={"From": who["phone"], "Body": "UNSUBSCRIBE"},
             role="integration")
    dispatcher(app, live_settings(sinks)).run_once(
        now=due(api, booking, "before_72h") + timedelta(seconds=1))
    assert sinks.keys() == []
    assert row(api, booking, "before_72h")["reason"] == "no_consented_contact"


def test_quiet_hours_defer_at_send_time_in_the_navajo_patients_zone(app, api, clinic, sinks):
    booking = book(clinic, patient(clinic, timezone="America/Denver"))
    day_before = clinic.day - timedelta(days=1)
    night = local_to_utc(day_before, wall_time(22, 0), "America/Denver")
    morning = local_to_utc(clinic.day, wall_time(8, 0), "America/Denver")
    send = dispatcher(app, live_settings(sinks, quiet_hours_start=wall_time(21, 0),
                                         quiet_hours_end=wall_time(8, 0)))

    send.run_once(now=night)  # the 24 h reminder is overdue, but it is 22:00 for the patient
    deferred = row(api, booking, "before_24h")
    assert (deferred["status"], deferred["reason"]) == ("planned", "deferred_quiet_hours")
    assert datetime.fromisoformat(deferred["due_at"]) == morning
    assert deferred["attempts"] == 0
    send.run_once(now=morning - timedelta(minutes=1))
    assert key(booking, "before_24h") not in sinks.keys()
    send.run_once(now=morning)
    assert Counter(sinks.keys())[key(booking, "before_24h")] == 1


def test_failures_retry_with_exponential_backoff_then_fail(app, api, clinic, sinks):
    set_plan(api, clinic, "consultation", CONFIRMATION_ONLY)
    booking = book(clinic, patient(clinic))
    sinks.sms.statuses = [503, 503, 503]
    send = dispatcher(app, live_settings(sinks))
    t0 = utcnow() + timedelta(seconds=1)

    send.run_once(now=t0)
    first = row(api, booking, "confirmation")
    assert (first["status"], first["attempts"], first["reason"]) == ("planned", 1,
                                                                     "sms_http_503")
    assert datetime.fromisoformat(first["next_attempt_at"]) == t0 + timedelta(seconds=60)
    send.run_once(now=t0 + timedelta(seconds=59))
    assert len(sinks.sms.requests) == 1
    send.run_once(now=t0 + timedelta(seconds=60))
    second = row(api, booking, "confirmation")
    assert datetime.fromisoformat(second["next_attempt_at"]) == t0 + timedelta(seconds=180)
    send.run_once(now=t0 + timedelta(seconds=180))
    failed = row(api, booking, "confirmation")
    assert (failed["status"], failed["attempts"], failed["reason"]) == ("failed", 3,
                                                                        "sms_http_503")
    assert sinks.sms.keys() == [key(booking, "confirmation")] * 3

    retried = api.post(f"/api/v1/reminders/{failed['id']}/retry")
    assert retried.status_code == 200 and retried.get_json()["status"] == "planned"
    send.run_once(now=t0 + timedelta(seconds=181))
    assert row(api, booking, "confirmation")["status"] == "sent"


def test_a_refusal_from_the_gateway_fails_at_once(app, api, clinic, sinks):
    set_plan(api, clinic, "consultation", CONFIRMATION_ONLY)
    booking = book(clinic, patient(clinic))
    sinks.sms.statuses = [400]
    dispatcher(app, live_settings(sinks)).run_once(now=utcnow() + timedelta(seconds=1))
    failed = row(api, booking, "confirmation")
    assert (failed["status"], failed["attempts"], failed["reason"]) == ("failed", 1,
                                                                        "sms_http_400")


def test_an_unreachable_smtp_server_is_retried(app, api, clinic, sinks):
    set_plan(api, clinic, "consultation", CONFIRMATION_ONLY)
    booking = book(clinic, patient(clinic, sms=False))
    settings = live_settings(sinks, smtp_port=free_port())  # nothing listens there
    dispatcher(app, settings).run_once(now=utcnow() + timedelta(seconds=1))
    retried = row(api, booking, "confirmation")
    assert (retried["status"], retried["reason"]) == ("planned",
                                                      "smtp_ConnectionRefusedError")


def test_a_message_failing_the_content_check_is_never_sent(app, api, clinic, sinks):
    set_plan(api, clinic, "consultation", CONFIRMATION_ONLY)
    booking = book(clinic, patient(clinic, first_name="Iv"))  # a real first name
    dispatcher(app, live_settings(sinks)).run_once(now=utcnow() + timedelta(seconds=1))
    assert sinks.keys() == []
    assert row(api, booking, "confirmation")["reason"] == "content_refused"


def test_a_row_stuck_in_sending_is_claimed_again_after_its_lease(app, api, clinic, sinks):
    set_plan(api, clinic, "consultation", CONFIRMATION_ONLY)
    booking = book(clinic, patient(clinic))
    send = dispatcher(app, live_settings(sinks))  # lease: 2 s
    t0 = utcnow() + timedelta(seconds=1)
    claimed = send.claim(t0, limit=10)  # ... and the process dies before sending
    assert len(claimed.ids) == 1
    assert row(api, booking, "confirmation")["status"] == "sending"

    send.run_once(now=t0 + timedelta(seconds=1))
    assert sinks.keys() == []
    send.run_once(now=t0 + timedelta(seconds=2))
    assert sinks.keys() == [key(booking, "confirmation")]
    sent = row(api, booking, "confirmation")
    assert (sent["status"], sent["attempts"]) == ("sent", 2)


def add_due_rows(app, bookings: list[dict[str, Any]], per_booking: int,
                 due_at: datetime) -> set[str]:
    """Extra due reminders (plan versions 100+) straight into the outbox."""
    keys: set[str] = set()
    with app.app_context():
        uow = unit_of_work()
        with uow:
            for booking in bookings:
                booking_id = uuid.UUID(booking["id"])
                for version in range(100, 100 + per_booking):
                    reminder = Reminder(
                        booking_id=booking_id, kind="confirmation", plan_version=version,
                        dedupe_key=dedupe_key(booking_id, "confirmation", version),
                        status=ReminderStatus.PLANNED, due_at=due_at, next_attempt_at=due_at,
                        attempts=0)
                    uow.session.add(reminder)
                    keys.add(reminder.dedupe_key)
            uow.commit()
    return keys


def statuses(app) -> Counter[str]:
    with app.app_context():
        uow = unit_of_work()
        with uow:
            return Counter(r.status.value for r in uow.session.scalars(select(Reminder)))


def test_two_dispatchers_in_threads_never_send_the_same_reminder_twice(app, api, clinic,
                                                                      sinks):
    set_plan(api, clinic, "consultation", {**CONFIRMATION_ONLY, "confirmation": False})
    bookings = [book(clinic, patient(clinic), hour) for hour in (13, 14, 15)]
    now = utcnow()
    expected = add_due_rows(app, bookings, 40, now)
    sinks.sms.delay = 0.001
    settings = live_settings(sinks, reminder_batch_size=7)
    workers = [dispatcher(app, settings) for _ in range(2)]
    barrier = threading.Barrier(2)

    def drain(worker: OutboxRunner) -> None:
        barrier.wait()
        worker.run_once(now=now + timedelta(seconds=1))

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(sinks.sms.keys()) == sorted(expected)  # each once, none missing
    assert statuses(app) == Counter({"sent": len(expected)})


def test_every_claim_and_guard_reuses_the_outboxs_built_reads(app, api, clinic, sinks):
    # The reads are built once (their cache keys kept), not again at each claim and guard.
    set_plan(api, clinic, "consultation", {**CONFIRMATION_ONLY, "confirmation": False})
    bookings = [book(clinic, patient(clinic), hour) for hour in (13, 14, 15)]
    now = utcnow()
    expected = add_due_rows(app, bookings, 4, now)
    executed: list[Any] = []
    engine = app.extensions["clinic.database"].writer
    listener = lambda _conn, statement, *_: executed.append(statement)  # noqa: E731
    event.listen(engine, "before_execute", listener)
    try:
        dispatcher(app, live_settings(sinks, reminder_batch_size=3)).run_once(
            now=now + timedelta(seconds=1))
    finally:
        event.remove(engine, "before_execute", listener)

    assert sorted(sinks.sms.keys()) == sorted(expected)
    locking = [s for s in executed if getattr(s, "_for_update_arg", None) is not None
               and s._for_update_arg.read]  # the guards' FOR SHARE reads
    assert len(locking) >= 2 * 4  # a guard per claim of 3, at least, locks twice
    assert len({id(s) for s in locking}) == 2  # the bookings' read and the patients'


# The scheduler process ----------------------------------------------------------------------


def test_scheduler_jobs_never_overlap_and_never_drop_a_late_run(app):
    outbox = OutboxScheduler(Settings.from_env({}), database=app.extensions["clinic.database"])
    jobs = {job.id: job for job in outbox.scheduler.get_jobs()}
    assert set(jobs) == {"reminders", "webhooks", "idempotency-purge", "history-purge",
                         "license-recheck", "alert-notices", "waitlist", "calendar-sync",
                         "calendar-writes"}
    for job in jobs.values():
        assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, None)
    assert jobs["reminders"].trigger.interval == timedelta(seconds=15)
    assert jobs["alert-notices"].trigger.interval == timedelta(seconds=5)
    assert jobs["idempotency-purge"].trigger.interval == timedelta(hours=1)
    assert jobs["license-recheck"].trigger.interval == timedelta(days=1)
    assert jobs["waitlist"].trigger.interval == timedelta(seconds=5)


def process_env(database_url: str, sinks: Sinks, **extra: str) -> dict[str, str]:
    return {**os.environ, **sinks.env(), **NO_QUIET, "DATABASE_URL": database_url,
            "PYTHONPATH": str(ROOT), "REMINDER_POLL_SECONDS": "0.2",
            "REMINDER_LEASE_SECONDS": "2", **extra}


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def stop(process: subprocess.Popen, timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def test_the_scheduler_process_sends_and_stops_on_sigterm(app, api, clinic, sinks,
                                                          database_url, tmp_path):
    set_plan(api, clinic, "consultation", CONFIRMATION_ONLY)
    who = patient(clinic, first_name="Marisol")
    booking = book(clinic, who)
    log_file = tmp_path / "scheduler.log"
    with log_file.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "service.scheduler"], cwd=ROOT,
                                   env=process_env(database_url, sinks), stdout=output,
                                   stderr=subprocess.STDOUT)
        try:
            assert wait_for(lambda: key(booking, "confirmation") in sinks.sms.keys())
        finally:
            returncode = stop(process)
    logged = log_file.read_text()
    assert returncode == 0, logged
    assert "scheduler stopped" in logged
    assert row(api, booking, "confirmation")["status"] == "sent"
    for secret in ("Marisol", who["phone"], who["email"]):
        assert secret not in logged


# Several processes (PostgreSQL) --------------------------------------------------------------


def require_postgresql(app) -> None:
    if app.extensions["clinic.database"].dialect != "postgresql":
        pytest.skip("multi-process claims are tested on PostgreSQL (FOR UPDATE SKIP LOCKED); "
                    "on SQLite every writer is serialized by BEGIN IMMEDIATE, covered by the "
                    "in-process tests")


def dispatch_process(database_url: str, sinks: Sinks, log_path: Path, **extra: str):
    output = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.scheduler"], cwd=ROOT,
        env=process_env(database_url, sinks, **{"REMINDER_POLL_SECONDS": "0.1", **extra}),
        stdout=output, stderr=subprocess.STDOUT)
    output.close()
    return process


def test_two_dispatcher_processes_never_send_the_same_reminder_twice(app, api, clinic, sinks,
                                                                    database_url, tmp_path):
    require_postgresql(app)
    set_plan(api, clinic, "consultation", {**CONFIRMATION_ONLY, "confirmation": False})
    bookings = [book(clinic, patient(clinic), hour) for hour in (13, 14, 15)]
    sinks.sms.delay = 0.003
    logs = [tmp_path / f"dispatcher{n}.log" for n in (1, 2)]
    processes = [dispatch_process(database_url, sinks, path, REMINDER_BATCH_SIZE="10")
                 for path in logs]
    try:
        assert wait_for(lambda: all("polling" in path.read_text() for path in logs))
        expected = add_due_rows(app, bookings, 100, utcnow())  # both race from here
        assert wait_for(lambda: len(sinks.sms.keys()) >= len(expected), timeout=60)
        time.sleep(0.5)  # a duplicate would arrive now
    finally:
        for process in processes:
            stop(process)
    assert sorted(sinks.sms.keys()) == sorted(expected)
    assert statuses(app) == Counter({"sent": len(expected)})
    for path in logs:  # both processes took part
        assert "reminders dispatched" in path.read_text(), path.read_text()


def test_a_dispatcher_killed_after_claiming_resends_after_the_lease_with_the_same_key(
        app, api, clinic, sinks, database_url, tmp_path):
    require_postgresql(app)
    set_plan(api, clinic, "consultation", CONFIRMATION_ONLY)
    booking = book(clinic, patient(clinic))
    victim = dispatch_process(database_url, sinks, tmp_path / "victim.log")

    def kill_the_sender(_request: dict[str, Any]) -> bool:
        # The message reached the gateway; the sender dies before it can mark it sent.
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        sinks.sms.on_request = None
        return False

    sinks.sms.on_request = kill_the_sender
    try:
        assert wait_for(lambda: victim.poll() is not None)
        assert victim.returncode == -signal.SIGKILL
        assert row(api, booking, "confirmation")["status"] == "sending"
        killed_at = time.time()
        successor = dispatch_process(database_url, sinks, tmp_path / "successor.log")
        try:
            assert wait_for(lambda: len(sinks.sms.requests) >= 2)
            time.sleep(0.3)
        finally:
            stop(successor)
    finally:
        if victim.poll() is None:
            victim.kill()
    first, second = sinks.sms.requests
    assert first["key"] == second["key"] == key(booking, "confirmation")
    lease_until = first["at"] + 2
    assert second["at"] >= lease_until - 0.5 and second["at"] >= killed_at
    sent = row(api, booking, "confirmation")
    assert (sent["status"], sent["attempts"]) == ("sent", 2)
    assert len(sinks.sms.requests) == 2


def test_a_scheduler_killed_mid_batch_sends_again_only_the_message_in_flight(
        app, api, clinic, sinks, database_url, tmp_path):
    require_postgresql(app)
    set_plan(api, clinic, "consultation", {**CONFIRMATION_ONLY, "confirmation": False})
    bookings = [book(clinic, patient(clinic), hour) for hour in (13, 14, 15)]
    expected = add_due_rows(app, bookings, 10, utcnow())  # 30 due: one batch
    answered: list[str] = []
    # One send at a time (the pooled variant, several in flight, is the next test).
    victim = dispatch_process(database_url, sinks, tmp_path / "victim.log",
                              REMINDER_SEND_CONCURRENCY="1")

    def kill_on_the_eleventh(request: dict[str, Any]) -> bool:
        if len(answered) < 10:
            answered.append(request["key"])
            return True
        # The eleventh message reached the gateway; its sender dies before the answer.
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        sinks.sms.on_request = None
        return False

    sinks.sms.on_request = kill_on_the_eleventh
    try:
        assert wait_for(lambda: victim.poll() is not None)
        assert victim.returncode == -signal.SIGKILL
        # Each answered message was recorded at once, not at the end of the batch.
        assert statuses(app)["sent"] == 10
        in_flight = sinks.sms.keys()[10]
        successor = dispatch_process(database_url, sinks, tmp_path / "successor.log")
        try:
            assert wait_for(lambda: set(sinks.sms.keys()) >= expected, timeout=60)
            time.sleep(0.5)  # a duplicate would arrive now
        finally:
            stop(successor)
    finally:
        if victim.poll() is None:
            victim.kill()
    counted = Counter(sinks.sms.keys())
    assert set(counted) == expected
    assert [k for k, n in counted.items() if n > 1] == [in_flight]
    assert statuses(app) == Counter({"sent": len(expected)})


def test_a_pooled_scheduler_killed_mid_batch_sends_again_only_the_messages_in_flight(
        app, api, clinic, sinks, database_url, tmp_path):
    """Several sends in flight (REMINDER_SEND_CONCURRENCY=4): a kill re-sends, after the lease
    and under the same keys, only messages whose outcome was not recorded yet: at most one
    guard's chunk (4 x the pool), never one that was recorded."""
    require_postgresql(app)
    set_plan(api, clinic, "consultation", {**CONFIRMATION_ONLY, "confirmation": False})
    bookings = [book(clinic, patient(clinic), hour) for hour in (13, 14, 15)]
    expected = add_due_rows(app, bookings, 20, utcnow())  # 60 due: one batch
    answered: list[str] = []
    unanswered: list[str] = []
    lock = threading.Lock()
    victim = dispatch_process(database_url, sinks, tmp_path / "victim.log",
                              REMINDER_SEND_CONCURRENCY="4")

    def kill_after_twenty(request: dict[str, Any]) -> bool:
        with lock:
            if len(answered) < 20 and not unanswered:
                answered.append(request["key"])
                return True
            unanswered.append(request["key"])
            if victim.poll() is None:
                victim.send_signal(signal.SIGKILL)
                victim.wait()
            return False

    sinks.sms.delay = 0.01
    sinks.sms.on_request = kill_after_twenty
    try:
        assert wait_for(lambda: victim.poll() is not None)
        assert victim.returncode == -signal.SIGKILL
        time.sleep(0.3)  # the other sends in flight reach the gateway, unanswered
        recorded = sent_keys(app)
        # The answers that reached the victim were recorded as they came (at most one
        # guard's chunk of them was still in flight or unrecorded when it died).
        assert len(answered) - 16 <= len(recorded) <= len(answered)
        sinks.sms.on_request = None
        successor = dispatch_process(database_url, sinks, tmp_path / "successor.log")
        try:
            assert wait_for(lambda: set(sinks.sms.keys()) >= expected, timeout=60)
            time.sleep(0.5)  # a duplicate would arrive now
        finally:
            stop(successor)
    finally:
        if victim.poll() is None:
            victim.kill()
    counted = Counter(sinks.sms.keys())
    assert set(counted) == expected
    again = {k for k, n in counted.items() if n > 1}
    assert set(unanswered) <= again and 1 <= len(again) <= 16
    assert not again & recorded  # what was recorded is never sent again
    assert statuses(app) == Counter({"sent": len(expected)})


def test_pooled_guards_in_flight_never_hold_the_same_booking_or_patient(app, api, clinic,
                                                                         sinks):
    """Pooled sends keep two guards open (the next chunk is checked while the pool sends the
    last): never over the same booking or patient, so a cancellation waits for one guard;
    every reminder still goes out once."""
    require_postgresql(app)
    set_plan(api, clinic, "consultation", {**CONFIRMATION_ONLY, "confirmation": False})
    bookings = [book(clinic, patient(clinic), hour, day_offset=day)
                for day in range(4) for hour in (13, 14, 15, 16)]
    now = utcnow()
    expected = add_due_rows(app, bookings, 3, now)  # 48 due, each booking's in 3 rows
    sinks.sms.delay = 0.01
    send = dispatcher(app, live_settings(sinks, reminder_batch_size=20,
                                         reminder_send_concurrency=4))
    guard = send._guard
    held: list[set[Any]] = []
    overlaps: list[int] = []

    @contextlib.contextmanager
    def watched(sessions, items):  # type: ignore[no-untyped-def]
        keys = {key for item in items for key in send.outbox.guard_keys(item)}
        assert not any(keys & other for other in held)  # no row in two guards at once
        held.append(keys)
        overlaps.append(len(held))
        try:
            with guard(sessions, items) as opened:
                yield opened
        finally:
            held.remove(keys)

    send._guard = watched  # type: ignore[method-assign]
    report = send.run_once(now=now + timedelta(seconds=1))

    assert report.sent == len(expected)
    assert sorted(sinks.sms.keys()) == sorted(expected)
    assert max(overlaps) == 2  # the pool was fed by two guards at once
    assert statuses(app) == Counter({"sent": len(expected)})


def sent_keys(app) -> set[str]:
    with app.app_context():
        uow = unit_of_work()
        with uow:
            return set(uow.session.scalars(select(Reminder.dedupe_key).where(
                Reminder.status == ReminderStatus.SENT)))


def test_an_error_mid_batch_gives_the_unsent_rows_back_at_once(app, api, clinic, sinks):
    """A batch stopped by an error (a lock or statement timeout, a lost connection) does not
    leave its other claimed rows waiting for the lease: they go out on the next run."""
    set_plan(api, clinic, "consultation", {**CONFIRMATION_ONLY, "confirmation": False})
    bookings = [book(clinic, patient(clinic), hour) for hour in (13, 14)]
    now = utcnow()
    expected = add_due_rows(app, bookings, 5, now)
    send = dispatcher(app, live_settings(sinks, reminder_lease_seconds=3600))
    prepare = send.outbox.prepare
    calls: list[int] = []

    def failing_on_the_fourth(item, guarded, *, at):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("lock timeout")
        return prepare(item, guarded, at=at)

    send.outbox.prepare = failing_on_the_fourth  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        send.run_once(now=now + timedelta(seconds=1))
    assert len(sinks.sms.keys()) == 3
    counts = statuses(app)
    # The failed one keeps its lease (its send might have begun); the rest are free now.
    assert counts["sent"] == 3 and counts["sending"] == 1 and counts["planned"] == 6
    send.outbox.prepare = prepare  # type: ignore[method-assign]
    send.run_once(now=now + timedelta(seconds=2))  # long before the hour-long lease ends
    assert len(sinks.sms.keys()) == 9 and set(sinks.sms.keys()) < expected
