"""Paired in-process A/B of ``placement.place``: CPU for one start, this tree against the
``placement.py`` of another tree (loaded beside it, on this tree's other modules).

PostgreSQL, the bench calendar of ``bench/writes.py`` (20 providers on video, 250 bookings
through the API); the start is free with 12 busy intervals of its provider near it. Both
versions are called in turns (the order flips each round) in one process, on one session.
Prints the CPU per call of each round, and whether both load the same schedule (busy time
compared as sets: its order is the database's).

``python -m bench.placement_ab --base /tmp/base_tree``
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bench import harness
from bench.clinic import issue_key, seed_clinic
from bench.writes import booking_bodies, video_hours
from service.app import create_app
from service.db import Database, utcnow
from service.domain.availability import placement, search
from service.domain.clinic.models import Location, ServiceType
from service.domain.providers.models import Provider

BOOKINGS = 250  # days 1-2 full, day 3 half: provider 15 is free at 12:00 on day 3


def _other(base: Path):  # type: ignore[no-untyped-def]
    path = base / "service" / "domain" / "availability" / "placement.py"
    spec = importlib.util.spec_from_file_location("base_placement", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _same(a: search.Schedule, b: search.Schedule) -> bool:
    def plain(schedule: search.Schedule) -> dict[str, object]:
        values = {f.name: getattr(schedule, f.name) for f in dataclasses.fields(schedule)}
        values["provider_busy"] = {k: sorted(v) for k, v in schedule.provider_busy.items()}
        values["patient_busy"] = sorted(schedule.patient_busy)
        return values

    return plain(a) == plain(b)


def run(base: Path, *, calls: int, rounds: int) -> None:
    versions = {"base": _other(base), "this": placement}
    with harness.fresh_database("postgresql") as url:
        database = Database.connect(url)
        try:
            clinic = seed_clinic(database, providers=20, patients=BOOKINGS + 1, chairs=0,
                                 hours=video_hours)
            authorization = f"Bearer {issue_key(database)}"
        finally:
            database.dispose()
        app = create_app({"DATABASE_URL": url})
        client = app.test_client()
        for body in booking_bodies(clinic, BOOKINGS):
            answer = client.post("/api/v1/bookings", json=json.loads(body),
                                 headers={"Authorization": authorization})
            assert answer.status_code == 201, answer.get_json()
        database = app.extensions["clinic.database"]
        try:
            with database.write_sessions() as session, session.begin():
                provider = session.scalar(select(Provider).where(
                    Provider.id == clinic.provider_ids[15]).options(
                    selectinload(Provider.licenses)))
                visit = placement.Visit(
                    service_type=session.get(ServiceType,
                                             clinic.service_types["consultation"].id),
                    provider=provider, location=session.get(Location, clinic.virtual_id),
                    patient_id=clinic.patient_ids[-1], patient_state="AZ")  # no booking
                start = clinic.at(clinic.first_day + timedelta(days=2), 12 * 60)
                now = utcnow()
                window = {"start": start - timedelta(days=1), "end": start + timedelta(days=1)}
                loaded = {name: module.load_visit_schedule(session, visit, **window)
                          for name, module in versions.items()}
                busy = len(loaded["this"].provider_busy[provider.id])
                print(f"same schedule: {_same(loaded['base'], loaded['this'])}; busy "
                      f"intervals of the provider: {busy}")
                cpu: dict[str, list[float]] = {name: [] for name in versions}
                for round_ in range(rounds):
                    order = list(versions) if round_ % 2 == 0 else list(reversed(versions))
                    for name in order:
                        place = versions[name].place
                        began = time.process_time()
                        for _ in range(calls):
                            place(session, visit, start, now=now)
                        cpu[name].append((time.process_time() - began) / calls * 1000)
        finally:
            database.dispose()
    print(f"== placement.place, one start, {rounds} rounds x {calls} calls ==")
    for name, values in cpu.items():
        print(f"  {name:<4} CPU per call: min {min(values):.4f} ms, median "
              f"{statistics.median(values):.4f} ms; rounds "
              + ", ".join(f"{v:.4f}" for v in values))
    paired = sorted(t / b for t, b in zip(cpu["this"], cpu["base"]))
    print(f"  this / base per round (sorted): {', '.join(f'{r:.3f}' for r in paired)}; "
          f"median {statistics.median(paired):.3f}; min / min "
          f"{min(cpu['this']) / min(cpu['base']):.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.placement_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="the other tree (its root)")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    run(args.base.resolve(), calls=args.calls, rounds=args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
