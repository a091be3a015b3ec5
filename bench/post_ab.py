"""POST /bookings CPU per request, two checkouts of the code paired in one run (A/B).

A fresh PostgreSQL (or SQLite) clinic is seeded once (bench/writes.py's calendar: video
hours, distinct slots and patients, so nothing conflicts); then each round runs the same
number of POSTs in-process (Flask test client, the service's own engines) in a child process
of each checkout, alternating which goes first. A child prints its CPU per POST
(``time.process_time``: the client side, not the database server), its wall time and its
statements per POST; the parent prints each round and the medians.

``python -m bench.post_ab --base /path/to/other/checkout`` (``--profile``: then one more
child per checkout under cProfile: its Python calls per POST, deterministic, and its top
functions by cumulative CPU time on stderr; ``--instructions``: instead of timing, the
instructions a POST costs each checkout's process (user space, the database server aside),
unmoved by the machine's load: valgrind's cachegrind over two children of different lengths
(``COUNTED`` POSTs), the difference over the difference in POSTs, as bench/read_ab.py does)
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event

from bench import harness
from bench.clinic import issue_key, seed_clinic
from bench.writes import PROVIDERS, booking_bodies, video_hours
from service.app import create_app  # the checkout's own: a child runs in its directory
from service.db import Database

WARM_UP = 30
COUNTED = (50, 250)  # POSTs of the two children whose instructions are counted


def child(url: str, bodies_file: str, first: int, count: int, profile: bool) -> None:
    """Run ``count`` POSTs (after a warm-up) from ``first`` in the bodies file; print the
    figures as one JSON line."""
    data = json.loads(Path(bodies_file).read_text())
    bodies = [body.encode() for body in data["bodies"][first:first + WARM_UP + count]]
    headers = {"Authorization": data["authorization"], "Content-Type": "application/json"}
    app = create_app({"DATABASE_URL": url})
    gc.collect()  # as gunicorn.conf.py's post_worker_init does in a worker
    gc.freeze()
    database = app.extensions["clinic.database"]
    statements = [0]
    event.listen(database.writer, "before_cursor_execute",
                 lambda *_: statements.__setitem__(0, statements[0] + 1))
    client = app.test_client()
    for body in bodies[:WARM_UP]:
        response = client.post("/api/v1/bookings", data=body, headers=headers)
        assert response.status_code == 201, response.get_data(as_text=True)
    # CPU time, not wall time (waits on the database are not this process's cost).
    profiler = cProfile.Profile(time.process_time) if profile else None
    statements[0] = 0
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    for body in bodies[WARM_UP:]:
        response = client.post("/api/v1/bookings", data=body, headers=headers)
        assert response.status_code == 201, response.get_data(as_text=True)
    if profiler is not None:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    database.dispose()
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
        stats.print_stats(80)
        stats.print_callees(r"services.py:\d+\((book|_parties|_record)\)")
        print(out.getvalue(), file=sys.stderr)
    print(json.dumps({"cpu_ms": 1000 * cpu / count, "wall_ms": 1000 * wall / count,
                      "statements": statements[0] / count,
                      "calls": stats.total_calls / count if profiler is not None else None}))


def run_child(checkout: Path, url: str, bodies_file: str, first: int, count: int,
              profile: bool) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.post_ab", "--child", url, bodies_file, str(first),
         str(count), *(["--profile"] if profile else [])],
        cwd=checkout, env={**os.environ, **harness.BENCH_RATE_LIMITS}, capture_output=True,
        text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{checkout}: {done.stderr[-3000:]}")
    if profile:
        print(f"---- profile of {checkout}\n{done.stderr}", file=sys.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def instructions(checkouts: dict[str, Path], url: str, bodies_file: str, first: int
                 ) -> dict[str, float]:
    """Instructions per POST of each checkout (see the module's docstring); the children go
    side by side (their counts do not depend on the load)."""
    runs = {}
    for name, checkout in checkouts.items():
        for count in COUNTED:
            runs[name, count] = subprocess.Popen(
                [*harness.CACHEGRIND, sys.executable, "-m", "bench.post_ab",
                 "--child", url, bodies_file, str(first), str(count)],
                cwd=checkout, env={**os.environ, **harness.BENCH_RATE_LIMITS,
                                   "PYTHONMALLOC": "malloc"},
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            first += WARM_UP + count
    counted = harness.counted_instructions(runs)
    per_post = {name: (counted[name, COUNTED[1]] - counted[name, COUNTED[0]])
                / (COUNTED[1] - COUNTED[0]) for name in checkouts}
    for name, value in per_post.items():
        print(f"{name}: {value / 1e6:.3f}M instructions per POST")
    return per_post


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.post_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=4, metavar=("URL", "BODIES", "FIRST", "COUNT"))
    parser.add_argument("--base", type=Path, help="the other checkout (A)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=200, help="POSTs per child")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--instructions", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        url, bodies_file, first, count = args.child
        child(url, bodies_file, int(first), int(count), args.profile)
        return 0
    if args.base is None:
        parser.error("--base is required")
    here = harness.ROOT
    # The children of both checkouts run this very script (copied into the other's bench/).
    copy = args.base / "bench" / "post_ab.py"
    if not copy.exists() or copy.read_bytes() != Path(__file__).read_bytes():
        shutil.copy(Path(__file__), copy)
    checkouts = {"A (base)": args.base.resolve(), "B (this)": here}
    per_child = WARM_UP + args.requests
    total = per_child * 2 * args.rounds + (2 * per_child if args.profile else 0)
    if args.instructions:
        total = 2 * (2 * WARM_UP + sum(COUNTED))
    harness.exit_on_sigterm()
    with harness.fresh_database(args.database) as url:
        database = Database.connect(url)
        try:
            clinic = seed_clinic(database, providers=PROVIDERS, patients=total, chairs=0,
                                 hours=video_hours)
            authorization = f"Bearer {issue_key(database)}"
            bodies = [b.decode() for b in booking_bodies(clinic, total)]
        finally:
            database.dispose()
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump({"authorization": authorization, "bodies": bodies}, handle)
        figures: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
        first = 0
        if args.instructions:
            try:
                counted = instructions(checkouts, url, handle.name, first)
            finally:
                Path(handle.name).unlink()
            base, this = counted.values()
            print(f"B / A instructions per POST: {this / base:.3f}")
            return 0
        try:
            for index in range(args.rounds):
                order = list(checkouts.items())
                if index % 2:
                    order.reverse()
                for name, checkout in order:
                    result = run_child(checkout, url, handle.name, first, args.requests, False)
                    first += per_child
                    figures[name].append(result)
                    print(f"round {index + 1} {name}: {result['cpu_ms']:.3f} ms CPU, "
                          f"{result['wall_ms']:.3f} ms wall, "
                          f"{result['statements']:g} statements per POST", flush=True)
            if args.profile:
                for name, checkout in checkouts.items():
                    result = run_child(checkout, url, handle.name, first, args.requests, True)
                    first += per_child
                    print(f"{name}: {result['calls']:.0f} Python calls per POST (cProfile)")
        finally:
            Path(handle.name).unlink()
    cpu = {name: statistics.median(r["cpu_ms"] for r in runs) for name, runs in figures.items()}
    for name, runs in figures.items():
        print(f"{name}: median CPU {cpu[name]:.3f} ms, wall "
              f"{statistics.median(r['wall_ms'] for r in runs):.3f} ms per POST "
              f"({args.rounds} x {args.requests} POSTs, {args.database})")
    base, this = cpu.values()
    pairs = [b["cpu_ms"] / a["cpu_ms"] for a, b in zip(*figures.values(), strict=True)]
    print(f"B / A CPU: ratio of the medians {this / base:.3f} ({this - base:+.3f} ms per POST), "
          f"median of the rounds' ratios {statistics.median(pairs):.3f} "
          f"(B lower in {sum(p < 1 for p in pairs)} of {len(pairs)} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
