"""POST /bookings and GET /bookings/{id}: client/server round trips per request (PostgreSQL).

A round trip is a wait of the client for the server: a batch of messages the client sends,
then the server's answers it reads before sending more. Read from libpq's own protocol trace
(``PGconn.trace``) of the app's one pooled writer connection: each turn from the client's
messages (``F``) to the server's (``B``) is one. Also counted: the statements sent (Parse/
Bind/Query messages that execute something) and the Sync messages (extended protocol: the
points at which the server answers and a transaction without BEGIN would end).

``python -m bench.round_trips [--requests 200]``; PostgreSQL on this machine, a fresh
database of its own (bench/writes.py's calendar). Runs against whichever tree is first on
``PYTHONPATH`` (so the A/B base tree can be measured the same way).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import psycopg
from psycopg import pq

from bench import harness
from bench.post_database import seeded
from service.app import create_app

WARM_UP = 30  # past psycopg's prepare threshold (5) and PostgreSQL's generic plans (5)


def turns(trace: str) -> Counter[str]:
    """From a libpq trace: ``round trips`` (turns from client to server messages),
    ``statements`` (Execute and simple Query messages), ``syncs``."""
    counted: Counter[str] = Counter()
    last = None
    for line in trace.splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        direction, message = fields[0], fields[2]
        if direction == "B" and last == "F":
            counted["round trips"] += 1
        if direction == "F":
            if message in ("Execute", "Query"):
                counted["statements"] += 1
            elif message == "Sync":
                counted["syncs"] += 1
        last = direction
    return counted


def measure(url: str, requests: int) -> dict[str, Counter[str]]:
    headers, bodies = seeded(url, WARM_UP + requests)
    app = create_app({"DATABASE_URL": url})
    database = app.extensions["clinic.database"]
    client = app.test_client()
    created = []
    results: dict[str, Counter[str]] = {}
    try:
        for body in bodies[:WARM_UP]:
            response = client.post("/api/v1/bookings", data=body, headers=headers)
            assert response.status_code == 201, response.get_data(as_text=True)
            created.append(response.get_json()["id"])
        for _ in range(WARM_UP):
            assert client.get(f"/api/v1/bookings/{created[0]}",
                              headers=headers).status_code == 200
        if database.writer.pool.checkedin() != 1:
            raise RuntimeError("expected the writer's pool to hold one connection")
        with database.writer.connect() as connection:
            pgconn = connection.connection.dbapi_connection.pgconn  # type: ignore[union-attr]
            connection.rollback()
        with tempfile.TemporaryDirectory() as directory:
            for name, send in (
                ("POST /bookings", lambda i: client.post(
                    "/api/v1/bookings", data=bodies[WARM_UP + i], headers=headers)),
                ("POST /bookings (taken: 409)", lambda i: client.post(
                    "/api/v1/bookings", data=bodies[WARM_UP + i], headers=headers)),
                ("GET /bookings/{id}", lambda i: client.get(
                    f"/api/v1/bookings/{created[i % len(created)]}", headers=headers)),
            ):
                path = Path(directory, "trace")
                with path.open("w") as file:
                    pgconn.trace(file.fileno())
                    pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
                    statuses: Counter[int] = Counter()
                    for i in range(requests):
                        statuses[send(i).status_code] += 1
                    pgconn.untrace()
                counted = turns(path.read_text())
                results[name] = Counter({key: value / requests for key, value in counted.items()})
                print(f"{name}: {harness.statuses_text(statuses)}; per request: "
                      + ", ".join(f"{key} {value:.2f}" for key, value in
                                  sorted(results[name].items())))
    finally:
        database.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.round_trips", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args(argv)
    harness.exit_on_sigterm()
    os.environ.update(harness.BENCH_RATE_LIMITS)
    print(f"psycopg {psycopg.__version__}, libpq {pq.version()}")
    with harness.fresh_database("postgresql") as url:
        measure(url, args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
