"""Paired in-process A/B of POST /api/v1/bookings: CPU per booking of two source trees.

One database (PostgreSQL by default), seeded once; each run is a child process importing
``service`` from one tree (``PYTHONPATH``) that posts bookings of distinct slots through the
Flask test client and reports CPU (``time.process_time``) per POST, statements per request
(a plain booking, one with an ``Idempotency-Key``, a 409) and, with ``--profile``, the
cumulative CPU time and calls per POST of the functions named in ``FOCUS``. Runs alternate
between the trees (the order flips every round), each on days of its own, so both see the
same calendar.

``python -m bench.booking_ab --base /tmp/base_tree`` (the base: e.g. ``git archive main``
unpacked; this tree is the other side). Nothing is asserted: figures are printed.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from sqlalchemy import event

from bench import harness
from bench.clinic import issue_key, seed_clinic
from bench.writes import video_hours
from service.app import create_app
from service.db import Database

THIS_TREE = Path(__file__).resolve().parent.parent
SLOTS_A_DAY = 5  # as bench/writes.py: 08:00 to 16:00 every two hours
PROVIDERS = 40  # 200 bookings a day: room for many runs within the 90-day horizon
PATIENTS = SLOTS_A_DAY * PROVIDERS
STATEMENT_SAMPLES = 5
# (file suffix, function name): the parts of a POST the profile figures follow.
FOCUS = (("messagebus.py", "run"), ("placement.py", "place"),
         ("placement.py", "load_visit_schedule"),
         ("reminders/services.py", "plan_new_booking"),
         ("webhooks/services.py", "enqueue_booking_change"),
         ("writeback.py", "enqueue_writes"), ("calendar/sync.py", "number_changes"),
         ("uow.py", "commit"), ("bookings/services.py", "book"))


# The child: one run of one tree ------------------------------------------------------------


def child(plan_path: Path) -> None:
    """Post the plan's bookings with the tree on ``PYTHONPATH``; print figures as JSON."""
    plan = json.loads(plan_path.read_text())
    os.environ.update(plan["env"])
    app = create_app({"DATABASE_URL": plan["url"]})
    database = app.extensions["clinic.database"]
    counts = {"statements": 0}

    def statement(*_: object) -> None:
        counts["statements"] += 1

    for engine in {id(e): e for e in (database.writer, database.reader)}.values():
        event.listen(engine, "before_cursor_execute", statement)
    client = app.test_client()
    headers = {"Authorization": plan["authorization"]}

    def post(body: dict[str, str], extra: dict[str, str] | None = None) -> int:
        return client.post("/api/v1/bookings", json=body,
                           headers={**headers, **(extra or {})}).status_code

    for body in plan["warm"]:
        if post(body) != 201:
            raise SystemExit(f"warm-up booking refused: {body}")
    profile = cProfile.Profile(time.process_time) if plan["profile"] else None
    cpu: list[float] = []
    seen: list[int] = []
    for body in plan["measured"]:
        if profile is not None:
            profile.enable()
        began = time.process_time()
        status = post(body)
        cpu.append(time.process_time() - began)
        if profile is not None:
            profile.disable()
        seen.append(status)
    if profile is not None:
        profile.dump_stats(plan["profile"])
    statements: dict[str, list[int]] = {"plain": [], "idempotency_key": [], "conflict": []}
    for index, (body, keyed) in enumerate(zip(plan["statement_bodies"],
                                              plan["keyed_bodies"], strict=True)):
        counts["statements"] = 0
        assert post(body) == 201
        statements["plain"].append(counts["statements"])
        counts["statements"] = 0
        assert post(keyed, {"Idempotency-Key": f"ab-{plan['run']}-{index}"}) == 201
        statements["idempotency_key"].append(counts["statements"])
        counts["statements"] = 0
        assert post({**body, "patient_id": plan["other_patient"]}) == 409
        statements["conflict"].append(counts["statements"])
    database.dispose()
    print(json.dumps({
        "service": sys.modules["service"].__file__,
        "statuses": {str(s): seen.count(s) for s in set(seen)},
        "cpu_ms": [c * 1000 for c in cpu],
        "statements": {k: statistics.median(v) for k, v in statements.items()}}))


# The parent: seed once, alternate the trees ------------------------------------------------


