"""A repeated (cached) slot search, paired A/B: CPU per hit of two source trees, alternating.

The bench calendar (``bench.slots``: 50 providers, 12,000 bookings, PostgreSQL) is seeded
once; then, for each round, each tree serves the same ``GET /api/v1/slots`` (one service
type, all providers, 7 days, limit 200) many times in a fresh process of its own: the app
made by ``create_app`` called straight as WSGI (no test client, no network), with the memory
store or Redis, its long-lived objects frozen (``gc.freeze``) and its metrics in files, as a
gunicorn worker has them. Printed per tree: CPU (``time.process_time``) and wall per hit,
each round's figures and the median; the answer's status, headers (the request id and the
limit's remaining count by name only) and body are checked to be the same in both trees.

``python -m bench.hit_ab --base /tmp/base_tree [--redis redis://127.0.0.1:6379/0]
[--rounds 5] [--iterations 2000] [--profile]``: the base tree is a checkout of the code to
compare against (``git archive main | tar -x -C /tmp/base_tree``); this tree is the other.
``--profile`` prints, per tree, a cProfile of the hits (calls and the top functions). Redis is
never flushed: the calendar is new, so are its keys.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
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
from typing import Any
from urllib.parse import urlencode

from werkzeug.test import EnvironBuilder

from bench import harness
from bench import slots as slot_bench
from bench.clinic import issue_key
from service.app import create_app
from service.db import Database
from service.domain.availability import cache

HERE = Path(__file__).resolve().parent.parent
# Values that differ from request to request (the remaining count of a limit kept in Redis
# goes on from one process to the next): compared by name only.
VARYING_HEADERS = {"x-request-id", "ratelimit"}


def _one(args: argparse.Namespace) -> None:
    """Serve the hit many times in this process and print JSON (the tree measured is the one
    on ``PYTHONPATH``: this script is run by its path, ``service`` imported from there)."""
    config: dict[str, Any] = {"DATABASE_URL": args.url, "REDIS_URL": args.redis or None}
    app = create_app(config)
    environ = EnvironBuilder(path=args.path.split("?")[0], query_string=args.path.split("?")[1],
                             headers={"Authorization": args.authorization},
                             environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
        seen["status"], seen["headers"] = status, headers

    def hit() -> bytes:
        body = b"".join(app(dict(environ, **{"wsgi.input": io.BytesIO()}), start_response))
        if not seen["status"].startswith("200"):
            raise RuntimeError(f"{seen['status']}: {body[:300]!r}")
        return body

    for _ in range(50):
        body = hit()
    gc.collect()
    gc.freeze()  # as gunicorn.conf.py's post_worker_init does
    headers = sorted((k, "" if k.lower() in VARYING_HEADERS else v) for k, v in seen["headers"])
    digest = hashlib.sha256(repr((seen["status"], headers, body)).encode()).hexdigest()
    result: dict[str, Any] = {"digest": digest, "bytes": len(body)}
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.iterations):
            hit()
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        result["calls_per_hit"] = stats.total_calls / args.iterations  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(args.top)
        result["profile"] = out.getvalue()
    else:
        hits = cache.HITS._value.get()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.iterations):
            hit()
        result["cpu_ms"] = (time.process_time() - cpu) * 1000 / args.iterations
        result["wall_ms"] = (time.perf_counter() - wall) * 1000 / args.iterations
        result["hits"] = (cache.HITS._value.get() - hits) / args.iterations
    app.extensions["clinic.database"].dispose()
    print(json.dumps(result))


def _run_tree(tree: Path, args: argparse.Namespace, url: str, path: str,
              authorization: str, profile: bool) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", "--url", url,
               "--path", path, "--authorization", authorization,
               "--iterations", str(args.iterations), "--top", str(args.top)]
    if args.redis:
        command += ["--redis", args.redis]
    if profile:
        command.append("--profile")
    with tempfile.TemporaryDirectory(prefix="hit_ab_metrics_") as metrics:
        # As under gunicorn: the limits far above the load, metrics in files per process.
        env = {**os.environ, **harness.BENCH_RATE_LIMITS, "PYTHONPATH": str(tree),
               "PROMETHEUS_MULTIPROC_DIR": metrics}
        done = subprocess.run(command, cwd=tree, capture_output=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{tree}: {done.stderr.decode()[-3000:]}")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def _compare(args: argparse.Namespace) -> None:
    trees = {"base": Path(args.base).resolve(), "this": HERE}
    with harness.fresh_database("postgresql") as url:
        database = Database.connect(url)
        try:
            clinic = slot_bench.seed(database)
            authorization = f"Bearer {issue_key(database)}"
        finally:
            database.dispose()
        path = "/api/v1/slots?" + urlencode({
            "service_type": str(clinic.service_types["consultation"].id),
            "start": clinic.first_day.isoformat(),
            "end": (clinic.first_day + timedelta(days=slot_bench.HTTP_DAYS - 1)).isoformat(),
            "limit": slot_bench.HTTP_LIMIT})
        figures: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for round_ in range(args.rounds):
            order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            for name in order:
                figures[name].append(_run_tree(trees[name], args, url, path, authorization,
                                               profile=False))
            print(f"round {round_ + 1}: " + "  ".join(
                f"{name} {figures[name][-1]['cpu_ms']:.3f} ms CPU "
                f"({figures[name][-1]['wall_ms']:.3f} wall, "
                f"{figures[name][-1]['hits']:.0%} hits)" for name in trees), flush=True)
        digests = {figures[name][0]["digest"] for name in trees}
        print("same status, headers and body in both trees:", len(digests) == 1,
              f"({figures['this'][0]['bytes']} bytes)")
        medians = {name: statistics.median(f["cpu_ms"] for f in figures[name]) for name in trees}
        for name in trees:
            print(f"{name}: median {medians[name]:.3f} ms CPU per hit, wall "
                  f"{statistics.median(f['wall_ms'] for f in figures[name]):.3f} ms")
        print(f"this / base CPU: {medians['this'] / medians['base']:.3f}")
        if args.profile:
            for name in trees:
                profiled = _run_tree(trees[name], args, url, path, authorization, profile=True)
                print(f"== {name}: {profiled['calls_per_hit']:.0f} Python calls per hit ==")
                print(profiled["profile"])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hit_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="the source tree to compare this one against")
    parser.add_argument("--redis", default="", help="Redis URL (default: the memory store)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--authorization", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args)
    else:
        if not args.base:
            parser.error("--base is required")
        _compare(args)


if __name__ == "__main__":
    main()
