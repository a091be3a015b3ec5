"""Connected calendars: what external busy time costs the slot search, and what a sync costs.

On PostgreSQL, the slot benchmark's clinic (50 providers, 30 days, about 12,000 bookings):

(a) ``search.search`` timed without connected calendars, then again after every provider got
    a connected calendar holding 500 busy events over the same 30 days (about 17 a day,
    30 to 90 minutes, at random in working hours, overlapping freely), stored the way a sync
    stores them. Same queries, same split as ``bench.slots``: load (queries, rows ->
    Schedule) and compute (the rest).
(b) One sync run of those 50 calendars as iCalendar documents of 500 events each (400 single
    events, 100 weekly series with an EXDATE; the reader is in memory, so this is parsing,
    expanding and replacing the intervals, not the network).

``python -m bench.connected`` (also part of ``make bench``).
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import insert

from bench import harness, slots
from service.bootstrap import bootstrap
from service.config import Settings
from service.db import Database, utcnow
from service.domain.connections import busy
from service.domain.connections.models import (
    CalendarConnection,
    ConnectionKind,
    ExternalBusy,
    SyncStatus,
)
from service.domain.connections.polling import CalendarSync, Fetched, SyncSettings
from service.domain.connections.secrets import Sealed, SecretBox

EVENTS_PER_CALENDAR = 500
QUERIES = (slots.QUERIES[0], slots.QUERIES[1], slots.QUERIES[2])  # consultation


def _events(rng: random.Random, clinic: slots.Clinic, count: int) -> list[tuple[datetime,
                                                                                    datetime]]:
    out = []
    for _ in range(count):
        day = clinic.first_day + timedelta(days=rng.randrange(slots.DAYS))
        start = rng.randrange(7 * 60, 19 * 60, 15)
        first = clinic.at(day, start)
        out.append((first, first + timedelta(minutes=rng.choice((30, 45, 60, 90)))))
    return out


def connect_everyone(database: Database, clinic: slots.Clinic, *, kind: ConnectionKind,
                     secret: str | None = None, seed: int = 5) -> tuple[list[uuid.UUID], int]:
    """One connection per provider holding EVENTS_PER_CALENDAR busy events (merged where
    they overlap); returns the connections' ids and the intervals stored."""
    rng = random.Random(seed)
    now = utcnow()
    ids, busy_rows = [], []
    connection_rows = []
    for provider_id in clinic.provider_ids:
        connection_id = uuid.uuid4()
        ids.append(connection_id)
        events = [busy.Busy(s, e) for s, e in _events(rng, clinic, EVENTS_PER_CALENDAR)]
        merged = busy.merge(events)  # as a sync stores them
        connection_rows.append({
            "id": connection_id, "created_at": now, "updated_at": now, "version": 1,
            "provider_id": provider_id, "kind": kind, "label": "Hospital shifts",
            "secret": secret, "include_all_day": False, "write_back": False,
            "interval_seconds": 900, "active": True, "status": SyncStatus.OK,
            "last_synced_at": now, "busy_count": len(merged), "next_sync_at": now})
        busy_rows += [{"id": uuid.uuid4(), "connection_id": connection_id,
                       "provider_id": provider_id, "starts_at": s, "ends_at": e}
                      for s, e in merged]
    with database.write_sessions() as session, session.begin():
        session.execute(insert(CalendarConnection), connection_rows)
        session.execute(insert(ExternalBusy), busy_rows)
    return ids, len(busy_rows)


def ics_document(rng: random.Random, clinic: slots.Clinic) -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//bench//EN"]

    def stamp(moment: datetime) -> str:
        return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    for index, (start, end) in enumerate(_events(rng, clinic, EVENTS_PER_CALENDAR)):
        lines += ["BEGIN:VEVENT", f"UID:bench-{index}@example.com", f"DTSTART:{stamp(start)}",
                  f"DTEND:{stamp(end)}", "SUMMARY:Busy", "DESCRIPTION:Not read"]
        if index % 5 == 0:  # a weekly series with one exclusion
            lines += ["RRULE:FREQ=WEEKLY;COUNT=4",
                      f"EXDATE:{stamp(start + timedelta(days=7))}"]
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines).encode()


class MemoryReader:
    def __init__(self, documents: dict[str, bytes]) -> None:
        self.documents = documents

    def read(self, kind: ConnectionKind, secret: Sealed, *, start: datetime, end: datetime,
             etag: str | None, last_modified: str | None) -> Fetched:
        return Fetched(documents=[self.documents[secret.url]], etag='"1"')