def run(base: Path, this: Path, *, rounds: int, count: int, warm: int, kind: str,
        profile: bool, keep: Path | None = None) -> None:
    trees = {"base": base, "this": this}
    per_run = warm + count + 2 * STATEMENT_SAMPLES
    with harness.fresh_database(kind) as url:
        database = Database.connect(url)
        try:
            clinic = seed_clinic(database, providers=PROVIDERS, patients=PATIENTS, chairs=0,
                                 hours=video_hours)
            authorization = f"Bearer {issue_key(database)}"
        finally:
            database.dispose()
        consultation = str(clinic.service_types["consultation"].id)

        def every_slot() -> Iterator[dict[str, str]]:
            """Distinct slots, day by day from the first (one patient per start)."""
            for day in itertools.count(1):
                for slot in range(SLOTS_A_DAY):
                    start = clinic.local_iso(clinic.at(clinic.first_day + timedelta(days=day),
                                                       8 * 60 + 120 * slot))
                    for index, provider_id in enumerate(clinic.provider_ids):
                        patient = clinic.patient_ids[(slot * PROVIDERS + index) % PATIENTS]
                        yield {"patient_id": str(patient), "provider_id": str(provider_id),
                               "service_type_id": consultation,
                               "location_id": str(clinic.virtual_id), "start": start,
                               "patient_state": "AZ"}

        slots = every_slot()

        figures: dict[str, list[float]] = {name: [] for name in trees}
        medians: dict[str, list[float]] = {name: [] for name in trees}
        lows: dict[str, list[float]] = {name: [] for name in trees}
        statements: dict[str, dict[str, float]] = {}
        profiles: dict[str, list[str]] = {name: [] for name in trees}
        run_index = 0
        with tempfile.TemporaryDirectory(prefix="booking_ab_") as folder:
            for round_ in range(rounds):
                order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
                for name in order:
                    made = list(itertools.islice(slots, per_run))
                    measured = made[warm:warm + count]
                    tail = made[warm + count:]
                    plan_path = Path(folder) / f"plan_{run_index}.json"
                    profile_path = (str(Path(keep or folder) / f"{name}_{run_index}.prof")
                                    if profile else "")
                    plan_path.write_text(json.dumps({
                        "url": url, "authorization": authorization, "run": run_index,
                        "env": harness.BENCH_RATE_LIMITS, "warm": made[:warm],
                        "measured": measured, "statement_bodies": tail[:STATEMENT_SAMPLES],
                        "keyed_bodies": tail[STATEMENT_SAMPLES:],
                        "other_patient": str(clinic.patient_ids[-1]),
                        "profile": profile_path}))
                    env = {**os.environ, "PYTHONPATH": str(trees[name]),
                           "PYTHONDONTWRITEBYTECODE": "1"}
                    done = subprocess.run([sys.executable, str(Path(__file__).resolve()),
                                           "--child", str(plan_path)], env=env,
                                          cwd=tempfile.gettempdir(), capture_output=True,
                                          text=True, check=False)
                    if done.returncode != 0:
                        raise SystemExit(f"{name} run failed:\n{done.stderr[-4000:]}")
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    if result["statuses"] != {"201": count}:
                        raise SystemExit(f"{name}: unexpected answers {result['statuses']}")
                    figures[name] += result["cpu_ms"]
                    medians[name].append(statistics.median(result["cpu_ms"]))
                    lows[name].append(_low(result["cpu_ms"]))
                    statements[name] = result["statements"]
                    if profile:
                        profiles[name].append(profile_path)
                    print(f"round {round_} {name:<4} ({result['service']}): CPU per POST "
                          f"median {statistics.median(result['cpu_ms']):.3f} ms, p10 "
                          f"{_low(result['cpu_ms']):.3f} ms", flush=True)
                    run_index += 1
            print(f"== POST /bookings, in-process, {kind}, {rounds} rounds x {count} POSTs "
                  "per tree ==")
            for name in trees:
                print(f"  {name:<4} {trees[name]}: CPU per POST median of all "
                      f"{statistics.median(figures[name]):.3f} ms, mean "
                      f"{statistics.fmean(figures[name]):.3f} ms, p10 {_low(figures[name]):.3f} "
                      "ms; per-run medians " + ", ".join(f"{m:.3f}" for m in medians[name]))
                print(f"       statements per request: {statements[name]}")
            ratio = statistics.median(figures["this"]) / statistics.median(figures["base"])
            print(f"  this / base, medians of all: {ratio:.3f}, p10 of all: "
                  f"{_low(figures['this']) / _low(figures['base']):.3f}")
            for label, values in (("run medians", medians), ("run p10", lows)):
                paired = sorted(t / b for t, b in zip(values["this"], values["base"]))
                print(f"  this / base per round ({label}, sorted): "
                      f"{', '.join(f'{r:.3f}' for r in paired)}; median "
                      f"{statistics.median(paired):.3f}")
            if profile:
                _print_profiles(profiles, count)


def _low(values: list[float]) -> float:
    """The 10th percentile: what a POST costs when nothing else runs on its core (the
    machine is shared, so the median drifts with the load)."""
    return statistics.quantiles(values, n=10)[0]


def _print_profiles(profiles: dict[str, list[str]], count: int) -> None:
    print("  profile, per POST (cumulative ms, calls):")
    loaded = {name: pstats.Stats(*paths) for name, paths in profiles.items()}
    runs = {name: len(paths) for name, paths in profiles.items()}
    for name, stats in loaded.items():
        calls = sum(entry[1] for entry in stats.stats.values())  # type: ignore[attr-defined]
        print(f"    {name:<4} function calls per POST: {calls / (count * runs[name]):.0f}")
    for suffix, function in FOCUS:
        line = f"    {suffix}:{function:<24}"
        for name, stats in loaded.items():
            found = [(value[1], value[3]) for (path, _, func), value in
                     stats.stats.items()  # type: ignore[attr-defined]
                     if path.endswith(suffix) and func == function]
            calls = sum(f[0] for f in found) / (count * runs[name])
            cumulative = sum(f[1] for f in found) * 1000 / (count * runs[name])
            line += f"  {name} {cumulative:.3f} ms ({calls:.1f} calls)"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.booking_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, help="the other source tree (its root)")
    parser.add_argument("--this", type=Path, default=THIS_TREE,
                        help="the tree compared with the base (default: this one)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--count", type=int, default=300, help="measured POSTs per run")
    parser.add_argument("--warm", type=int, default=40)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the measured POSTs (slower; time the runs without it)")
    parser.add_argument("--keep", type=Path, help="a folder to keep the profiles in")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child)
        return 0
    if args.base is None:
        parser.error("--base is required")
    run(args.base.resolve(), args.this.resolve(), rounds=args.rounds, count=args.count,
        warm=args.warm, kind=args.database, profile=args.profile, keep=args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
