"""Booking writes on PostgreSQL against a bare Flask + SQLAlchemy INSERT, in the same run.

The service: POST /api/v1/bookings for distinct slots (20 providers x 5 slots a day x
7 days, one patient each, so nothing conflicts). The floor: bench/bare_app.py, POST /bare
with the same body, one INSERT into bench_bare. Then reads: GET /api/v1/bookings/{id} of
the bookings written against GET /bare/{id} (one SELECT by primary key) of the bare rows.
Both run under gunicorn with the same flags (2 sync workers) on the same database, and take
the same client load (threads, one connection per request) in alternating chunks. Target:
the service reaches at least half the bare rate for writes, 0.6 of it for reads.

``python -m bench.writes`` (``BENCH_QUICK=1``: fewer requests)
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import time as wall_clock
from datetime import timedelta
from pathlib import Path

from sqlalchemy import event, func, select, text

from bench import harness
from bench.clinic import EVERY_DAY, Clinic, issue_key, seed_clinic
from service.app import create_app
from service.db import Database
from service.domain.availability.versions import patient_scope, provider_scope
from service.domain.bookings.models import Booking

PROVIDERS = 20
SLOTS_A_DAY = 5  # 08:00, 10:00, 12:00, 14:00, 16:00: consultations never touch each other
REQUESTS = 200 if harness.QUICK else 600  # per endpoint
READS = 600 if harness.QUICK else 2000  # per endpoint
WARM_UP = 20
CONCURRENCY = 4
CHUNKS = 4
TARGET_SHARE = 0.5
TARGET_READ_SHARE = 0.6


def video_hours(provider_index: int) -> Iterator[tuple[str, int, wall_clock, wall_clock]]:
    """On video 08:00-18:00, every day."""
    for weekday in EVERY_DAY:
        yield "virtual", weekday, wall_clock(8), wall_clock(18)


def booking_bodies(clinic: Clinic, count: int) -> list[bytes]:
    """``count`` bookings of distinct slots and distinct patients, day by day."""
    bodies: list[bytes] = []
    day_index = 0
    while len(bodies) < count:
        day = clinic.first_day + timedelta(days=day_index)
        for slot in range(SLOTS_A_DAY):
            start = clinic.local_iso(clinic.at(day, 8 * 60 + 120 * slot))
            for provider_id in clinic.provider_ids:
                patient_id = clinic.patient_ids[len(bodies)]
                body, _ = harness.json_body({
                    "patient_id": str(patient_id), "provider_id": str(provider_id),
                    "service_type_id": str(clinic.service_types["consultation"].id),
                    "location_id": str(clinic.virtual_id), "start": start,
                    "patient_state": "AZ"})
                bodies.append(body)
                if len(bodies) == count:
                    return bodies
        day_index += 1
    return bodies


@dataclass
class Result:
    service: harness.Load
    bare: harness.Load
    bookings: int  # rows the service wrote (checked in the database)
    bare_rows: int
    statements: dict[str, float] | None = None
    reads: harness.Load | None = None
    bare_reads: harness.Load | None = None
    same_rows: harness.Load | None = None  # POST /bare/same-rows: a booking's rows, bare
    same_rows_written: dict[str, int] | None = None  # rows a table, per same-rows request

    @property
    def same_rows_share(self) -> float:
        if self.same_rows is None or not self.same_rows.rate:
            return float("nan")
        return self.service.rate / self.same_rows.rate

    @property
    def share(self) -> float:
        return self.service.rate / self.bare.rate if self.bare.rate else float("nan")

    @property
    def read_share(self) -> float:
        if self.reads is None or self.bare_reads is None or not self.bare_reads.rate:
            return float("nan")
        return self.reads.rate / self.bare_reads.rate

    def report(self) -> str:
        p = harness.percentile
        rows = [[name, load.count, harness.statuses_text(load.statuses),
                 f"{load.rate:.1f}", harness.ms(p(load.latencies, 50)),
                 harness.ms(p(load.latencies, 99)), written]
                for name, load, written in (("POST /api/v1/bookings", self.service,
                                             self.bookings),
                                            ("bare INSERT (POST /bare)", self.bare,
                                             self.bare_rows))]
        lines = [f"== Writes: PostgreSQL, distinct slots ({PROVIDERS} providers x "
                 f"{SLOTS_A_DAY} a day), gunicorn -w {harness.WORKERS} -k sync, "
                 f"{CONCURRENCY} client threads, one connection per request, {CHUNKS} "
                 "alternating chunks ==",
                 harness.table(["endpoint", "requests", "statuses", "req/s", "p50 ms",
                                "p99 ms", "rows"], rows),
                 f"  service rate / bare rate = {self.share:.2f} "
                 f"(target >= {TARGET_SHARE}: {harness.verdict(self.share >= TARGET_SHARE)})"]
        for name, load in (("service", self.service), ("bare", self.bare)):
            lines += [f"  unexpected {name} answer: {failure}" for failure in load.failures]
        if self.same_rows is not None:
            tables = ", ".join(f"{t} {n}" for t, n in (self.same_rows_written or {}).items())
            lines += [f"  same rows in one transaction (POST /bare/same-rows: {tables}): "
                      f"{self.same_rows.count} requests, "
                      f"{harness.statuses_text(self.same_rows.statuses)}, "
                      f"{self.same_rows.rate:.1f} req/s, p50 "
                      f"{harness.ms(p(self.same_rows.latencies, 50))} ms, p99 "
                      f"{harness.ms(p(self.same_rows.latencies, 99))} ms",
                      f"  service rate / same-rows rate = {self.same_rows_share:.2f} (target "
                      f">= {TARGET_SHARE}: "
                      f"{harness.verdict(self.same_rows_share >= TARGET_SHARE)})"]
            lines += [f"  unexpected same-rows answer: {failure}"
                      for failure in self.same_rows.failures]
        if self.reads is not None and self.bare_reads is not None:
            lines += [harness.table(["endpoint", "requests", "statuses", "req/s", "p50 ms",
                                     "p99 ms"],
                                    [[name, load.count, harness.statuses_text(load.statuses),
                                      f"{load.rate:.1f}", harness.ms(p(load.latencies, 50)),
                                      harness.ms(p(load.latencies, 99))]
                                     for name, load in (("GET /api/v1/bookings/{id}",
                                                         self.reads),
                                                        ("bare select-by-id (GET /bare/{id})",
                                                         self.bare_reads))]),
                      f"  GET rate / bare select-by-id rate = {self.read_share:.2f} (target "
                      f">= {TARGET_READ_SHARE}: "
                      f"{harness.verdict(self.read_share >= TARGET_READ_SHARE)})"]
            for name, load in (("GET", self.reads), ("bare GET", self.bare_reads)):
                lines += [f"  unexpected {name} answer: {failure}" for failure in load.failures]
        if self.statements:
            lines.append(f"  per request, in-process (median of {STATEMENT_SAMPLES}):")
            lines += [f"    {name:<52} {value:g}" for name, value in self.statements.items()]
        return "\n".join(lines)

    def summarize(self) -> list[str]:
        p = harness.percentile
        return [f"writes {self.service.rate:.0f} req/s (p99 "
                f"{harness.ms(p(self.service.latencies, 99))} ms) vs bare "
                f"{self.bare.rate:.0f} req/s (p99 {harness.ms(p(self.bare.latencies, 99))} ms)"
                f" = {self.share:.2f} of the bare rate: target >= {TARGET_SHARE} "
                f"{harness.verdict(self.share >= TARGET_SHARE)}"] + ([
            f"writes POST /bookings {self.service.rate:.0f} req/s vs the same rows in one "
            f"transaction {self.same_rows.rate:.0f} req/s = {self.same_rows_share:.2f}: "
            f"target >= {TARGET_SHARE} {harness.verdict(self.same_rows_share >= TARGET_SHARE)}"]
            if self.same_rows is not None else []) + ([
            f"reads GET /bookings/{{id}} {self.reads.rate:.0f} req/s vs bare select-by-id "
            f"{self.bare_reads.rate:.0f} req/s = {self.read_share:.2f}: target >= "
            f"{TARGET_READ_SHARE} {harness.verdict(self.read_share >= TARGET_READ_SHARE)}"]
            if self.reads is not None and self.bare_reads is not None else []) + [
            f"writes {name}: {value:g} per request" for name, value in
            (self.statements or {}).items() if name.endswith("statements")]


def run() -> Result:
    with harness.fresh_database("postgresql") as url:
        database = Database.connect(url)
        try:
            clinic = seed_clinic(database, providers=PROVIDERS, patients=REQUESTS + WARM_UP,
                                 chairs=0, hours=video_hours)
            authorization = f"Bearer {issue_key(database)}"
            headers = {"Authorization": authorization, "Content-Type": "application/json"}
            bodies = booking_bodies(clinic, REQUESTS + WARM_UP)
            bookings = [harness.Request("POST", "/api/v1/bookings", headers, body)
                        for body in bodies]
            bare = [harness.Request("POST", "/bare", headers, body) for body in bodies]
            same = [harness.Request("POST", "/bare/same-rows", headers, body)
                    for body in bodies]
            rows_file = Path(tempfile.mkstemp(prefix="bench_same_rows_", suffix=".json")[1])
            rows_file.write_text(json.dumps(capture_rows(url, clinic, authorization)))
            same_rows_written = {t: len(r) for t, r in json.loads(rows_file.read_text()).items()}
            with harness.gunicorn("service.wsgi:app", env={"DATABASE_URL": url},
                                  name="service") as service, \
                    harness.gunicorn("bench.bare_app:create_app()",
                                     env={"DATABASE_URL": url,
                                          "BENCH_BARE_AUTHORIZATION": authorization,
                                          "BENCH_SAME_ROWS": str(rows_file)},
                                     name="bare") as floor:
                harness.interleaved([(service.port, bookings[:WARM_UP]),
                                     (floor.port, bare[:WARM_UP]),
                                     (floor.port, same[:WARM_UP])],
                                    concurrency=CONCURRENCY, chunks=1, expect=201)
                service_load, bare_load, same_load = harness.interleaved(
                    [(service.port, bookings[WARM_UP:]), (floor.port, bare[WARM_UP:]),
                     (floor.port, same[WARM_UP:])],
                    concurrency=CONCURRENCY, chunks=CHUNKS, expect=201)
                reads, bare_reads = read_requests(database, headers)
                harness.interleaved([(service.port, reads[:WARM_UP]),
                                     (floor.port, bare_reads[:WARM_UP])],
                                    concurrency=CONCURRENCY, chunks=1, expect=200)
                read_load, bare_read_load = harness.interleaved(
                    [(service.port, reads[WARM_UP:]), (floor.port, bare_reads[WARM_UP:])],
                    concurrency=CONCURRENCY, chunks=CHUNKS, expect=200)
            rows_file.unlink()
            with database.read_sessions() as session:
                written = session.scalar(select(func.count()).select_from(Booking)) or 0
                written -= 1  # the booking whose rows the same-rows floor writes
                bare_rows = session.scalar(text("SELECT count(*) FROM bench_bare")) or 0
            statements = count_statements(url, clinic, authorization)
        finally:
            database.dispose()
    return Result(service=service_load, bare=bare_load, bookings=written - WARM_UP,
                  bare_rows=bare_rows - WARM_UP, statements=statements, reads=read_load,
                  bare_reads=bare_read_load, same_rows=same_load,
                  same_rows_written=same_rows_written)


def capture_rows(url: str, clinic: Clinic, authorization: str
                 ) -> dict[str, list[dict[str, object]]]:
    """The rows one booking writes (made in-process, on a day the load does not use), by
    table, as PostgreSQL's ``row_to_json`` gives them: what the same-rows floor inserts."""
    app = create_app({"DATABASE_URL": url})
    database = app.extensions["clinic.database"]
    provider_id, patient_id = clinic.provider_ids[0], clinic.patient_ids[-50]
    body = {"patient_id": str(patient_id), "provider_id": str(provider_id),
            "service_type_id": str(clinic.service_types["consultation"].id),
            "location_id": str(clinic.virtual_id), "patient_state": "AZ",
            "start": clinic.local_iso(clinic.at(clinic.first_day + timedelta(days=35), 8 * 60))}
    try:
        response = app.test_client().post("/api/v1/bookings", json=body,
                                          headers={"Authorization": authorization})
        assert response.status_code == 201, response.get_json()
        booking_id = response.get_json()["id"]
        where = {"bookings": "id = :b", "booking_events": "booking_id = :b",
                 "reminders": "booking_id = :b", "booking_changes": "booking_id = :b",
                 "audit_events": "resource_id = CAST(:b AS text) AND action = 'create'",
                 "schedule_versions": "scope IN (:provider, :patient)",
                 "sync_counters": "true"}
        values = {"b": booking_id, "provider": provider_scope(provider_id),
                  "patient": patient_scope(patient_id)}
        rows: dict[str, list[dict[str, object]]] = {}
        with database.writer.connect() as connection:
            for table, condition in where.items():
                found = connection.execute(text(
                    f"SELECT row_to_json(t) FROM {table} t WHERE {condition}"), values)
                rows[table] = [row[0] for row in found]
    finally:
        database.dispose()
    return rows


