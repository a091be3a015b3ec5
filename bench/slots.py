"""Slot search: 50 providers x 30 days with about 12,000 existing bookings, on PostgreSQL.

(a) In-process: ``search.search`` timed many times, split into loading (``candidates`` and
    ``load_schedule``: the queries and building the Schedule) and computing (everything
    else: working windows, licenses, the slot engine, sorting). Target: computing <= 5 ms.
    The realistic query is timed once more after ``gc.freeze()``, to show what full
    garbage collections over the process's long-lived objects add to the tail.
(b) Over HTTP: gunicorn (2 sync workers) serving ``GET /api/v1/slots`` for one service type,
    all providers, 7 days, limit 200, and, in the same run, a floor app served by gunicorn
    with the same flags that returns the captured bytes of that very response. Target: the
    p95 of the real endpoint <= 2x the p95 of the floor.
(c) Where that request's time goes: the same GET served in-process by the Flask test
    client, one at a time, split into authentication, loading, computing (the engine:
    span_keys, and search.py's glue) and the rest (parsing, serialising, JSON).

``python -m bench.slots [--profile]``: ``--profile`` adds a cProfile of the computing part.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import inspect
import io
import json
import pstats
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from datetime import time as wall_clock
from pathlib import Path
from types import ModuleType
from urllib.parse import urlencode

from bench import harness
from bench.clinic import (
    CLINIC_HOURS,
    SERVICE_TYPES,
    VIDEO_HOURS,
    Clinic,
    Placement,
    insert_bookings,
    issue_key,
    seed_clinic,
)
from service.app import create_app
from service.db import Database, utcnow
from service.domain.access import services as access
from service.domain.availability import cache, search, versions
from service.domain.bookings.models import BookingStatus
from service.domain.clinic.models import ServiceType
from service.domain.time import local_to_utc
from service.resources.slots import routes as slot_routes

PROVIDERS = 50
DAYS = 30
PATIENTS = 3000
CHAIRS = 60
INFUSIONS_PER_DAY = 2  # in the clinic, 07:00-12:00
CONSULTATIONS_PER_DAY = 2  # on video, 12:00-20:00
FOLLOW_UPS_PER_DAY = 4  # on video
TARGET_COMPUTE = 0.005
TARGET_RATIO = 2.0
TARGET_FIRST_RATIO = 10.0
HTTP_DAYS = 7
HTTP_LIMIT = 200
HTTP_REQUESTS = 150 if harness.QUICK else 400  # per endpoint (BENCH_QUICK=1: fewer)
HTTP_CONCURRENCY = 4
HTTP_CHUNKS = 4
CLINIC_WINDOW, VIRTUAL_WINDOW = (  # local minutes after midnight
    tuple(t.hour * 60 + t.minute for t in hours) for hours in (CLINIC_HOURS, VIDEO_HOURS))
MIDNIGHT = wall_clock(0)


# The calendar ------------------------------------------------------------------------------


def _minutes(code: str) -> tuple[int, int, int, int, int]:
    """(duration, buffer before, buffer after, recovery, step) of a service type, minutes."""
    values = SERVICE_TYPES[code]
    return (values["duration_minutes"], values.get("buffer_before_minutes", 0),
            values.get("buffer_after_minutes", 0), values.get("recovery_minutes", 0),
            values["slot_interval_minutes"])


def _free(busy: list[tuple[int, int]], block: tuple[int, int]) -> bool:
    return all(block[1] <= start or end <= block[0] for start, end in busy)


@dataclass
class _Day:
    """One local day of the calendar being planned: chairs, the next patient, the rows."""

    clinic: Clinic
    day: date
    rng: random.Random
    patient: int
    placements: list[Placement]
    chairs: list[list[tuple[int, int]]] = field(default_factory=list)

    def place(self, provider_id: uuid.UUID, busy: list[tuple[int, int]], code: str,
              window: tuple[int, int], location_id: uuid.UUID) -> None:
        """One booking at a random free start of the service's grid in ``window``."""
        duration, before, after, recovery, step = _minutes(code)
        starts = list(range(window[0], window[1] - duration + 1, step))
        self.rng.shuffle(starts)
        for start in starts:
            block = (start - before, start + duration + after)
            if not _free(busy, block):
                continue
            chair = None
            if code == "iv-infusion":
                hold = (start, start + duration + recovery)
                chair = next((n for n, held in enumerate(self.chairs, 1) if _free(held, hold)),
                             None)
                if chair is None:
                    continue
                self.chairs[chair - 1].append(hold)
            busy.append(block)
            patients = self.clinic.patient_ids
            self.placements.append(Placement(
                provider_id=provider_id, patient_id=patients[self.patient % len(patients)],
                location_id=location_id, service=code, start=self.clinic.at(self.day, start),
                chair=chair, status=(BookingStatus.PENDING if self.rng.random() < 0.1
                                     else BookingStatus.BOOKED)))
            self.patient += 1
            return


