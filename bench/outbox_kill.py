"""``python -m bench.outbox_kill``: how many emails a SIGKILL sends twice or loses.

2,048 reminders are due at once, all by email, on PostgreSQL. Two ``python -m
service.scheduler`` processes (the production command, live channel) send them over SMTP to
a local sink (aiosmtpd) that keeps each message's ``Message-ID``. When the sink has received
a quarter of them, one scheduler is killed with SIGKILL (it is then in the middle of a
batch); the other one goes on, and once the lease of the killed one's claim has run out it
claims and sends those rows too. Printed: messages received, duplicates (one Message-ID
received more than once), lost (due reminders never received), and the final row statuses.

Target: 0 lost, at most one duplicate per killed process (the message in flight when it
died: accepted by the SMTP server, its outcome not yet recorded).

The lease is short (``--lease``, default 3 s: ``REMINDER_LEASE_SECONDS``) so the run ends in
seconds. Self-contained: its own scratch database and sink (see ``bench/reminders.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from bench.reminders import ROOT, _free_port, _make_due_now, _stop, scratch_database, seed
from service.db import make_engine
from service.domain.reminders.models import Reminder

COUNT = 2048
PROCESSES = 2
KILLS = 1
LEASE_SECONDS = 3.0
POLL_SECONDS = 0.5
TIMEOUT_SECONDS = 240.0
_MESSAGE_ID = re.compile(rb"^Message-ID: <([^>\r\n]+)>\r?$", re.MULTILINE | re.IGNORECASE)


class MailSink:
    """A real SMTP server (aiosmtpd) that counts the Message-IDs it accepts."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller  # a dev dependency

        self.received: list[str] = []
        self.lock = threading.Lock()
        self.port = _free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802, ANN001
        found = _MESSAGE_ID.search(envelope.content)
        with self.lock:
            self.received.append(found.group(1).decode() if found else "?")
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def ids(self) -> Counter[str]:
        with self.lock:
            return Counter(self.received)

    def __enter__(self) -> MailSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@dataclass
class Result:
    count: int
    processes: int
    kills: int
    lease: float
    received: int = 0
    unique: int = 0
    duplicates: int = 0
    lost: int = 0
    killed_at: list[int] = field(default_factory=list)  # messages received at each kill
    wall: float = float("nan")
    statuses: Counter[str] = field(default_factory=Counter)

    def met(self) -> bool:
        return self.lost == 0 and self.duplicates <= self.kills

    def report(self) -> str:
        return "\n".join([
            f"== Outbox under SIGKILL: {self.count} reminders due at once, all by email, "
            f"PostgreSQL, {self.processes} scheduler processes (python -m service.scheduler, "
            f"live SMTP channel to a local aiosmtpd sink, lease {self.lease:g} s), "
            f"{self.kills} killed with SIGKILL mid-run ==",
            f"  killed after      {', '.join(map(str, self.killed_at))} messages received",
            f"  messages sent     {self.received}",
            f"  duplicates        {self.duplicates} (same Message-ID received twice; target "
            f"<= {self.kills}, one per killed process: {'met' if self.met() else 'MISSED'})",
            f"  lost              {self.lost} (due reminders never received; target 0)",
            f"  wall time         {self.wall:.1f} s (launch -> last message, the lease "
            "included)",
            f"  rows              {dict(self.statuses)}",
        ])

    def summarize(self) -> list[str]:
        return [f"outbox kill: {self.count} emails, {self.kills} SIGKILL, "
                f"{self.duplicates} duplicates, {self.lost} lost: "
                f"{'met' if self.met() else 'MISSED'}"]


def _launch(url: str, sink: MailSink, lease: float, poll: float,
            log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "REMINDER_CHANNEL": "live",
           "REMINDER_POLL_SECONDS": str(poll), "REMINDER_LEASE_SECONDS": str(lease),
           "CHANNEL_TIMEOUT_SECONDS": str(max(0.5, lease / 2)),
           "QUIET_HOURS_START": "00:00", "QUIET_HOURS_END": "00:00",
           "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port),
           "SMTP_FROM": "reminders@clinic.test", "PYTHONPATH": str(ROOT)}
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "service.scheduler"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def run(count: int = COUNT, processes: int = PROCESSES, kills: int = KILLS,
        lease: float = LEASE_SECONDS, poll: float = POLL_SECONDS) -> Result:
    if not 0 < kills < processes:
        raise ValueError("kill at least one scheduler and leave at least one running")
    result = Result(count=count, processes=processes, kills=kills, lease=lease)
    logs = Path(tempfile.mkdtemp(prefix="bench_outbox_kill_"))
    try:
        with scratch_database() as url, MailSink() as sink:
            seed(url, count, due_at=datetime.now(UTC) + timedelta(days=1), email_only=True)
            _make_due_now(url)
            launched = time.monotonic()
            workers = [_launch(url, sink, lease, poll, logs / f"scheduler{n}.log")
                       for n in range(processes)]
            try:
                deadline = time.monotonic() + TIMEOUT_SECONDS
                # Kill points spread over the first half of the run: mid-batch each time.
                kill_points = [count * (n + 1) // (2 * (kills + 1)) for n in range(kills)]
                victims = list(workers[:kills])
                while len(set(sink.ids())) < count and time.monotonic() < deadline:
                    if kill_points and sink.count() >= kill_points[0]:
                        kill_points.pop(0)
                        victim = victims.pop(0)
                        victim.send_signal(signal.SIGKILL)
                        result.killed_at.append(sink.count())
                        victim.wait()
                    alive = [w for w in workers[len(result.killed_at):] if w.poll() is None]
                    if len(alive) < processes - len(result.killed_at):
                        raise RuntimeError("a scheduler exited early:\n" + "\n".join(
                            p.read_text(errors="replace")[-2000:] for p in logs.iterdir()))
                    time.sleep(0.002)
                result.wall = time.monotonic() - launched
                time.sleep(max(2.0, lease + 2 * poll))  # a late duplicate would arrive now
            finally:
                for worker in workers:
                    _stop(worker)
            ids = sink.ids()
            result.received = sum(ids.values())
            result.unique = len(ids)
            result.duplicates = sum(n - 1 for n in ids.values())
            engine = make_engine(url)
            with engine.connect() as connection:
                rows = connection.execute(select(Reminder.status, Reminder.dedupe_key)).all()
            engine.dispose()
            result.statuses = Counter(row.status.value for row in rows)
            due = {row.dedupe_key for row in rows}
            received_keys = {message_id.rpartition("@")[0] for message_id in ids}
            result.lost = len(due - received_keys)
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--processes", type=int, default=PROCESSES)
    parser.add_argument("--kills", type=int, default=KILLS,
                        help="schedulers killed with SIGKILL, one after the other")
    parser.add_argument("--lease", type=float, default=LEASE_SECONDS,
                        help="REMINDER_LEASE_SECONDS for the schedulers")
    parser.add_argument("--poll", type=float, default=POLL_SECONDS,
                        help="REMINDER_POLL_SECONDS for the schedulers")
    parser.add_argument("--repeat", type=int, default=1, help="runs, one after the other")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    results = []
    for _ in range(max(1, args.repeat)):
        results.append(run(args.count, args.processes, args.kills, args.lease, args.poll))
        print(results[-1].report(), flush=True)
    if len(results) > 1:
        print(f"== {len(results)} runs: duplicates "
              f"{', '.join(str(r.duplicates) for r in results)}; lost "
              f"{', '.join(str(r.lost) for r in results)} ==")
    return 0 if all(r.met() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
