"""``python -m bench.reminders``: the reminder outbox under a backlog, on PostgreSQL.

10,000 reminders are due at once (half to patients with SMS consent, half email-only); two
``python -m service.scheduler`` processes (the production command, live channels) send them
to local sinks: a real SMTP server (aiosmtpd) and an HTTP server answering like a
Twilio-compatible gateway. Printed: wall time (schedulers launched -> last message
received), sends per second, duplicates (messages received more than once for one dedupe
key; must be 0), reminders missing, lateness p50 / p99 (sent_at - due_at, from the database;
the schedulers' start-up is included) and each process's share.

Targets: wall time under 10 s, p99 lateness within the poll interval + 2 s.

Self-contained: its own scratch database (created, migrated, dropped), its own sinks; no
dependency on the other benchmarks. ``run()`` returns a result with ``report()`` and
``summarize()`` for ``python -m bench``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text, update

from service import migrate
from service.db import make_engine
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.clinic.models import Location, LocationKind, ServiceType
from service.domain.patients.models import Patient
from service.domain.providers.licensing import Modality
from service.domain.providers.models import (
    Credential,
    License,
    LicenseKind,
    LicenseStatus,
    Provider,
)
from service.domain.reminders.models import Reminder, ReminderStatus, dedupe_key

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
COUNT = 10_000
PROCESSES = 2
POLL_SECONDS = 15.0  # the production default (REMINDER_POLL_SECONDS)
TARGET_WALL_SECONDS = 10.0
TARGET_SLOW_GATEWAY_SECONDS = 20.0  # with a gateway taking GATEWAY_DELAY per message
GATEWAY_DELAY = 0.040
LEASE_SECONDS = 120.0  # REMINDER_LEASE_SECONDS' default
TIMEOUT_SECONDS = 180.0
_REMINDER_KEY = re.compile(rb"^X-Reminder-Key: (\S+)\r?$", re.MULTILINE)


# Scratch database ------------------------------------------------------------------------


@contextmanager
def scratch_database() -> Iterator[str]:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bench_reminders_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
            migrate.upgrade(url)
            yield url
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _record(**values: object) -> dict[str, object]:
    now = datetime.now(UTC)
    return {"id": uuid.uuid4(), "created_at": now, "updated_at": now, "version": 1, **values}


def seed(url: str, count: int, due_at: datetime, *, email_only: bool = False) -> None:
    """One telehealth clinic, ``count`` patients and visits, one reminder each due at
    ``due_at`` (even patients by SMS, odd ones by email; ``email_only``: all by email)."""
    engine = make_engine(url)
    location = _record(name="Telehealth", kind=LocationKind.VIRTUAL, timezone="America/Phoenix",
                       chairs=0, rems_certified=False, active=True)
    service_type = _record(code="consultation", name="Consultation",
                           modality=Modality.TELEHEALTH, duration_minutes=15,
                           recovery_minutes=0, buffer_before_minutes=0, buffer_after_minutes=0,
                           min_notice_minutes=0, horizon_days=365, slot_interval_minutes=15,
                           late_cancel_hours=24, needs_chair=False, needs_clearance=False,
                           requires_rems=False, active=True,
                           reminder_plan={"confirmation": False, "hours_before": [24],
                                          "next_day_check_in": False})
    provider = _record(name="Dr. Bench", credential=Credential.MD, npi="1234567893",
                       timezone="America/Phoenix", is_prescriber=True,
                       is_rems_prescriber=False, active=True)
    # Licensed in Arizona over the visits' dates, as the booking rules require (without
    # it every visit fails the scheduler's license recheck and is flagged at start-up).
    license_ = _record(provider_id=provider["id"], jurisdiction="US-AZ",
                       kind=LicenseKind.LICENSE, board="Arizona Medical Board",
                       number="MD-BENCH-1", issued_on=date(2020, 1, 1),
                       expires_on=date(2099, 12, 31), status=LicenseStatus.ACTIVE)
    patients, bookings, reminders = [], [], []
    first_visit = due_at + timedelta(days=2)
    for n in range(count):
        by_sms = n % 2 == 0 and not email_only
        patient = _record(first_name=f"Pat{n % 97}", last_name="Bench",
                          birth_date=date(1980, 1, 1), email=f"p{n}@example.com",
                          phone=f"+1602{5550000 + n:07d}", timezone="America/Phoenix",
                          home_state="AZ", sms_consent=by_sms, email_consent=True,
                          rems_enrolled=False, cleared_for_treatment=False, active=True)
        starts_at = first_visit + timedelta(minutes=15 * n)
        ends_at = starts_at + timedelta(minutes=15)
        booking = _record(patient_id=patient["id"], provider_id=provider["id"],
                          service_type_id=service_type["id"], location_id=location["id"],
                          status=BookingStatus.BOOKED, starts_at=starts_at, ends_at=ends_at,
                          provider_starts_at=starts_at, provider_ends_at=ends_at,
                          hold_ends_at=ends_at, patient_state="AZ", ride_home_confirmed=False,
                          late_cancellation=False)
        patients.append(patient)
        bookings.append(booking)
        reminders.append({
            "id": uuid.uuid4(), "booking_id": booking["id"], "kind": "before_24h",
            "plan_version": 1, "dedupe_key": dedupe_key(booking["id"], "before_24h", 1),
            "status": ReminderStatus.PLANNED, "due_at": due_at, "next_attempt_at": due_at,
            "attempts": 0, "created_at": due_at, "updated_at": due_at})
    with engine.begin() as connection:
        connection.execute(insert(Location.__table__), [location])
        connection.execute(insert(ServiceType.__table__), [service_type])
        connection.execute(insert(Provider.__table__), [provider])
        connection.execute(insert(License.__table__), [license_])
        connection.execute(insert(Patient.__table__), patients)
        connection.execute(insert(Booking.__table__), bookings)
        connection.execute(insert(Reminder.__table__), reminders)
    engine.dispose()


# The channels' peers ---------------------------------------------------------------------


class Sinks:
    """A real SMTP server (aiosmtpd) and a Twilio-style HTTP endpoint, counting dedupe keys
    (the time each message arrived is kept too)."""

    def __init__(self, gateway_delay: float = 0.0) -> None:
        from aiosmtpd.controller import Controller  # a dev dependency

        self.received: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        self.smtp_port = _free_port()
        self.smtp = Controller(self, hostname="127.0.0.1", port=self.smtp_port)
        sinks = self

        class Gateway(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers["Content-Length"]))
                if gateway_delay:  # a gateway that takes this long per message
                    time.sleep(gateway_delay)
                sinks.add(self.headers["Idempotency-Key"])
                body = b'{"sid": "SMbench", "status": "queued"}'
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]
                self.flush_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
        self.http.daemon_threads = True
        self._http_thread = threading.Thread(target=self.http.serve_forever, args=(0.05,),
                                             daemon=True)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
        found = _REMINDER_KEY.search(envelope.content)
        self.add(found.group(1).decode() if found else "?")
        return "250 OK"

    def add(self, key: str) -> None:
        with self.lock:
            self.received.append((key, time.time()))

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def unique(self) -> int:
        with self.lock:
            return len({key for key, _ in self.received})

    @property
    def sms_url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/2010-04-01/Accounts/ACb/Messages.json"

    def __enter__(self) -> Sinks:
        # Both sinks share this process: hand the GIL over sooner than every 5 ms, or each
        # waits for the other and the sinks, not the dispatchers, set the pace.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        self.smtp.start()
        self._http_thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.smtp.stop()
        self.http.shutdown()
        self.http.server_close()
        sys.setswitchinterval(self._switch_interval)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The run ---------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Result:
    count: int
    processes: int
    poll: float
    gateway_delay: float = 0.0
    target_wall: float = TARGET_WALL_SECONDS
    wall: float = float("nan")
    drain: float = float("nan")
    received: int = 0
    unique: int = 0
    lateness: list[float] = field(default_factory=list)
    shares: list[int] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def duplicates(self) -> int:
        return self.received - self.unique

    @property
    def missing(self) -> int:
        return self.count - self.unique

    @property
    def rate(self) -> float:
        return self.unique / self.wall if self.wall else float("nan")

    def verdicts(self) -> tuple[bool, bool]:
        p99 = percentile(self.lateness, 99)
        return self.wall < self.target_wall, p99 <= self.poll + 2

    @property
    def a_lease_late(self) -> int:
        """Reminders sent a full lease (120 s) or more after they fell due, or never."""
        return sum(1 for late in self.lateness if late >= LEASE_SECONDS) + self.missing

    @property
    def _gateway_text(self) -> str:
        return f" taking {self.gateway_delay * 1000:.0f} ms a message" if self.gateway_delay else ""

    def report(self) -> str:
        wall_ok, late_ok = self.verdicts()
        p50, p99 = percentile(self.lateness, 50), percentile(self.lateness, 99)
        return "\n".join([
            f"== Reminders: {self.count} due at once, PostgreSQL, {self.processes} scheduler "
            f"processes (python -m service.scheduler, poll {self.poll:g} s), live channels to "
            "local sinks (aiosmtpd SMTP, HTTP gateway"
            f"{self._gateway_text}"
            "), half SMS, half email ==",
            f"  wall time         {self.wall:.2f} s (launch -> last message; target < "
            f"{self.target_wall:g} s: {'met' if wall_ok else 'MISSED'})",
            f"  first -> last     {self.drain:.2f} s",
            f"  sends per second  {self.rate:.0f}",
            f"  duplicates        {self.duplicates} (must be 0)",
            f"  missing           {self.missing}",
            f"  lateness p50/p99  {p50:.2f} s / {p99:.2f} s (target p99 <= poll + 2 s = "
            f"{self.poll + 2:g} s: {'met' if late_ok else 'MISSED'})",
            f"  a lease late      {self.a_lease_late} (sent >= {LEASE_SECONDS:g} s late, or "
            "never; must be 0)",
            f"  per process       {' / '.join(str(n) for n in self.shares)} sent",
            f"  rows              {dict(self.statuses)}",
        ])

    def summarize(self) -> list[str]:
        wall_ok, late_ok = self.verdicts()
        gateway = f", gateway {self.gateway_delay * 1000:.0f} ms" if self.gateway_delay else ""
        return [f"reminders {self.count}{gateway} in {self.wall:.2f} s ({self.rate:.0f}/s; "
                f"target < {self.target_wall:g} s), {self.duplicates} duplicates, "
                f"{self.a_lease_late} a lease late, p99 lateness "
                f"{percentile(self.lateness, 99):.2f} s: "
                f"{'met' if wall_ok and late_ok and not self.duplicates else 'MISSED'}"]


def _make_due_now(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(update(Reminder).values(due_at=datetime.now(UTC),
                                                   next_attempt_at=datetime.now(UTC)))
    engine.dispose()


def _launch(url: str, sinks: Sinks, poll: float, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "REMINDER_CHANNEL": "live",
           "REMINDER_POLL_SECONDS": str(poll), "QUIET_HOURS_START": "00:00",
           "QUIET_HOURS_END": "00:00", "SMTP_HOST": "127.0.0.1",
           "SMTP_PORT": str(sinks.smtp_port), "SMTP_FROM": "reminders@clinic.test",
           "SMS_GATEWAY_URL": sinks.sms_url, "SMS_ACCOUNT_SID": "ACbench",
           "SMS_AUTH_TOKEN": "bench", "SMS_FROM": "+16025550000",
           "PYTHONPATH": str(ROOT)}
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "service.scheduler"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _sent_by(log_path: Path) -> int:
    text_ = log_path.read_text(errors="replace")
    return sum(int(n) for n in re.findall(r"reminders dispatched: .*?\bsent (\d+)", text_))


def run(count: int = COUNT, processes: int = PROCESSES, poll: float = POLL_SECONDS,
        gateway_delay: float = 0.0) -> Result:
    result = Result(count=count, processes=processes, poll=poll, gateway_delay=gateway_delay,
                    target_wall=TARGET_SLOW_GATEWAY_SECONDS if gateway_delay
                    else TARGET_WALL_SECONDS)
    logs = Path(tempfile.mkdtemp(prefix="bench_reminders_"))
    try:
        with scratch_database() as url, Sinks(gateway_delay) as sinks:
            seed(url, count, due_at=datetime.now(UTC) + timedelta(days=1))
            _make_due_now(url)  # after seeding, so the lateness measures dispatch alone
            launched = time.time()
            workers = [_launch(url, sinks, poll, logs / f"scheduler{n}.log")
                       for n in range(processes)]
            try:
                deadline = time.monotonic() + TIMEOUT_SECONDS
                while sinks.unique() < count and time.monotonic() < deadline:
                    if any(w.poll() is not None for w in workers):
                        raise RuntimeError("a scheduler exited early:\n" + "\n".join(
                            p.read_text(errors="replace")[-2000:] for p in logs.iterdir()))
                    time.sleep(0.02)
                time.sleep(1.0)  # a duplicate would arrive now
            finally:
                for worker in workers:
                    _stop(worker)
            arrivals = sorted(at for _, at in sinks.received)
            result.received, result.unique = sinks.count(), sinks.unique()
            if arrivals:
                result.wall = arrivals[-1] - launched
                result.drain = arrivals[-1] - arrivals[0]
            result.shares = [_sent_by(logs / f"scheduler{n}.log") for n in range(processes)]
            engine = make_engine(url)
            with engine.connect() as connection:
                rows = connection.execute(select(Reminder.status, Reminder.due_at,
                                                 Reminder.sent_at)).all()
            engine.dispose()
            result.statuses = Counter(row.status.value for row in rows)
            result.lateness = [(row.sent_at - row.due_at).total_seconds() for row in rows
                               if row.sent_at is not None]
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--processes", type=int, default=PROCESSES)
    parser.add_argument("--poll", type=float, default=POLL_SECONDS,
                        help="REMINDER_POLL_SECONDS for the schedulers")
    parser.add_argument("--gateway-ms", type=float, default=0.0,
                        help="the SMS gateway takes this long per message (the table's 40 ms)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    result = run(args.count, args.processes, args.poll, args.gateway_ms / 1000)
    print(result.report(), flush=True)
    return 0 if result.duplicates == 0 and result.missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