def plan_bookings(clinic: Clinic, *, days: int, seed: int = 11) -> list[Placement]:
    """8 bookings per provider and day, placed at random on the service's own grid: 2 IV
    infusions in the clinic (each on a free chair), 2 consultations and 4 follow-ups on
    video. Provider blocks never overlap, nor do chair blocks; a patient has at most one
    booking a day."""
    rng = random.Random(seed)
    per_day = PROVIDERS * (INFUSIONS_PER_DAY + CONSULTATIONS_PER_DAY + FOLLOW_UPS_PER_DAY)
    if len(clinic.patient_ids) < per_day:
        raise ValueError("need at least one patient per booking of a day")
    placements: list[Placement] = []
    for day_index in range(days):
        planner = _Day(clinic, clinic.first_day + timedelta(days=day_index), rng,
                       patient=day_index * per_day, placements=placements,
                       chairs=[[] for _ in range(clinic.chairs)])
        for provider_id in clinic.provider_ids:
            busy: list[tuple[int, int]] = []
            for _ in range(INFUSIONS_PER_DAY):
                planner.place(provider_id, busy, "iv-infusion", CLINIC_WINDOW, clinic.clinic_id)
            for _ in range(CONSULTATIONS_PER_DAY):
                planner.place(provider_id, busy, "consultation", VIRTUAL_WINDOW,
                              clinic.virtual_id)
            for _ in range(FOLLOW_UPS_PER_DAY):
                planner.place(provider_id, busy, "follow-up", VIRTUAL_WINDOW, clinic.virtual_id)
    return placements


def seed(database: Database) -> Clinic:
    clinic = seed_clinic(database, providers=PROVIDERS, patients=PATIENTS, chairs=CHAIRS)
    insert_bookings(database, clinic, plan_bookings(clinic, days=DAYS))
    return clinic


# (a) In-process ----------------------------------------------------------------------------


@dataclass
class Timing:
    label: str
    service: str
    all_providers: bool
    load: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)
    engine: list[float] = field(default_factory=list)  # the part of compute in span_keys
    total: list[float] = field(default_factory=list)
    slots_found: int = 0
    truncated: bool = False

    def row(self) -> list[object]:
        p = harness.percentile
        return [self.label, self.service, len(self.total),
                f"{harness.ms(p(self.load, 50))} / {harness.ms(p(self.load, 95))}",
                f"{harness.ms(p(self.compute, 50))} / {harness.ms(p(self.compute, 95))}",
                f"{harness.ms(p(self.engine, 50))} / {harness.ms(p(self.engine, 95))}",
                f"{harness.ms(p(self.total, 50))} / {harness.ms(p(self.total, 95))}",
                f"{self.slots_found}{'+' if self.truncated else ''}",
                harness.verdict(p(self.compute, 95) <= TARGET_COMPUTE)]


