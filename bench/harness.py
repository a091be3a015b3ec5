"""What every benchmark needs: a throwaway database, gunicorn, an HTTP load and percentiles.

Nothing here knows the clinic; ``bench/clinic.py`` fills the database.
"""

from __future__ import annotations

import http.client
import json
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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, text

from service import migrate

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")  # fewer requests, fewer benches
WORKERS = 2  # gunicorn sync workers, one per core on the 2-core reference machine
# The benchmarks measure the service, not its rate limits (one key sends thousands of
# requests a minute): every limit far above the load, still checked on every request.
UNLIMITED = "1000000/minute"
BENCH_RATE_LIMITS = {
    "RATE_LIMIT_ROLES": ",".join(f"{role}={UNLIMITED}" for role in (
        "admin", "staff", "provider", "patient", "integration")),
    "RATE_LIMIT_ANONYMOUS": UNLIMITED, "RATE_LIMIT_KEY_CHECKS": UNLIMITED,
    "RATE_LIMIT_CALENDAR_FEEDS": UNLIMITED}


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks drop databases and stop servers."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


# Databases ---------------------------------------------------------------------------------


@contextmanager
def fresh_database(kind: str) -> Iterator[str]:
    """A new, migrated database (``postgresql`` or ``sqlite``); removed afterwards."""
    if kind == "postgresql":
        with _postgres_database() as url:
            migrate.upgrade(url)
            yield url
    elif kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="bench_")
        try:
            url = f"sqlite:///{folder}/bench.sqlite3"
            migrate.upgrade(url)
            yield url
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        raise ValueError(f"unknown database kind {kind!r}")


@contextmanager
def _postgres_database() -> Iterator[str]:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# gunicorn ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A gunicorn started by a benchmark (its master's pid is the one we stop)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextmanager
def gunicorn(app: str, *, env: dict[str, str], name: str, workers: int = WORKERS
             ) -> Iterator[Server]:
    """``gunicorn -w 2 -k sync -b 127.0.0.1:<free port> <app>``, run from the project root
    (so the project's gunicorn.conf.py applies too, as in production), until the block ends.
    """
    port = free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="bench_gunicorn_"))
    log_path = log_dir / f"{name}.log"
    command = [str(BIN / "gunicorn"), "-w", str(workers), "-k", "sync",
               "-b", f"127.0.0.1:{port}", app]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT,
                                   env={**os.environ, **BENCH_RATE_LIMITS, **env}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name=name, port=port, process=process, log_path=log_path)
    try:
        _wait_until_up(server)
        yield server
    finally:
        _stop(process)
        shutil.rmtree(log_dir, ignore_errors=True)


def _wait_until_up(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn ({server.name}) exited with "
                               f"{server.process.returncode}:\n{server.log_tail()}")
        status, _, _ = call(server.port, "GET", "/healthz", timeout=2)
        if status == 200:
            return
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn ({server.name}) did not answer /healthz within {timeout:.0f} s"
                       f":\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()  # gunicorn's master: graceful stop of its workers
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


# HTTP --------------------------------------------------------------------------------------


def call(port: int, method: str, path: str, *, headers: dict[str, str] | None = None,
         body: bytes | None = None, timeout: float = 120.0) -> tuple[int, bytes, float]:
    """One request on a fresh connection: (status, body, seconds); status 0 if it failed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    sent = {"Connection": "close", **(headers or {})}
    started = time.perf_counter()
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        status, data = 0, f"{type(exc).__name__}: {exc}".encode()
    finally:
        connection.close()
    return status, data, time.perf_counter() - started


def json_body(payload: object) -> tuple[bytes, dict[str, str]]:
    return json.dumps(payload).encode(), {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass
class Load:
    """What a batch of requests gave: statuses, latencies (s), and the wall-clock time."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    wall: float = 0.0
    failures: list[str] = field(default_factory=list)  # a few bodies of unexpected answers

    def add(self, other: Load) -> None:
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.wall += other.wall
        self.failures += other.failures[: max(0, 3 - len(self.failures))]

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.wall if self.wall else 0.0


def run_load(port: int, requests: Sequence[Request], *, concurrency: int,
             expect: int = 200) -> Load:
    """Send ``requests`` from ``concurrency`` threads, each taking the next one as it is free."""
    load = Load()
    lock = threading.Lock()
    cursor = iter(requests)

    def worker() -> None:
        while True:
            with lock:
                request = next(cursor, None)
            if request is None:
                return
            status, data, seconds = call(port, request.method, request.path,
                                         headers=request.headers, body=request.body)
            with lock:
                load.latencies.append(seconds)
                load.statuses[status] += 1
                if status != expect and len(load.failures) < 3:
                    load.failures.append(f"{status}: {data[:300]!r}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load.wall = time.perf_counter() - started
    return load


def interleaved(targets: Sequence[tuple[int, Sequence[Request]]], *, concurrency: int,
                chunks: int, expect: int = 200) -> list[Load]:
    """Run several targets' requests in alternating chunks, so drifts hit them alike."""
    loads = [Load() for _ in targets]
    for chunk in range(chunks):
        for load, (port, requests) in zip(loads, targets, strict=True):
            size = -(-len(requests) // chunks)
            part = requests[chunk * size:(chunk + 1) * size]
            if part:
                load.add(run_load(port, part, concurrency=concurrency, expect=expect))
    return loads


# Figures -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ms(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "-"
    value = seconds * 1000
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "  ") -> str:
    """A plain text table: first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                          strict=True)]
        lines.append(indent + "  ".join(parts).rstrip())
    return "\n".join(lines)


def statuses_text(statuses: Counter[int]) -> str:
    return ", ".join(f"{code or 'error'} x{n}" for code, n in sorted(statuses.items()))


# Instruction counts (valgrind) ---------------------------------------------------------------

K = TypeVar("K")
CACHEGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
"""The prefix of a command whose user-space instructions are counted: unmoved by the load
of a shared machine (run it with ``PYTHONMALLOC=malloc``)."""


def counted_instructions(runs: Mapping[K, subprocess.Popen[str]]) -> dict[K, int]:
    """Each ``CACHEGRIND`` run's instruction count, from its stderr (a pipe), once it ends."""
    counted: dict[K, int] = {}
    for run, process in runs.items():
        _, errors = process.communicate()
        found = re.search(r"I\s+refs:\s+([\d,]+)", errors)
        if process.returncode or found is None:
            raise RuntimeError(f"no instruction count from valgrind:\n{errors[-3000:]}")
        counted[run] = int(found.group(1).replace(",", ""))
    return counted
