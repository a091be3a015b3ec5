"""POST /bookings: the PostgreSQL server's CPU per POST, per statement, next to the web's.

The booking load shares the machine's cores with PostgreSQL, so the server's CPU per POST
limits the write rate as much as the web process's does, and ``bench/post_ab.py`` (the web
process only) does not see it. This reads it from the kernel: the CPU time (user + system,
``/proc/<pid>/stat``) of the one backend that serves the app's pooled connection, before and
after each statement the app sends (psycopg's ``Cursor.execute`` and ``Connection.commit``,
wrapped here), summed per statement (its first words) over many POSTs. The kernel counts
in clock ticks (10 ms at 100 Hz): each statement's figure is a sample of whole ticks, right
on average over a thousand POSTs, not for one. A statement's first execution also sends the
transaction's BEGIN (psycopg sends it with the first statement): counted with it.

Also printed, for scale: the server's CPU for one trivial statement (``SELECT 1``), the
least a statement costs it whatever it does, and for an empty transaction (BEGIN, COMMIT).

``python -m bench.post_database [--posts 1000]``; PostgreSQL on this machine (its backends'
``/proc`` entries readable), a fresh database of its own (bench/writes.py's calendar).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text

from bench import harness
from bench.clinic import issue_key, seed_clinic
from bench.writes import PROVIDERS, booking_bodies, video_hours
from service.app import create_app
from service.db import Database

WARM_UP = 30  # past psycopg's prepare threshold (5) and PostgreSQL's generic plans (5)
TRIVIAL = 4000  # trivial statements timed for scale
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user + system), in seconds."""
    # The fields after the command's name (which may hold spaces: it ends at the last ")").
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def statement_name(query: Any) -> str:
    """A statement's first words (enough to tell the POST's statements apart)."""
    return " ".join(str(query).split())[:48]


@contextmanager
def charged_per_statement(pid: int, spent: Counter[str]) -> Iterator[None]:
    """Within the block, each statement psycopg sends (and each COMMIT) adds the server
    backend ``pid``'s CPU time over it to ``spent``, by ``statement_name``."""
    execute, commit = psycopg.Cursor.execute, psycopg.Connection.commit

    def charged(name: Callable[[Any], str], call: Callable[..., Any]) -> Callable[..., Any]:
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            before = cpu_seconds(pid)
            try:
                return call(self, *args, **kwargs)
            finally:
                spent[name(args)] += cpu_seconds(pid) - before
        return run

    psycopg.Cursor.execute = charged(  # type: ignore[method-assign]
        lambda args: statement_name(args[0]), execute)
    psycopg.Connection.commit = charged(  # type: ignore[method-assign]
        lambda _args: "COMMIT", commit)
    try:
        yield
    finally:
        psycopg.Cursor.execute, psycopg.Connection.commit = (  # type: ignore[method-assign]
            execute, commit)


def scale(database: Database, pid: int) -> tuple[float, float]:
    """The backend's CPU per trivial statement and per empty transaction, in seconds, on
    the app's pooled connection (in autocommit for the time of the measure)."""
    with database.writer.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        raw.autocommit = True  # type: ignore[attr-defined]
        try:
            cursor = raw.cursor()
            before = cpu_seconds(pid)
            for _ in range(TRIVIAL):
                cursor.execute("SELECT 1")
            trivial = (cpu_seconds(pid) - before) / TRIVIAL
            before = cpu_seconds(pid)
            for _ in range(TRIVIAL // 2):
                cursor.execute("BEGIN")
                cursor.execute("COMMIT")
            empty = (cpu_seconds(pid) - before) / (TRIVIAL // 2)
        finally:
            raw.autocommit = False  # type: ignore[attr-defined]
    return trivial, empty


def seeded(url: str, count: int) -> tuple[dict[str, str], list[bytes]]:
    """bench/writes.py's calendar in the database at ``url``: a staff key's request
    headers, and ``count`` bookings' bodies (distinct slots, distinct patients)."""
    database = Database.connect(url)
    try:
        clinic = seed_clinic(database, providers=PROVIDERS, patients=count,
                             chairs=0, hours=video_hours)
        authorization = f"Bearer {issue_key(database)}"
        bodies = booking_bodies(clinic, count)
    finally:
        database.dispose()
    return {"Authorization": authorization, "Content-Type": "application/json"}, bodies


def measure(url: str, posts: int) -> None:
    headers, bodies = seeded(url, WARM_UP + posts)
    app = create_app({"DATABASE_URL": url})
    gc.collect()  # as gunicorn.conf.py's post_worker_init does in a worker
    gc.freeze()
    database = app.extensions["clinic.database"]
    client = app.test_client()
    try:
        for body in bodies[:WARM_UP]:
            response = client.post("/api/v1/bookings", data=body, headers=headers)
            assert response.status_code == 201, response.get_data(as_text=True)
        if database.writer.pool.checkedin() != 1:
            raise RuntimeError("expected the writer's pool to hold one connection")
        with database.writer.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            connection.rollback()
        spent: Counter[str] = Counter()
        web, server = time.process_time(), cpu_seconds(pid)
        with charged_per_statement(pid, spent):
            for body in bodies[WARM_UP:]:
                response = client.post("/api/v1/bookings", data=body, headers=headers)
                assert response.status_code == 201, response.get_data(as_text=True)
        server, web = cpu_seconds(pid) - server, time.process_time() - web
        trivial, empty = scale(database, pid)
    finally:
        database.dispose()
    print(f"PostgreSQL backend CPU per POST: {1000 * server / posts:.3f} ms "
          f"(web process, in-process client: {1000 * web / posts:.3f} ms), {posts} POSTs")
    rows = [(name, f"{1e6 * seconds / posts:.0f}") for name, seconds in spent.most_common()]
    rows.append(("(between statements)", f"{1e6 * (server - sum(spent.values())) / posts:.0f}"))
    print(harness.table(("statement", "us per POST"), rows))
    print(f"for scale: {1e6 * trivial:.1f} us per trivial statement (SELECT 1), "
          f"{1e6 * empty:.1f} us per empty transaction (BEGIN, COMMIT)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.post_database", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1000)
    args = parser.parse_args(argv)
    harness.exit_on_sigterm()
    os.environ.update(harness.BENCH_RATE_LIMITS)
    with harness.fresh_database("postgresql") as url:
        measure(url, args.posts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