# What search.search calls, by part: loading (queries, building the Schedule) and the
# engine: ``span_keys`` (what ``first_starts`` and the search's ``_first_keys`` iterate), a
# generator, timed while it is iterated (working windows, busy ranges and free starts are
# all computed inside it). Whatever else search.search spends
# is its own glue.
Parts = dict[str, tuple[ModuleType, tuple[str, ...]]]
SEARCH_PARTS: Parts = {"load": (search, ("candidates", "load_schedule")),
                       "versions": (versions, ("read",)),  # loading too (one query)
                       "engine": (search, ("span_keys",))}


@contextmanager
def split_timer(parts: Parts = SEARCH_PARTS) -> Iterator[dict[str, float]]:
    """Time the named module functions by part while the block runs (this process only)."""
    spent = dict.fromkeys(parts, 0.0)
    originals = [(module, name, getattr(module, name))
                 for part, (module, names) in parts.items() for name in names]

    def steps(part: str, generator: Generator[object, None, None]
              ) -> Iterator[object]:
        while True:
            started = time.perf_counter()
            try:
                item = next(generator)
            except StopIteration:
                return
            finally:
                spent[part] += time.perf_counter() - started
            yield item

    def timed(part: str, function: Callable[..., object]) -> Callable[..., object]:
        def wrapper(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                result = function(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - started
            # A generator's work is done as it is iterated: timed step by step.
            return steps(part, result) if inspect.isgenerator(result) else result
        return wrapper

    for part, (module, names) in parts.items():
        for name in names:
            setattr(module, name, timed(part, getattr(module, name)))
    try:
        yield spent
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


@dataclass(frozen=True)
class Query:
    label: str
    service: str
    days: int
    providers: int | None  # None: all of them
    reps: int


QUERIES = (
    Query(f"{PROVIDERS} providers x {DAYS} days", "consultation", DAYS, None, 40),
    Query(f"{PROVIDERS} providers x {HTTP_DAYS} days", "consultation", HTTP_DAYS, None, 100),
    Query(f"1 provider x {DAYS} days", "consultation", DAYS, 1, 300),
    Query(f"{PROVIDERS} providers x {DAYS} days", "iv-infusion", DAYS, None, 40),
    Query(f"{PROVIDERS} providers x {HTTP_DAYS} days", "iv-infusion", HTTP_DAYS, None, 100),
    Query(f"1 provider x {DAYS} days", "iv-infusion", DAYS, 1, 300),
)


def _search(database: Database, clinic: Clinic, query: Query
            ) -> tuple[search.SlotSearch, float]:
    """One search in a fresh read session; the seconds spent in ``search.search`` only."""
    start = local_to_utc(clinic.first_day, MIDNIGHT, clinic.zone)
    end = local_to_utc(clinic.first_day + timedelta(days=query.days), MIDNIGHT, clinic.zone)
    providers = clinic.provider_ids[:query.providers] if query.providers else None
    with database.read_sessions() as session:
        service_type = session.get(ServiceType, clinic.service_types[query.service].id)
        now = utcnow()
        started = time.perf_counter()
        found = search.search(session, service_type=service_type, start=start, end=end,
                              now=now, provider_ids=providers, limit=HTTP_LIMIT)
        return found, time.perf_counter() - started


def time_query(database: Database, clinic: Clinic, query: Query, budget: float = 6.0,
               label: str | None = None) -> Timing:
    timing = Timing(label or query.label, query.service, all_providers=query.providers is None)
    previous = cache.use(cache.NullStore())  # the engine's own figures: every search computes
    try:
        for _ in range(3):  # warm-up: compiled statement cache, zoneinfo cache
            _search(database, clinic, query)
        _time_reps(database, clinic, query, timing, budget)
    finally:
        cache.use(previous)
    return timing


def _time_reps(database: Database, clinic: Clinic, query: Query, timing: Timing,
               budget: float) -> None:
    deadline = time.monotonic() + budget
    with split_timer() as spent:
        for rep in range(query.reps):
            spent.update(dict.fromkeys(spent, 0.0))
            found, total = _search(database, clinic, query)
            timing.total.append(total)
            timing.load.append(spent["load"] + spent["versions"])
            timing.compute.append(total - spent["load"] - spent["versions"])
            timing.engine.append(spent["engine"])
            timing.slots_found, timing.truncated = len(found.slots), found.truncated
            if rep >= 10 and time.monotonic() > deadline:
                break


REALISTIC = QUERIES[1]  # the HTTP query's shape: all providers, 7 days, consultation


def time_query_frozen(database: Database, clinic: Clinic, query: Query) -> Timing:
    """The same query after gc.freeze(): the long-lived objects of this process (the service's
    modules, as in a gunicorn worker) are no longer traversed by full collections, which
    otherwise land inside searches and make their p95."""
    gc.collect()
    gc.freeze()
    try:
        return time_query(database, clinic, query, label=f"{query.label}, gc.freeze()")
    finally:
        gc.unfreeze()


def profile_compute(database: Database, clinic: Clinic, query: Query, top: int = 25) -> str:
    """cProfile of ``search.search`` with the loading done once beforehand (computing only)."""
    start = local_to_utc(clinic.first_day, MIDNIGHT, clinic.zone)
    end = local_to_utc(clinic.first_day + timedelta(days=query.days), MIDNIGHT, clinic.zone)
    provider_ids = clinic.provider_ids[:query.providers] if query.providers else None
    with database.read_sessions() as session:
        service_type = session.get(ServiceType, clinic.service_types[query.service].id)
        providers, locations = search.candidates(session, service_type,
                                                 provider_ids=provider_ids)
        schedule = search.load_schedule(session, service_type=service_type, providers=providers,
                                        locations=locations, start=start, end=end)
        originals = search.candidates, search.load_schedule
        search.candidates = lambda *a, **k: (providers, locations)  # type: ignore[assignment]
        search.load_schedule = lambda *a, **k: schedule  # type: ignore[assignment]
        profiler = cProfile.Profile()
        previous = cache.use(cache.NullStore())  # every search computes (not a cache hit)
        try:
            profiler.enable()
            for _ in range(10):
                search.search(session, service_type=service_type, start=start, end=end,
                              now=utcnow(), provider_ids=provider_ids, limit=HTTP_LIMIT)
            profiler.disable()
        finally:
            search.candidates, search.load_schedule = originals
            cache.use(previous)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# (b) Over HTTP -----------------------------------------------------------------------------


@dataclass
class HttpResult:
    slots: harness.Load
    floor: harness.Load
    payload_bytes: int
    slots_in_payload: int
    breakdown: Breakdown | None = None
    first: harness.Load | None = None  # every search computed (no cache answer)

    @property
    def ratio(self) -> float:
        return (harness.percentile(self.slots.latencies, 95)
                / harness.percentile(self.floor.latencies, 95))

    @property
    def first_ratio(self) -> float:
        assert self.first is not None
        return (harness.percentile(self.first.latencies, 95)
                / harness.percentile(self.floor.latencies, 95))


def measure_http(url: str, database: Database, clinic: Clinic) -> HttpResult:
    authorization = f"Bearer {issue_key(database)}"
    path = "/api/v1/slots?" + urlencode({
        "service_type": str(clinic.service_types["consultation"].id),
        "start": clinic.first_day.isoformat(),
        "end": (clinic.first_day + timedelta(days=HTTP_DAYS - 1)).isoformat(),  # inclusive
        "limit": HTTP_LIMIT})
    request = harness.Request("GET", path, {"Authorization": authorization})
    # "First search": a service whose cache is never answered (REDIS_URL at a closed port:
    # the outage path, which computes every search as a first one would).
    uncached = {"DATABASE_URL": url, "REDIS_URL": f"redis://127.0.0.1:{harness.free_port()}/0"}
    with tempfile.TemporaryDirectory(prefix="bench_floor_") as folder, \
            harness.gunicorn("service.wsgi:app", env={"DATABASE_URL": url},
                             name="service") as service, \
            harness.gunicorn("service.wsgi:app", env=uncached, name="uncached") as first:
        status, body, _ = harness.call(service.port, "GET", path, headers=request.headers)
        if status != 200:
            raise RuntimeError(f"GET /api/v1/slots answered {status}: {body[:500]!r}")
        status, computed, _ = harness.call(first.port, "GET", path, headers=request.headers)
        if status != 200 or json.loads(computed)["slots"] != json.loads(body)["slots"]:
            raise RuntimeError("the uncached service answers differently")
        captured = Path(folder) / "slots.json"
        captured.write_bytes(body)
        floor_env = {"BENCH_FLOOR_BODY": str(captured),
                     "BENCH_FLOOR_AUTHORIZATION": authorization}
        with harness.gunicorn("bench.floor_app:create_app()", env=floor_env,
                              name="floor") as floor:
            status, echoed, _ = harness.call(floor.port, "GET", path, headers=request.headers)
            if status != 200 or echoed != body:
                raise RuntimeError("the floor app does not serve the captured response")
            warm = [request] * 20
            harness.interleaved([(service.port, warm), (first.port, warm), (floor.port, warm)],
                                concurrency=HTTP_CONCURRENCY, chunks=1)
            slots, first_load, floor_load = harness.interleaved(
                [(service.port, [request] * HTTP_REQUESTS),
                 (first.port, [request] * HTTP_REQUESTS),
                 (floor.port, [request] * HTTP_REQUESTS)],
                concurrency=HTTP_CONCURRENCY, chunks=HTTP_CHUNKS)
    return HttpResult(slots=slots, floor=floor_load, payload_bytes=len(body),
                      slots_in_payload=len(json.loads(body)["slots"]),
                      breakdown=request_breakdown(url, path, authorization), first=first_load)


# (c) One request, in-process --------------------------------------------------------------

REQUEST_PARTS: Parts = {
    "auth": (access, ("authenticate",)),
    "use case": (slot_routes, ("answer_open_slots",)),
    **SEARCH_PARTS,
}
BREAKDOWN_REQUESTS = 60


@dataclass
class Breakdown:
    """Where one GET /api/v1/slots spends its time, served in-process (Flask test client,
    one request at a time, no network, no other load): ms per part, p50 and p95."""

    parts: dict[str, list[float]]

    def row(self, name: str) -> list[object]:
        values = self.parts[name]
        return [name, harness.ms(harness.percentile(values, 50)),
                harness.ms(harness.percentile(values, 95))]


def request_breakdown(url: str, path: str, authorization: str) -> Breakdown:
    app = create_app({"DATABASE_URL": url})
    client = app.test_client()
    names = ["request", "auth", "use case", "load", "engine"]
    samples: dict[str, list[float]] = {name: [] for name in names}
    try:
        for _ in range(5):
            client.get(path, headers={"Authorization": authorization})
        with split_timer(REQUEST_PARTS) as spent:
            for _ in range(BREAKDOWN_REQUESTS):
                spent.update(dict.fromkeys(spent, 0.0))
                started = time.perf_counter()
                response = client.get(path, headers={"Authorization": authorization})
                total = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"in-process GET answered {response.status_code}")
                samples["request"].append(total)
                for name in names[1:]:
                    samples[name].append(spent[name])
    finally:
        app.extensions["clinic.database"].dispose()
    request, auth, use_case = samples["request"], samples["auth"], samples["use case"]
    load, in_engine = samples["load"], samples["engine"]
    return Breakdown({
        "whole request": request,
        "  authenticate (API key lookup)": auth,
        "  answer_open_slots (the use case)": use_case,
        "    load: candidates + load_schedule": load,
        "    compute: the engine (span_keys)": in_engine,
        "    compute: search.py glue, session": [u - lo - e for u, lo, e in
                                                 zip(use_case, load, in_engine, strict=True)],
        "  the rest: parsing, serialising 200 slots, JSON, Flask": [
            r - a - u for r, a, u in zip(request, auth, use_case, strict=True)],
    })


# Report ------------------------------------------------------------------------------------


@dataclass
class Result:
    bookings: int
    seed_seconds: float
    timings: list[Timing]
    http: HttpResult | None
    profile: str | None = None
    history: tuple[Timing, Timing, int] | None = None

    def history_ratio(self) -> float:
        assert self.history is not None
        before, after, _ = self.history
        return harness.percentile(after.total, 50) / harness.percentile(before.total, 50)

    def report(self) -> str:
        lines = [f"== Slot search: PostgreSQL, {PROVIDERS} providers x {DAYS} days, "
                 f"{self.bookings:,} existing bookings (seeded in {self.seed_seconds:.1f} s) ==",
                 "(a) in-process search.search(), ms p50 / p95: load = candidates() + "
                 "load_schedule() (queries, rows -> Schedule); compute = the rest, of which "
                 "engine = span_keys (windows, busy ranges, free starts), timed as iterated",
                 harness.table(["query", "service", "reps", "load", "compute", "engine",
                                "total", "slots", "compute<=5ms"],
                               [t.row() for t in self.timings])]
        if self.http:
            h, p = self.http, harness.percentile
            rows = [[name, load.count, harness.statuses_text(load.statuses),
                     harness.ms(p(load.latencies, 50)), harness.ms(p(load.latencies, 95)),
                     harness.ms(p(load.latencies, 99)), f"{load.rate:.1f}"]
                    for name, load in (("GET /api/v1/slots (repeated)", h.slots),
                                       ("  same, every search computed", h.first),
                                       ("floor (precomputed)", h.floor)) if load is not None]
            lines += [
                f"(b) HTTP, gunicorn -w {harness.WORKERS} -k sync, {HTTP_CONCURRENCY} client "
                f"threads, one connection per request, {HTTP_CHUNKS} alternating chunks; "
                f"consultation, all providers, {HTTP_DAYS} days, limit {HTTP_LIMIT}: "
                f"{h.slots_in_payload} slots, {h.payload_bytes:,} bytes",
                harness.table(["endpoint", "requests", "statuses", "p50 ms", "p95 ms",
                               "p99 ms", "req/s"], rows),
                f"  p95(slots) / p95(floor) = {h.ratio:.2f}x, a repeated search "
                f"(target <= {TARGET_RATIO:.0f}x: {harness.verdict(h.ratio <= TARGET_RATIO)})",
            ]
            if h.first is not None:
                lines.append(f"  p95(computed) / p95(floor) = {h.first_ratio:.2f}x, a first "
                             f"search (target <= {TARGET_FIRST_RATIO:.0f}x: "
                             f"{harness.verdict(h.first_ratio <= TARGET_FIRST_RATIO)})")
            for name, load in (("slots", h.slots), ("floor", h.floor)):
                lines += [f"  unexpected {name} answer: {failure}" for failure in load.failures]
            if h.breakdown:
                lines += [f"(c) the same GET in-process (Flask test client, one at a time, "
                          f"{BREAKDOWN_REQUESTS} requests): where a request's time goes",
                          harness.table(["part", "p50 ms", "p95 ms"],
                                        [h.breakdown.row(name) for name in h.breakdown.parts])]
        if self.history:
            before, after, added = self.history
            lines += [f"(d) history: {added:,} past bookings added; the realistic query "
                      f"(in-process, every search computed)",
                      harness.table(["query", "service", "reps", "load", "compute",
                                     "engine", "total", "slots", "compute<=5ms"],
                                    [before.row(), after.row()]),
                      f"  p50 total with history / without = {self.history_ratio():.2f} "
                      f"(target: flat)"]
        if self.profile:
            lines += [f"cProfile of the computing part (10 searches, {self.timings[0].label}, "
                      f"{self.timings[0].service}):", self.profile]
        return "\n".join(lines)

    def summarize(self) -> list[str]:
        p = harness.percentile
        out = []
        for timing in self.timings:
            if timing.all_providers:
                compute = p(timing.compute, 95)
                out.append(f"slots  compute p95 {harness.ms(compute)} ms, load p95 "
                           f"{harness.ms(p(timing.load, 95))} ms ({timing.label}, "
                           f"{timing.service}): target <= 5 ms "
                           f"{harness.verdict(compute <= TARGET_COMPUTE)}")
        if self.http:
            h = self.http
            out.append(f"slots  HTTP p95 {harness.ms(p(h.slots.latencies, 95))} ms vs floor "
                       f"{harness.ms(p(h.floor.latencies, 95))} ms = {h.ratio:.2f}x; "
                       f"{h.slots.rate:.0f} vs {h.floor.rate:.0f} req/s: target <= 2x "
                       f"{harness.verdict(h.ratio <= TARGET_RATIO)}")
            if h.first is not None:
                out.append(f"slots  HTTP first search p95 / floor = {h.first_ratio:.2f}x: "
                           f"target <= {TARGET_FIRST_RATIO:.0f}x "
                           f"{harness.verdict(h.first_ratio <= TARGET_FIRST_RATIO)}")
        if self.history:
            out.append(f"slots  search time with {self.history[2]:,} bookings of history / "
                       f"without = {self.history_ratio():.2f} (p50; target flat)")
        return out


def run(*, http: bool = True, profile: bool = False,
        queries: Sequence[Query] = QUERIES) -> Result:
    with harness.fresh_database("postgresql") as url:
        database = Database.connect(url)
        try:
            started = time.perf_counter()
            clinic = seed(database)
            seeded = time.perf_counter() - started
            timings = [time_query(database, clinic, query) for query in queries]
            timings.append(time_query_frozen(database, clinic, REALISTIC))
            profiled = profile_compute(database, clinic, queries[0]) if profile else None
            measured = measure_http(url, database, clinic) if http else None
            history = time_with_history(database, clinic, timings[1]) if http else None
        finally:
            database.dispose()
    return Result(bookings=clinic.bookings, seed_seconds=seeded, timings=timings,
                  http=measured, profile=profiled, history=history)


HISTORY_DAYS = 220  # 400 bookings a day: about 88,000 before the calendar, 100,000 in all


def time_with_history(database: Database, clinic: Clinic, without: Timing
                      ) -> tuple[Timing, Timing, int]:
    """The realistic query again once ~88,000 past bookings are added (100k in all), against
    the same query timed again just before (same process, same moment)."""
    again = time_query(database, clinic, REALISTIC, label=f"{REALISTIC.label}, "
                       f"{clinic.bookings:,} bookings")
    past = dataclasses.replace(clinic, first_day=clinic.first_day - timedelta(
        days=HISTORY_DAYS + 1))
    added = insert_bookings(database, past, plan_bookings(past, days=HISTORY_DAYS, seed=5))
    with database.writer.begin() as connection:
        connection.exec_driver_sql("ANALYZE bookings")
    with_history = time_query(database, clinic, REALISTIC, label=f"{REALISTIC.label}, "
                              f"{clinic.bookings + added:,} bookings")
    return again, with_history, added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", action="store_true", help="cProfile the computing part")
    parser.add_argument("--no-http", action="store_true", help="in-process figures only")
    args = parser.parse_args(argv)
    harness.exit_on_sigterm()
    result = run(http=not args.no_http, profile=args.profile)
    print(result.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
