"""A database that stops, then one that hangs: how fast the service answers 503, and recovers.

A PostgreSQL server of its own (``tests/pgcluster.py``: initdb in a temporary directory, a
free port; never the machine's shared server), migrated and seeded, behind a real gunicorn
(the project's gunicorn.conf.py, 4 sync workers, so the probes below need not queue). While
clients keep calling the API (a patient list, a provider list, a booking POST, a FHIR read)
and two probes poll ``/readyz`` and ``/healthz``, the database is

- stopped: ``pg_ctl stop -m immediate`` (a crash, as far as PostgreSQL knows), then started;
- paused: SIGSTOP on the postmaster and every backend (sockets open, nothing answers), then
  SIGCONT.

Printed per fault: seconds from the fault to the first 503, the slowest answer to an API
request and to ``/readyz`` while the database was away (the bounds: 10 s and about 2 s),
seconds from the database's return to the first success and to the last 503, the statuses
seen, the log lines (one per failed request, no traceback), and whether the booking
acknowledged (201) before the fault is still there.

``python -m bench.faults [--fault stopped|paused] [--seconds N]``
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import time as wall_clock

from bench import harness
from bench.clinic import EVERY_DAY, Clinic, issue_key, seed_clinic
from service import migrate
from service.db import Database
from tests.pgcluster import Cluster, temporary_cluster

FAULTS = ("stopped", "paused")
FAULT_SECONDS = 15.0  # how long the database stays away
AFTER_SECONDS = 8.0  # how long the clients go on once it is back
API_CLIENTS = 2
WORKERS = 4
SLOT_MINUTES = 10 * 60


def video_hours(provider_index: int):  # type: ignore[no-untyped-def]
    for weekday in EVERY_DAY:
        yield "virtual", weekday, wall_clock(8), wall_clock(17)


@dataclass(frozen=True)
class Call:
    name: str
    sent: float  # monotonic seconds
    answered: float
    status: int
    code: str | None

    @property
    def seconds(self) -> float:
        return self.answered - self.sent


@dataclass
class Recorder:
    """A loop of requests from one thread, each call recorded with its timing."""

    port: int
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def loop(self, requests: list[harness.Request], pause: float = 0.0) -> None:
        index = 0
        while not self.stop.is_set():
            request = requests[index % len(requests)]
            index += 1
            sent = time.monotonic()
            status, data, _ = harness.call(self.port, request.method, request.path,
                                           headers=request.headers, body=request.body,
                                           timeout=40)
            answered = time.monotonic()
            with self.lock:
                self.calls.append(Call(request.path if request.method == "GET" else
                                       f"{request.method} {request.path}", sent, answered,
                                       status, _code(data)))
            if pause:
                self.stop.wait(pause)


def _code(data: bytes) -> str | None:
    marker = b'"code": "'
    start = data.find(marker)
    if start < 0:
        return None
    start += len(marker)
    return data[start:data.find(b'"', start)].decode(errors="replace")


@dataclass
class Outcome:
    fault: str
    fault_to_first_503: float
    slowest_api_503: float
    slowest_readyz: float
    first_readyz_503: float
    back_to_first_success: float
    back_to_last_503: float
    statuses: Counter[int]
    healthz_failures: int
    unavailable_lines: int
    tracebacks: int
    answers_503: int
    booking_kept: bool
    other_5xx: list[str]

    def row(self) -> list[object]:
        return [self.fault, f"{self.fault_to_first_503:.2f}", f"{self.slowest_api_503:.2f}",
                f"{self.first_readyz_503:.2f}", f"{self.slowest_readyz:.2f}",
                f"{self.back_to_first_success:.2f}", f"{self.back_to_last_503:.2f}",
                self.healthz_failures, f"{self.unavailable_lines}/{self.answers_503}",
                self.tracebacks, "yes" if self.booking_kept else "NO"]


def _requests(clinic: Clinic, authorization: str, booking_id: str) -> list[harness.Request]:
    """The API calls the clients repeat: reads, a key check, a write, FHIR."""
    auth = {"Authorization": authorization}
    start = clinic.local_iso(clinic.at(clinic.first_day, SLOT_MINUTES))
    body, headers = harness.json_body({
        "patient_id": str(clinic.patient_ids[1]), "provider_id": str(clinic.provider_ids[0]),
        "service_type_id": str(clinic.service_types["consultation"].id),
        "location_id": str(clinic.virtual_id), "start": start, "patient_state": "AZ"})
    return [
        harness.Request("GET", "/api/v1/patients?page_size=20", auth),
        harness.Request("GET", "/api/v1/providers", auth),
        # The acknowledged booking's slot for another patient: 409 when the database is up.
        harness.Request("POST", "/api/v1/bookings", {**auth, **headers}, body),
        harness.Request("GET", f"/fhir/R4/Appointment/{booking_id}", auth),
    ]


def run_one(fault: str, *, seconds: float = FAULT_SECONDS) -> Outcome:
    with temporary_cluster() as cluster:
        url = cluster.url()
        migrate.upgrade(url)
        database = Database.connect(url)
        try:
            clinic = seed_clinic(database, providers=1, patients=4, chairs=0,
                                 hours=video_hours)
            authorization = f"Bearer {issue_key(database)}"
        finally:
            database.dispose()
        with harness.gunicorn("service.wsgi:app", env={"DATABASE_URL": url},
                              name=f"faults-{fault}", workers=WORKERS) as server:
            return _exercise(fault, cluster, server, clinic, authorization, seconds)


def _book(server: harness.Server, clinic: Clinic, authorization: str) -> str:
    start = clinic.local_iso(clinic.at(clinic.first_day, SLOT_MINUTES))
    body, headers = harness.json_body({
        "patient_id": str(clinic.patient_ids[0]), "provider_id": str(clinic.provider_ids[0]),
        "service_type_id": str(clinic.service_types["consultation"].id),
        "location_id": str(clinic.virtual_id), "start": start, "patient_state": "AZ"})
    headers.update({"Authorization": authorization, "Idempotency-Key": uuid.uuid4().hex})
    status, data, _ = harness.call(server.port, "POST", "/api/v1/bookings", headers=headers,
                                   body=body)
    if status != 201:
        raise RuntimeError(f"the booking before the fault was not acknowledged: {status} "
                           f"{data[:300]!r}")
    return json.loads(data)["id"]


def _exercise(fault: str, cluster: Cluster, server: harness.Server, clinic: Clinic,
              authorization: str, seconds: float) -> Outcome:
    booking_id = _book(server, clinic, authorization)
    requests = _requests(clinic, authorization, booking_id)
    api, readyz, healthz = Recorder(port=server.port), Recorder(port=server.port), \
        Recorder(port=server.port)
    loops: list[tuple[Recorder, Callable[[], None]]] = [
        *[(api, lambda: api.loop(requests)) for _ in range(API_CLIENTS)],
        (readyz, lambda: readyz.loop([harness.Request("GET", "/readyz")], pause=0.2)),
        (healthz, lambda: healthz.loop([harness.Request("GET", "/healthz")], pause=0.2)),
    ]
    threads = [threading.Thread(target=target, daemon=True) for _, target in loops]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # warm: every worker has pooled connections
    log_offset = server.log_path.stat().st_size

    faulted = time.monotonic()
    if fault == "stopped":
        cluster.stop("immediate")
    else:
        cluster.pause()
    time.sleep(seconds)
    if fault == "stopped":
        cluster.start()
    else:
        cluster.resume()
    back = time.monotonic()
    time.sleep(AFTER_SECONDS)
    for recorder, _ in loops:
        recorder.stop.set()
    for thread in threads:
        thread.join(timeout=60)

    status, _, _ = harness.call(server.port, "GET", f"/api/v1/bookings/{booking_id}",
                                headers={"Authorization": authorization})
    log = server.log_path.read_bytes()[log_offset:].decode(errors="replace")
    return _outcome(fault, api.calls, readyz.calls, healthz.calls, faulted, back, log,
                    booking_kept=status == 200)


def _outcome(fault: str, calls: list[Call], ready: list[Call], health: list[Call],
             faulted: float, back: float, log: str, *, booking_kept: bool) -> Outcome:
    during = [c for c in calls if c.answered > faulted and c.sent < back]
    unavailable = [c for c in during if c.status == 503]
    after = [c for c in calls if c.sent >= back]
    successes = [c for c in after if c.status < 500]
    ready_during = [c for c in ready if c.answered > faulted and c.sent < back]
    ready_503 = [c for c in ready_during if c.status == 503]
    other = [f"{c.name}: {c.status} {c.code}" for c in calls + ready
             if c.status >= 500 and c.status != 503 or c.status == 0]
    all_503 = [c for c in calls + ready if c.status == 503]
    last_503 = max((c.answered for c in all_503), default=back)
    return Outcome(
        fault=fault,
        fault_to_first_503=min((c.answered for c in unavailable), default=float("nan"))
        - faulted,
        # A request already waiting when the fault hit counts from the fault.
        slowest_api_503=max((c.answered - max(c.sent, faulted) for c in unavailable),
                            default=float("nan")),
        slowest_readyz=max((c.answered - max(c.sent, faulted) for c in ready_during),
                           default=float("nan")),
        first_readyz_503=min((c.answered for c in ready_503), default=float("nan")) - faulted,
        back_to_first_success=min((c.answered for c in successes), default=float("nan"))
        - back,
        back_to_last_503=max(0.0, last_503 - back),
        statuses=Counter(c.status for c in calls + ready),
        healthz_failures=sum(c.status != 200 for c in health),
        unavailable_lines=log.count("database unavailable"),
        tracebacks=log.count("Traceback"),
        answers_503=len(all_503),
        booking_kept=booking_kept,
        other_5xx=other[:5],
    )


@dataclass
class Results:
    outcomes: list[Outcome]
    seconds: float = FAULT_SECONDS

    def report(self) -> str:
        lines = [f"== Faults: PostgreSQL stopped / paused for {self.seconds:.0f} s under load "
                 f"({API_CLIENTS} API clients, /readyz and /healthz probes), gunicorn -w "
                 f"{WORKERS} -k sync; seconds ==",
                 harness.table(["fault", "to 1st 503", "slowest 503", "readyz 1st 503",
                                "slowest readyz", "back: 1st ok", "back: last 503",
                                "healthz !200", "log lines/503s", "tracebacks",
                                "booking kept"],
                               [o.row() for o in self.outcomes])]
        for outcome in self.outcomes:
            lines.append(f"  {outcome.fault} statuses: {harness.statuses_text(outcome.statuses)}")
            lines += [f"  {outcome.fault} unexpected: {text}" for text in outcome.other_5xx]
        return "\n".join(lines)

    def summarize(self) -> list[str]:
        return [f"faults {o.fault}: first 503 after {o.fault_to_first_503:.2f} s, slowest "
                f"{o.slowest_api_503:.2f} s (readyz {o.slowest_readyz:.2f} s); recovered "
                f"{o.back_to_first_success:.2f} s after the database was back; booking kept: "
                f"{'yes' if o.booking_kept else 'NO'}; other 5xx: {len(o.other_5xx)}"
                for o in self.outcomes]


def run(faults: tuple[str, ...] = FAULTS, *, seconds: float = FAULT_SECONDS) -> Results:
    return Results([run_one(fault, seconds=seconds) for fault in faults], seconds=seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fault", choices=FAULTS, action="append",
                        help="only this fault (repeatable; default: both)")
    parser.add_argument("--seconds", type=float, default=FAULT_SECONDS,
                        help=f"how long the database stays away (default {FAULT_SECONDS:.0f})")
    args = parser.parse_args(argv)
    harness.exit_on_sigterm()
    results = run(tuple(args.fault or FAULTS), seconds=args.seconds)
    print(results.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
