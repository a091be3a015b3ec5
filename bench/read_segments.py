"""``python -m bench.read_segments``: where one ``GET /api/v1/bookings/{id}`` spends its time
in-process, in five segments cut at its two statements (PostgreSQL, the app built as
``bench.read_ab`` builds it, Flask's test client):

- ``before the read``: the request up to the booking's SELECT being sent (routing, hooks
  before the view, the key, the arguments, the connection's checkout);
- ``the read``: the SELECT's round trip;
- ``read to row``: from the SELECT's answer to the audit row's INSERT being sent
  (rendering, the decorators' return, the ``after_request`` hooks that run before the
  audit's, the row's values);
- ``the row``: the INSERT's round trip, its commit and the WAL flush it waits for;
- ``row to answer``: the hooks after the audit's (rate-limit headers, metrics, the log
  line, Cache-Control), the WSGI response (status and headers);
- ``teardown``: the request's teardown (its connection back to the pool) and the end of
  its context.

Each as CPU (``time.thread_time``) and wall (``time.perf_counter``), medians per request.
The statements are found by the engine's ``before_cursor_execute`` and
``after_cursor_execute`` events (which the service's direct statements fire too).

Measured twice in alternating batches (so both see the same machine load): as the
service runs, and with ``synchronous_commit`` off on the app's connections (this process's
sessions only, never the server's setting). The difference in ``the row`` is what the WAL
flush costs a read; ``row to answer`` is the most work that could run while it flushes
(the teardown needs the connection back).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from sqlalchemy import event

from bench import harness
from bench.read_ab import _seed
from service.app import create_app

REQUESTS = 3000
BATCH = 100
WARM_UP = 300
MARKS = ("start", "select sent", "select answered", "insert sent", "insert answered",
         "teardown", "end")
SEGMENTS = ("before the read", "the read", "read to row", "the row", "row to answer",
            "teardown")


def _clock() -> tuple[float, float]:
    return time.thread_time(), time.perf_counter()


class _Timed:
    """One app, its requests' marks at the segments' edges, and their CPU and wall."""

    def __init__(self, url: str, *, sync_off: bool) -> None:
        self.app = create_app({"DATABASE_URL": url})
        engine = self.app.extensions["clinic.database"].writer
        self.marks: dict[str, tuple[float, float]] = {}
        self.cpu: dict[str, list[float]] = {name: [] for name in SEGMENTS}
        self.wall: dict[str, list[float]] = {name: [] for name in SEGMENTS}
        if sync_off:
            event.listen(engine, "connect", _no_flush)
        event.listen(engine, "before_cursor_execute", self._sent)
        event.listen(engine, "after_cursor_execute", self._answered)
        # Registered last, so the first teardown function to run (Flask runs them
        # last-registered first): it marks where the request's teardown begins.
        self.app.teardown_request(self._teardown)
        wsgi_app = self.app.wsgi_app

        def timed(environ: Any, start_response: Any) -> Any:
            self.marks["start"] = _clock()
            try:
                return wsgi_app(environ, start_response)
            finally:
                self.marks["end"] = _clock()

        self.app.wsgi_app = timed  # type: ignore[method-assign]
        self.client = self.app.test_client()

    def _sent(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        kind = statement.lstrip()[:6].upper()
        if kind in ("SELECT", "INSERT"):
            self.marks[f"{kind.lower()} sent"] = _clock()

    def _answered(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        kind = statement.lstrip()[:6].upper()
        if kind in ("SELECT", "INSERT"):
            self.marks[f"{kind.lower()} answered"] = _clock()

    def _teardown(self, _error: BaseException | None = None) -> None:
        self.marks["teardown"] = _clock()

    def get(self, path: str, authorization: str, *, counted: bool) -> None:
        marks = self.marks
        marks.clear()
        response = self.client.get(path, headers={"Authorization": authorization})
        if response.status_code != 200 or len(marks) != len(MARKS):
            raise SystemExit(f"{response.status_code}: marks {sorted(marks)}")
        if counted:
            for name, first, last in zip(SEGMENTS, MARKS[:-1], MARKS[1:], strict=True):
                self.cpu[name].append(marks[last][0] - marks[first][0])
                self.wall[name].append(marks[last][1] - marks[first][1])

    def medians(self) -> dict[str, tuple[float, float]]:
        return {name: (statistics.median(self.cpu[name]), statistics.median(self.wall[name]))
                for name in SEGMENTS}


def _no_flush(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("SET synchronous_commit = off")
    dbapi_connection.commit()


def measure(url: str, authorization: str, paths: list[str]
            ) -> dict[str, dict[str, tuple[float, float]]]:
    """Median CPU and wall seconds of each segment, over ``REQUESTS`` GETs, with
    ``synchronous_commit`` on and off, in alternating batches (so both see the same load)."""
    runs = {"on": _Timed(url, sync_off=False), "off": _Timed(url, sync_off=True)}
    try:
        for index in range(WARM_UP):
            for run in runs.values():
                run.get(paths[index % len(paths)], authorization, counted=False)
        for first in range(0, REQUESTS, BATCH):
            for run in runs.values():
                for index in range(first, first + BATCH):
                    run.get(paths[index % len(paths)], authorization, counted=True)
    finally:
        for run in runs.values():
            run.app.extensions["clinic.database"].dispose()
    return {name: run.medians() for name, run in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.read_segments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    # Metrics in files, as under gunicorn (before prometheus-client is first used).
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="segments_"))
    with harness.fresh_database("postgresql") as url:
        authorization, paths = _seed(url, False)
        figures = measure(url, authorization, paths)
    print(f"GET /api/v1/bookings/{{id}}, medians of {REQUESTS} requests, microseconds, "
          "synchronous_commit on | off")
    print(f"  {'':<16} {'CPU on':>8} {'wall on':>8} | {'CPU off':>8} {'wall off':>8}")
    for name in SEGMENTS:
        (cpu_on, wall_on), (cpu_off, wall_off) = figures["on"][name], figures["off"][name]
        print(f"  {name:<16} {cpu_on * 1e6:8.1f} {wall_on * 1e6:8.1f} | "
              f"{cpu_off * 1e6:8.1f} {wall_off * 1e6:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
