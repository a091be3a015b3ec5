"""``python -m bench.first_ab``: a computed ("first") slot search, CPU per request, client and
database server, for a paired comparison of two checkouts on the same data.

The slots benchmark's calendar (50 providers, 30 days, ~12,000 bookings) is seeded once
into a database that is kept (``--seed``); then each checkout measures it in turn
(``--measure``, run from that checkout's folder so its ``service`` package is imported),
alternating, and prints per request: the client's CPU (``time.process_time``), the database
server's CPU (the backends of the measured database, from ``/proc/<pid>/stat``), the
statements sent and the bytes of the answer's digest (two checkouts must print the same).

The request is ``GET /api/v1/slots`` as the HTTP benchmark sends it (consultation, all
providers, 7 days, limit 200), served in-process by the Flask test client with the slot
caches off (``cache.NullStore``): every search computes, as the benchmark's "first search"
does with Redis unreachable.

    python -m bench.first_ab --seed URL --clinic FILE
    python -m bench.first_ab --measure URL --clinic FILE [--reps N] [--service iv-infusion]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import create_engine, event, text

from bench import harness
from bench.clinic import issue_key
from bench.slots import HTTP_DAYS, HTTP_LIMIT, seed
from service.app import create_app
from service.db import Database
from service.domain.availability import cache

TICKS = os.sysconf("SC_CLK_TCK")


def _seed(url: str, clinic_file: Path) -> None:
    database = Database.connect(url)
    try:
        clinic = seed(database)
        key = issue_key(database)
    finally:
        database.dispose()
    clinic_file.write_text(json.dumps({
        "first_day": clinic.first_day.isoformat(), "key": key,
        "service_types": {code: str(st.id) for code, st in clinic.service_types.items()}}))


def _backend_ticks(monitor, database_name: str) -> int:  # type: ignore[no-untyped-def]
    """utime + stime of every backend of the database (the monitor's own excluded)."""
    pids = monitor.execute(text(
        "SELECT pid FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"),
        {"name": database_name}).scalars().all()
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def _measure(url: str, clinic_file: Path, reps: int, service: str) -> None:
    clinic = json.loads(clinic_file.read_text())
    first_day = date.fromisoformat(clinic["first_day"])
    path = "/api/v1/slots?" + urlencode({
        "service_type": clinic["service_types"][service], "start": first_day.isoformat(),
        "end": (first_day + timedelta(days=HTTP_DAYS - 1)).isoformat(), "limit": HTTP_LIMIT})
    headers = {"Authorization": f"Bearer {clinic['key']}"}
    app = create_app({"DATABASE_URL": url, **harness.BENCH_RATE_LIMITS})
    cache.use(cache.NullStore())
    client = app.test_client()
    statements = [0]

    def count(*_: object) -> None:
        statements[0] += 1

    engines = {id(e): e for e in (app.extensions["clinic.database"].writer,
                                  app.extensions["clinic.database"].reader) if e is not None}
    for engine in engines.values():
        event.listen(engine, "before_cursor_execute", count)
    monitor_engine = create_engine(url, isolation_level="AUTOCOMMIT")
    name = url.rsplit("/", 1)[1]
    try:
        with monitor_engine.connect() as monitor:
            body = b""
            for _ in range(20):  # warm-up: statement caches, zoneinfo, pool
                response = client.get(path, headers=headers)
                assert response.status_code == 200, response.data[:300]
                body = response.data
            statements[0] = 0
            server_before = _backend_ticks(monitor, name)
            cpu_before, wall_before = time.process_time(), time.perf_counter()
            for _ in range(reps):
                response = client.get(path, headers=headers)
            cpu = time.process_time() - cpu_before
            wall = time.perf_counter() - wall_before
            server = (_backend_ticks(monitor, name) - server_before) / TICKS
    finally:
        monitor_engine.dispose()
        app.extensions["clinic.database"].dispose()
    assert response.data == body
    print(f"{Path.cwd().name:>14} {service:<13} reps {reps}: client CPU "
          f"{cpu / reps * 1000:6.3f} ms/req, server CPU {server / reps * 1000:6.3f} ms/req, "
          f"wall {wall / reps * 1000:6.3f} ms/req, statements {statements[0] / reps:.1f}/req, "
          f"{len(json.loads(body)['slots'])} slots, sha256 {hashlib.sha256(body).hexdigest()[:16]}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--seed", metavar="URL")
    group.add_argument("--measure", metavar="URL")
    parser.add_argument("--clinic", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--service", default="consultation")
    args = parser.parse_args(argv)
    if args.seed:
        _seed(args.seed, args.clinic)
    else:
        _measure(args.measure, args.clinic, args.reps, args.service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