def read_requests(database: Database, headers: dict[str, str]
                  ) -> tuple[list[harness.Request], list[harness.Request]]:
    """GETs of the bookings and of the bare rows just written, round-robin."""
    with database.read_sessions() as session:
        booking_ids = list(session.scalars(select(Booking.id)))
        bare_ids = list(session.scalars(text("SELECT id FROM bench_bare")))
    get = {"Authorization": headers["Authorization"]}
    count = READS + WARM_UP
    return ([harness.Request("GET", f"/api/v1/bookings/{i}", get, None)
             for i in itertools.islice(itertools.cycle(booking_ids), count)],
            [harness.Request("GET", f"/bare/{i}", get, None)
             for i in itertools.islice(itertools.cycle(bare_ids), count)])


STATEMENT_SAMPLES = 10


def count_statements(url: str, clinic: Clinic, authorization: str) -> dict[str, float]:
    """SQL statements (and connection checkouts) per request, in-process (Flask test client,
    the service's own engines): a booking, one with an Idempotency-Key, one that conflicts
    (409 with alternatives), and GET /api/v1/bookings/{id}. Medians of a few requests."""
    app = create_app({"DATABASE_URL": url})
    database = app.extensions["clinic.database"]
    counts = {"statements": 0, "checkouts": 0}

    def statement(*_: object) -> None:
        counts["statements"] += 1

    def checkout(*_: object) -> None:
        counts["checkouts"] += 1

    engines = {id(e): e for e in (database.writer, database.reader)}.values()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine.pool, "checkout", checkout)
    client = app.test_client()
    headers = {"Authorization": authorization}
    # Later days than the load's bookings, distinct patients from the end of the list.
    day = clinic.first_day + timedelta(days=20)
    samples: dict[str, list[tuple[int, int]]] = {}

    def measure(name: str, call) -> object:  # type: ignore[no-untyped-def]
        counts.update(statements=0, checkouts=0)
        response = call()
        samples.setdefault(name, []).append((counts["statements"], counts["checkouts"]))
        return response

    try:
        for n in range(STATEMENT_SAMPLES):
            provider_id = clinic.provider_ids[n % len(clinic.provider_ids)]
            body = {"patient_id": str(clinic.patient_ids[-1 - n]),
                    "provider_id": str(provider_id),
                    "service_type_id": str(clinic.service_types["consultation"].id),
                    "location_id": str(clinic.virtual_id), "patient_state": "AZ",
                    "start": clinic.local_iso(clinic.at(day + timedelta(days=n), 8 * 60))}
            made = measure("POST /bookings", lambda b=body: client.post(
                "/api/v1/bookings", json=b, headers=headers))
            again = {**body, "start": clinic.local_iso(clinic.at(day + timedelta(days=n),
                                                                 10 * 60))}
            measure("POST /bookings with Idempotency-Key", lambda b=again, k=n: client.post(
                "/api/v1/bookings", json=b, headers={**headers,
                                                     "Idempotency-Key": f"bench-{k}"}))
            taken = {**body, "patient_id": str(clinic.patient_ids[-100 - n])}
            measure("POST /bookings, 409", lambda b=taken: client.post(
                "/api/v1/bookings", json=b, headers=headers))
            booking_id = made.get_json()["id"]  # type: ignore[attr-defined]
            measure("GET /bookings/{id}", lambda i=booking_id: client.get(
                f"/api/v1/bookings/{i}", headers=headers))
    finally:
        database.dispose()
    return {f"{name}: {what}": statistics.median(sample[index] for sample in values)
            for name, values in samples.items()
            for index, what in ((0, "statements"), (1, "connections"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.writes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    harness.exit_on_sigterm()
    print(run().report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
