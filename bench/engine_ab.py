"""``python -m bench.engine_ab``: the slot engine alone, data preloaded (CPU only), the
previous engine (tests/domain/previous_engine.py: every free start of every pair, then cut at
the limit) against the current one (lazy starts merged, stopped at the limit; working
windows once per shared weekly pattern), interleaved rep by rep in one process, medians.
50 providers x 30 days and x 7 days, limit 200, on the slots benchmark's calendar."""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import sys
import time
from datetime import timedelta

from bench import harness
from bench.slots import DAYS, HTTP_DAYS, HTTP_LIMIT, MIDNIGHT, seed
from service.db import Database, utcnow
from service.domain.availability import search
from service.domain.clinic.models import ServiceType
from service.domain.time import local_to_utc
from tests.domain import previous_engine

REPS = 30


def cold(schedule: search.Schedule) -> None:
    """Forget what the schedule's engine has worked out (its memos), keep what was loaded."""
    for memo in dataclasses.fields(schedule):
        if not memo.init:
            getattr(schedule, memo.name).clear()


def main() -> int:
    with harness.fresh_database("postgresql") as url:
        database = Database.connect(url)
        try:
            clinic = seed(database)
            for service in ("consultation", "iv-infusion"):
                for days in (DAYS, HTTP_DAYS):
                    start = local_to_utc(clinic.first_day, MIDNIGHT, clinic.zone)
                    end = local_to_utc(clinic.first_day + timedelta(days=days), MIDNIGHT,
                                       clinic.zone)
                    with database.read_sessions() as session:
                        service_type = session.get(ServiceType,
                                                   clinic.service_types[service].id)
                        providers, locations = search.candidates(session, service_type)
                        schedule = search.load_schedule(
                            session, service_type=service_type, providers=providers,
                            locations=locations, start=start, end=end)
                        earliest, latest = search.booking_window(service_type, utcnow())
                        earliest, latest = max(earliest, start), min(
                            latest, end - timedelta(microseconds=1))
                        old_times, new_times = [], []
                        for _ in range(REPS):
                            began = time.perf_counter()
                            old, _cut = previous_engine.search(
                                schedule, providers, locations, earliest=earliest,
                                latest=latest, limit=HTTP_LIMIT)
                            old_times.append(time.perf_counter() - began)
                            cold(schedule)
                            began = time.perf_counter()
                            new = list(itertools.islice(search.first_starts(
                                schedule, providers, locations, earliest=earliest,
                                latest=latest), HTTP_LIMIT))
                            new_times.append(time.perf_counter() - began)
                            assert new == old
                    o, n = statistics.median(old_times), statistics.median(new_times)
                    print(f"{len(providers)} providers x {days} days, {service:<13} previous "
                          f"{o * 1000:7.2f} ms  now {n * 1000:7.2f} ms  ratio {n / o:.2f} "
                          f"(medians of {REPS} interleaved)", flush=True)
        finally:
            database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