@dataclass
class Result:
    bookings: int
    seed_seconds: float
    without: list[slots.Timing]
    with_calendars: list[slots.Timing]
    busy_rows: int
    sync_seconds: float
    sync_counts: dict[str, int]
    intervals_after_sync: int

    def report(self) -> str:
        rows = []
        for before, after in zip(self.without, self.with_calendars, strict=True):
            p = harness.percentile
            for label, timing in (("without", before), ("with 50 x 500", after)):
                rows.append([timing.label, label, len(timing.total),
                             f"{harness.ms(p(timing.load, 50))} / "
                             f"{harness.ms(p(timing.load, 95))}",
                             f"{harness.ms(p(timing.compute, 50))} / "
                             f"{harness.ms(p(timing.compute, 95))}",
                             f"{harness.ms(p(timing.total, 50))} / "
                             f"{harness.ms(p(timing.total, 95))}",
                             f"{timing.slots_found}{'+' if timing.truncated else ''}"])
        return "\n".join([
            f"== Connected calendars: PostgreSQL, {slots.PROVIDERS} providers x {slots.DAYS} "
            f"days, {self.bookings:,} bookings (seeded in {self.seed_seconds:.1f} s) ==",
            f"(a) search.search(), consultation, ms p50 / p95, without connected calendars "
            f"and with one per provider of {EVENTS_PER_CALENDAR} events "
            f"({self.busy_rows:,} busy intervals stored once overlaps are merged, as a sync "
            f"stores them)",
            harness.table(["query", "calendars", "reps", "load", "compute", "total", "slots"],
                          rows),
            f"(b) one sync run, {slots.PROVIDERS} iCalendar documents x "
            f"{EVENTS_PER_CALENDAR} events (100 weekly series), in-memory reader: "
            f"{self.sync_seconds:.2f} s ({self.sync_seconds / slots.PROVIDERS * 1000:.0f} ms "
            f"per calendar); {dict(self.sync_counts)}; {self.intervals_after_sync:,} "
            f"intervals stored after merging",
        ])

    def summarize(self) -> list[str]:
        p = harness.percentile
        out = []
        for before, after in zip(self.without, self.with_calendars, strict=True):
            out.append(f"calendars  {before.label}: total p95 {harness.ms(p(before.total, 95))}"
                       f" -> {harness.ms(p(after.total, 95))} ms with 50 x "
                       f"{EVENTS_PER_CALENDAR} events")
        out.append(f"calendars  sync of 50 x {EVENTS_PER_CALENDAR} events: "
                   f"{self.sync_seconds:.2f} s")
        return out


def _timings(database: Database, clinic: slots.Clinic, queries: Sequence[slots.Query]
             ) -> list[slots.Timing]:
    return [slots.time_query(database, clinic, query, budget=4.0) for query in queries]


def run(queries: Sequence[slots.Query] = QUERIES) -> Result:
    with harness.fresh_database("postgresql") as url:
        database = Database.connect(url)
        try:
            started = time.perf_counter()
            clinic = slots.seed(database)
            seeded = time.perf_counter() - started
            without = _timings(database, clinic, queries)
            _, stored_rows = connect_everyone(database, clinic, kind=ConnectionKind.PUSH)
            with_calendars = _timings(database, clinic, queries)

            # (b) a sync of 50 iCalendar connections, all due.
            key = Fernet.generate_key().decode()
            box = SecretBox(key)
            rng = random.Random(9)
            documents = {f"https://calendar.example.com/{n}.ics": ics_document(rng, clinic)
                         for n in range(slots.PROVIDERS)}
            ids, _ = connect_everyone(database, clinic, kind=ConnectionKind.ICS, seed=6)
            _seal_addresses(database, ids, box, list(documents))
            sync = CalendarSync(database, MemoryReader(documents), box,
                                SyncSettings(default_zone=clinic.zone, window_days=slots.DAYS + 2,
                                             batch_size=slots.PROVIDERS),
                                bus=bootstrap(Settings.from_env({})))
            began = time.perf_counter()
            counts = sync.run_once(now=utcnow() + timedelta(seconds=1))
            synced = time.perf_counter() - began
            with database.read_sessions() as session:
                stored = session.query(ExternalBusy).count()
        finally:
            database.dispose()
    return Result(bookings=clinic.bookings, seed_seconds=seeded, without=without,
                  with_calendars=with_calendars,
                  busy_rows=stored_rows, sync_seconds=synced,
                  sync_counts=dict(counts), intervals_after_sync=stored)


def _seal_addresses(database: Database, ids: list[uuid.UUID], box: SecretBox,
                    urls: list[str]) -> None:
    with database.write_sessions() as session, session.begin():
        for connection_id, url in zip(ids, urls, strict=True):
            row: Any = session.get(CalendarConnection, connection_id)
            row.secret = box.seal(Sealed(url=url))
            row.next_sync_at = utcnow()


def main() -> int:
    harness.exit_on_sigterm()
    result = run()
    print(result.report())
    print("\n".join(result.summarize()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
