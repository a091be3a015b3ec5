"""What metrics and structured logs cost: the booking and slot-search loads against the
service as deployed (metrics, ``LOG_FORMAT=json``: one JSON line per request) and against
the same service without them (``bench.plain_app``: no metrics hooks, gunicorn's text access
log as before), in the same run, on the same PostgreSQL, in alternating chunks.

Both servers: gunicorn, 2 sync workers, rate limits on (memory, far above the load). The
bookings are distinct slots (split between the two servers, nothing conflicts); the slot
search is one service type, all providers, 7 days. Reported: req/s and p50/p95 of each,
and the ratio with / without (1.00: no overhead).

``python -m bench.operations``
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from bench import harness
from bench.clinic import issue_key, seed_clinic
from bench.writes import booking_bodies, video_hours
from service.db import Database

PROVIDERS = 20
BOOKINGS = 400  # per server
SEARCHES = 300  # per server
WARM_UP = 20
CONCURRENCY = 4
CHUNKS = 4


@dataclass
class Pair:
    name: str
    with_ops: harness.Load
    without: harness.Load

    @property
    def ratio(self) -> float:
        """Time per request with / without (the rates' inverse ratio)."""
        return self.without.rate / self.with_ops.rate

    def row(self) -> list[object]:
        p = harness.percentile
        return [self.name, f"{self.with_ops.rate:.1f}", f"{self.without.rate:.1f}",
                f"{self.ratio:.3f}",
                harness.ms(p(self.with_ops.latencies, 50)),
                harness.ms(p(self.without.latencies, 50)),
                harness.ms(p(self.with_ops.latencies, 95)),
                harness.ms(p(self.without.latencies, 95)),
                f"{p(self.with_ops.latencies, 95) / p(self.without.latencies, 95):.3f}"]


@dataclass
class Result:
    bookings: Pair
    searches: Pair

    def report(self) -> str:
        lines = ["== Metrics + JSON logs overhead: PostgreSQL, gunicorn -w "
                 f"{harness.WORKERS} -k sync, {CONCURRENCY} client threads, {CHUNKS} "
                 "alternating chunks ==",
                 harness.table(["load", "with req/s", "without req/s", "time ratio",
                                "with p50", "without p50", "with p95", "without p95",
                                "p95 ratio"],
                               [self.bookings.row(), self.searches.row()]),
                 "  time ratio = (1 / with rate) / (1 / without rate): above 1.00 is the "
                 "cost of metrics and logs"]
        for pair in (self.bookings, self.searches):
            for name, load in (("with", pair.with_ops), ("without", pair.without)):
                lines += [f"  unexpected {pair.name} answer ({name}): {failure}"
                          for failure in load.failures]
        return "\n".join(lines)

    def summarize(self) -> list[str]:
        return [f"operations overhead: bookings x{self.bookings.ratio:.3f}, slot search "
                f"x{self.searches.ratio:.3f} (time per request with / without metrics and "
                "JSON logs)"]


def run() -> Result:
    with harness.fresh_database("postgresql") as url:
        database = Database.connect(url)
        try:
            clinic = seed_clinic(database, providers=PROVIDERS,
                                 patients=2 * (BOOKINGS + WARM_UP), chairs=0,
                                 hours=video_hours)
            authorization = f"Bearer {issue_key(database)}"
        finally:
            database.dispose()
        headers = {"Authorization": authorization, "Content-Type": "application/json"}
        bodies = [harness.Request("POST", "/api/v1/bookings", headers, body)
                  for body in booking_bodies(clinic, 2 * (BOOKINGS + WARM_UP))]
        path = "/api/v1/slots?" + urlencode({
            "service_type": str(clinic.service_types["consultation"].id),
            "start": clinic.first_day.isoformat(),
            "end": (clinic.first_day + timedelta(days=6)).isoformat(), "limit": 200})
        search = harness.Request("GET", path, {"Authorization": authorization})
        with harness.gunicorn("service.wsgi:app", name="with-ops",
                              env={"DATABASE_URL": url, "LOG_FORMAT": "json"}) as with_ops, \
                harness.gunicorn("bench.plain_app:create_app()", name="without",
                                 env={"DATABASE_URL": url, "LOG_FORMAT": "text"}) as without:
            ours, theirs = bodies[0::2], bodies[1::2]
            harness.interleaved([(with_ops.port, ours[:WARM_UP]),
                                 (without.port, theirs[:WARM_UP])],
                                concurrency=CONCURRENCY, chunks=1, expect=201)
            booked = harness.interleaved([(with_ops.port, ours[WARM_UP:]),
                                          (without.port, theirs[WARM_UP:])],
                                         concurrency=CONCURRENCY, chunks=CHUNKS, expect=201)
            harness.interleaved([(with_ops.port, [search] * WARM_UP),
                                 (without.port, [search] * WARM_UP)],
                                concurrency=CONCURRENCY, chunks=1)
            searched = harness.interleaved([(with_ops.port, [search] * SEARCHES),
                                            (without.port, [search] * SEARCHES)],
                                           concurrency=CONCURRENCY, chunks=CHUNKS)
    return Result(bookings=Pair("POST /api/v1/bookings", *booked),
                  searches=Pair("GET /api/v1/slots (7 days)", *searched))


def main() -> int:
    harness.exit_on_sigterm()
    result = run()
    print(result.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
