"""50 clients booking the same slot at once, 20 rounds, on PostgreSQL and on SQLite.

Over HTTP against gunicorn (2 sync workers). Each round offers a fresh slot (another day
at 10:00 Phoenix, a telehealth consultation) to 50 different cleared patients; 50 threads
wait on a barrier, then each POSTs /api/v1/bookings on a connection of its own. Exactly one
201 per round is the correct answer; the others must be 409 (slot_unavailable), never 5xx.
Afterwards the database is asked how many live bookings each slot holds.

``python -m bench.race [--database postgresql|sqlite]``
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import time as wall_clock
from datetime import timedelta

from sqlalchemy import func, select

from bench import harness
from bench.clinic import EVERY_DAY, Clinic, issue_key, seed_clinic
from service.db import Database
from service.domain.bookings.models import Booking, BookingStatus

CLIENTS = 50
ROUNDS = 20
SLOT_MINUTES = 10 * 60  # 10:00 local, on the consultation's 30-minute grid
DATABASES = ("postgresql", "sqlite")


def video_hours(provider_index: int) -> Iterator[tuple[str, int, wall_clock, wall_clock]]:
    """On video 08:00-17:00, every day."""
    for weekday in EVERY_DAY:
        yield "virtual", weekday, wall_clock(8), wall_clock(17)


@dataclass
class Round:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    rows: int = 0  # live bookings the database holds for the slot afterwards
    codes: Counter[str] = field(default_factory=Counter)  # problem codes of the 409s
    unexpected: list[str] = field(default_factory=list)  # a few bodies of other answers

    @property
    def one_winner(self) -> bool:
        return self.statuses[201] == 1


@dataclass
class Result:
    database: str
    rounds: list[Round]
    unexpected: list[str] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for played in self.rounds:
            total.update(played.statuses)
        return total

    @property
    def codes(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for played in self.rounds:
            total.update(played.codes)
        return total

    @property
    def latencies(self) -> list[float]:
        return [seconds for played in self.rounds for seconds in played.latencies]

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 or status == 0)

    def row(self) -> list[object]:
        statuses, p = self.statuses, harness.percentile
        other = sum(n for status, n in statuses.items() if status not in (201, 409))
        return [self.database, f"{sum(r.one_winner for r in self.rounds)}/{len(self.rounds)}",
                f"{sum(r.rows == 1 for r in self.rounds)}/{len(self.rounds)}",
                statuses[201], statuses[409], other, self.server_errors,
                harness.ms(p(self.latencies, 50)), harness.ms(p(self.latencies, 99))]


def play_round(port: int, clinic: Clinic, authorization: str, round_index: int) -> Round:
    day = clinic.first_day + timedelta(days=round_index)
    start = clinic.local_iso(clinic.at(day, SLOT_MINUTES))
    patients = clinic.patient_ids[round_index * CLIENTS:(round_index + 1) * CLIENTS]
    played = Round()
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS)

    def client(patient_id: object) -> None:
        body, headers = harness.json_body({
            "patient_id": str(patient_id), "provider_id": str(clinic.provider_ids[0]),
            "service_type_id": str(clinic.service_types["consultation"].id),
            "location_id": str(clinic.virtual_id), "start": start, "patient_state": "AZ"})
        headers["Authorization"] = authorization
        barrier.wait()
        status, data, seconds = harness.call(port, "POST", "/api/v1/bookings",
                                             headers=headers, body=body)
        with lock:
            played.statuses[status] += 1
            played.latencies.append(seconds)
            if status == 409:
                played.codes[_problem_code(data)] += 1
            if status not in (201, 409) and len(played.unexpected) < 3:
                played.unexpected.append(f"{status}: {data[:300]!r}")

    threads = [threading.Thread(target=client, args=(patient,), daemon=True)
               for patient in patients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return played


def _problem_code(data: bytes) -> str:
    try:
        return str(json.loads(data).get("code"))
    except (ValueError, AttributeError):
        return "(not problem+json)"


def count_rows(database: Database, clinic: Clinic, rounds: list[Round]) -> None:
    starts = {clinic.at(clinic.first_day + timedelta(days=i), SLOT_MINUTES): i
              for i in range(len(rounds))}
    with database.read_sessions() as session:
        rows = session.execute(
            select(Booking.starts_at, func.count()).where(
                Booking.provider_id == clinic.provider_ids[0],
                Booking.status != BookingStatus.CANCELLED,
                Booking.starts_at.in_(list(starts))).group_by(Booking.starts_at))
        for starts_at, count in rows:
            rounds[starts[starts_at]].rows = count


def run_one(kind: str, *, rounds: int = ROUNDS) -> Result:
    with harness.fresh_database(kind) as url:
        database = Database.connect(url)
        try:
            clinic = seed_clinic(database, providers=1, patients=CLIENTS * rounds, chairs=0,
                                 hours=video_hours)
            authorization = f"Bearer {issue_key(database)}"
            with harness.gunicorn("service.wsgi:app", env={"DATABASE_URL": url},
                                  name=f"service-{kind}") as server:
                played = []
                for index in range(rounds):
                    played.append(play_round(server.port, clinic, authorization, index))
                    time.sleep(0.05)
            count_rows(database, clinic, played)
        finally:
            database.dispose()
    unexpected = [text for r in played for text in r.unexpected]
    return Result(database=kind, rounds=played, unexpected=unexpected[:3])


@dataclass
class Results:
    results: list[Result]

    def report(self) -> str:
        lines = [f"== Race: {CLIENTS} clients book the same slot at once, {ROUNDS} rounds, "
                 f"gunicorn -w {harness.WORKERS} -k sync, one connection per request ==",
                 harness.table(["database", "one 201", "one row", "201", "409", "other",
                                "5xx/errors", "p50 ms", "p99 ms"],
                               [r.row() for r in self.results])]
        for result in self.results:
            codes = ", ".join(f"{code} x{n}" for code, n in result.codes.most_common())
            lines.append(f"  {result.database} 409 codes: {codes or '-'}")
            lines += [f"  unexpected {result.database} answer: {text}"
                      for text in result.unexpected]
        return "\n".join(lines)

    def summarize(self) -> list[str]:
        out = []
        for r in self.results:
            winners = sum(x.one_winner for x in r.rounds)
            p50, p99 = (harness.ms(harness.percentile(r.latencies, q)) for q in (50, 99))
            out.append(f"race   {r.database}: {winners}/{len(r.rounds)} rounds with exactly one "
                       f"201, {r.statuses[201]} x 201, {r.statuses[409]} x 409, "
                       f"{r.server_errors} x 5xx; p50 {p50} ms, p99 {p99} ms")
        return out


def run(databases: tuple[str, ...] = DATABASES) -> Results:
    return Results([run_one(kind) for kind in databases])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.race", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=DATABASES, action="append",
                        help="only this database (repeatable; default: both)")
    args = parser.parse_args(argv)
    harness.exit_on_sigterm()
    results = run(tuple(args.database or DATABASES))
    print(results.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
