"""``python -m bench.read_ab BASE_TREE``: CPU per ``GET /api/v1/bookings/{id}`` in-process,
the code in ``BASE_TREE`` (e.g. ``git archive main | tar -x -C /tmp/base``) against this
tree's, on the same PostgreSQL bookings, in short batches that alternate between the two.

One process per tree (``PYTHONPATH`` = the tree) builds the app as a gunicorn worker does
(``PROMETHEUS_MULTIPROC_DIR`` set, the bench's rate limits, no Redis), answers warm-up GETs,
counts one GET's Python calls (cProfile) and SQL statements, then runs the batches it is
told to (``BATCH`` GETs through Flask's test client; CPU: ``time.process_time``), the
other tree's batch right before or after it, so both see the same machine load. Prints
the medians per tree and the median of the paired ratios.

``--slots``: a repeated slot search (7 days; answered from the cache after the first)
instead. ``--profile N``: print the N functions with the most own CPU time of this tree's
requests. ``--instructions``: instead of timing, count the instructions a request costs
each tree's process (user space, the database server aside), unmoved by the machine's
load: valgrind's cachegrind over two runs of different lengths (the difference over the
difference in requests), the API key cache long enough for the runs.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import IO
from urllib.parse import urlencode

from sqlalchemy import event

from bench import harness
from bench.clinic import issue_key, seed_clinic
from bench.writes import booking_bodies, video_hours
from service.app import create_app
from service.db import Database

BATCHES = 40
BATCH = 200
WARM_UP = 300
BOOKINGS = 200


COUNTED = (100, 400)  # requests in the two runs whose instructions are counted


def _worker(job_file: str, profile: int, count: int) -> None:
    """In a measured process (its environment set by ``main``): answer the driver's
    commands on stdin (``run``: one batch, its CPU and wall seconds; ``quit``), or, with
    ``count``, answer that many requests after the warm-up and end."""
    job = json.loads(Path(job_file).read_text())
    app = create_app({"DATABASE_URL": job["url"]})
    client = app.test_client()
    headers = {"Authorization": job["authorization"]}
    paths: list[str] = job["paths"]

    def get(index: int) -> None:
        response = client.get(paths[index % len(paths)], headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"{response.status_code} {response.get_data(as_text=True)}")

    for index in range(WARM_UP):
        get(index)
    if count:
        for index in range(count):
            get(index)
        return
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    engine = app.extensions["clinic.database"].writer
    event.listen(engine, "before_cursor_execute", count)
    get(0)
    event.remove(engine, "before_cursor_execute", count)
    profiler = cProfile.Profile()
    profiler.enable()
    get(1)
    profiler.disable()
    calls = pstats.Stats(profiler).total_calls  # type: ignore[attr-defined]
    if profile:  # CPU time, not time waiting for the database
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for index in range(1000):
            get(index)
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(profile)
        stats.sort_stats("cumtime").print_stats(profile)
    _say({"calls": calls, "statements": statements})
    done = 0
    for line in sys.stdin:
        if line.strip() != "run":
            break
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        for index in range(BATCH):
            get(done + index)
        done += BATCH
        _say({"cpu": time.process_time() - cpu_started,
              "wall": time.perf_counter() - wall_started})
    app.extensions["clinic.database"].dispose()


def _say(message: dict[str, float]) -> None:
    print(json.dumps(message), flush=True)


def _hear(stream: IO[str]) -> dict[str, float]:
    line = stream.readline()
    if not line:
        raise RuntimeError("a measured process ended early")
    return json.loads(line)


def _seed(url: str, slots: bool) -> tuple[str, list[str]]:
    """A clinic, a staff key and the paths to GET: bookings made through the service, or
    one slot search (repeated: answered from the cache after the first)."""
    database = Database.connect(url)
    try:
        clinic = seed_clinic(database, providers=20, patients=BOOKINGS, chairs=0,
                             hours=video_hours)
        authorization = f"Bearer {issue_key(database)}"
    finally:
        database.dispose()
    os.environ.update(harness.BENCH_RATE_LIMITS)
    app = create_app({"DATABASE_URL": url})
    client = app.test_client()
    try:
        if slots:
            return authorization, ["/api/v1/slots?" + urlencode({  # as bench/slots.py asks
                "service_type": str(clinic.service_types["consultation"].id),
                "start": clinic.first_day.isoformat(),
                "end": (clinic.first_day + timedelta(days=6)).isoformat(), "limit": 200})]
        paths = []
        for body in booking_bodies(clinic, BOOKINGS):
            response = client.post("/api/v1/bookings", data=body, headers={
                "Authorization": authorization, "Content-Type": "application/json"})
            assert response.status_code == 201, response.get_json()
            paths.append(f"/api/v1/bookings/{response.get_json()['id']}")
        return authorization, paths
    finally:
        app.extensions["clinic.database"].dispose()


def _worker_environment(tree: Path) -> dict[str, str]:
    """The measured process's: the tree's code, metrics in files as under gunicorn (set
    before prometheus-client is imported), the bench's rate limits, no Redis."""
    environment = {**os.environ, **harness.BENCH_RATE_LIMITS, "PYTHONPATH": str(tree),
                   "PYTHONDONTWRITEBYTECODE": "1",
                   "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="read_ab_metrics_")}
    environment.pop("REDIS_URL", None)
    return environment


def _instructions(trees: dict[str, Path], job_file: str) -> dict[str, float]:
    """Instructions per request of each tree's process (see the module's docstring); the
    runs go side by side (their counts do not depend on the load)."""
    runs = {(name, count): subprocess.Popen(
        [*harness.CACHEGRIND, sys.executable, str(Path(__file__).resolve()), "--worker", job_file,
         "--count", str(count)],
        env={**_worker_environment(tree), "PYTHONMALLOC": "malloc",
             "API_KEY_CACHE_SECONDS": "100000"},
        cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for name, tree in trees.items() for count in COUNTED}
    counted = harness.counted_instructions(runs)
    per_request = {}
    for name in trees:
        per_request[name] = ((counted[name, COUNTED[1]] - counted[name, COUNTED[0]])
                             / (COUNTED[1] - COUNTED[0]))
        print(f"{name}: {per_request[name] / 1e6:.3f}M instructions per request", flush=True)
    return per_request


def _measure(trees: dict[str, Path], job_file: str, batches: int, profile: int
             ) -> dict[str, list[dict[str, float]]]:
    workers = {name: subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--worker", job_file,
         "--profile", str(profile if name == "this" else 0)],
        env=_worker_environment(tree), cwd=tree, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True) for name, tree in trees.items()}
    try:
        for name, worker in workers.items():
            print(f"{name}: {_hear(worker.stdout)}", flush=True)  # type: ignore[arg-type]
        batches_of: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for number in range(batches):
            order = list(workers.items())
            if number % 2:
                order.reverse()
            for name, worker in order:
                worker.stdin.write("run\n")  # type: ignore[union-attr]
                worker.stdin.flush()  # type: ignore[union-attr]
                batches_of[name].append(_hear(worker.stdout))  # type: ignore[arg-type]
        return batches_of
    finally:
        for worker in workers.values():
            worker.stdin.close()  # type: ignore[union-attr]
            worker.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.read_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", nargs="?", help="the tree to compare against")
    parser.add_argument("--batches", type=int, default=BATCHES)
    parser.add_argument("--slots", action="store_true")
    parser.add_argument("--profile", type=int, default=0)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a JSON file: url, key, paths
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.profile, args.count)
        return 0
    trees = {"base": Path(args.base).resolve(), "this": harness.ROOT} if args.base else {
        "this": harness.ROOT}
    with harness.fresh_database("postgresql") as url:
        authorization, paths = _seed(url, args.slots)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as job:
            json.dump({"url": url, "authorization": authorization, "paths": paths}, job)
        try:
            if args.instructions:
                counted = _instructions(trees, job.name)
                if "base" in counted:
                    print(f"instructions this / base: {counted['this'] / counted['base']:.3f}")
                return 0
            batches_of = _measure(trees, job.name, args.batches, args.profile)
        finally:
            os.unlink(job.name)
    for name, batches in batches_of.items():
        print(f"{name}: CPU {statistics.median(b['cpu'] for b in batches) / BATCH * 1e3:.3f} "
              f"ms, wall {statistics.median(b['wall'] for b in batches) / BATCH * 1e3:.3f} ms "
              f"per request (medians of {len(batches)} batches of {BATCH})")
    if "base" in batches_of:
        ratios = [this["cpu"] / base["cpu"]
                  for base, this in zip(batches_of["base"], batches_of["this"], strict=True)]
        print(f"CPU this / base: median of paired batches {statistics.median(ratios):.3f} "
              f"(quartiles {' '.join(f'{q:.3f}' for q in statistics.quantiles(ratios, n=4))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
