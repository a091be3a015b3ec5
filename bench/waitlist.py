"""``python -m bench.waitlist``: scheduler lag from a freed slot to its waitlist offer.

A scratch database (PostgreSQL by default, ``--database sqlite`` too) with the bench clinic;
``--slots`` consultations are booked and as many other patients wait for a consultation.
The production scheduler (``python -m service.scheduler``, reminders on the log channel) runs
in its own process with ``WAITLIST_POLL_SECONDS`` (``--poll``, default 5, the production
default). The visits are then cancelled one by one, ``--gap`` seconds apart, through the
booking use case (its handlers write the opening in the cancellation's transaction).
Printed: offers made, and the lag ``offered_at - freed_at`` (from the database: the
cancellation's commit clock to the offer's) p50 / p95 / max. Expected: at most the poll
interval plus the time to search and hold one slot (tens of milliseconds).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from bench import harness
from bench.clinic import seed_clinic
from service.bootstrap import bootstrap
from service.config import Settings
from service.db import Database, utcnow
from service.domain.access.actor import SYSTEM
from service.domain.bookings import services as bookings
from service.domain.waitlist import services as waitlist
from service.domain.waitlist.models import WaitlistOffer
from service.uow import UnitOfWork

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    database: str
    poll: float
    slots: int
    offered: int
    lags: list[float]

    def report(self) -> str:
        lags = sorted(self.lags)
        if not lags:
            return f"waitlist ({self.database}): no offers made"
        return (f"waitlist lag ({self.database}, WAITLIST_POLL_SECONDS={self.poll:g}): "
                f"{self.offered}/{self.slots} freed slots offered; freed -> offered "
                f"p50 {harness.percentile(lags, 50):.2f} s, "
                f"p95 {harness.percentile(lags, 95):.2f} s, max {lags[-1]:.2f} s")

    def summarize(self) -> str:
        return self.report()


def run(database: str = "postgresql", *, slots: int = 20, poll: float = 5.0,
        gap: float = 0.5) -> Result:
    with harness.fresh_database(database) as url:
        settings = Settings.from_env({"DATABASE_URL": url})
        db = Database.connect(url)
        try:
            clinic = seed_clinic(db, providers=4, patients=2 * slots, chairs=4)

            def uow() -> UnitOfWork:
                return UnitOfWork(db.write_sessions, dialect=db.dialect,
                                  bus=bootstrap(settings))

            day = clinic.first_day + timedelta(days=1)
            consultation = clinic.service_types["consultation"].id
            booked = []
            for index in range(slots):
                provider = clinic.provider_ids[index % 4]
                start = clinic.at(day, 12 * 60 + (index // 4) * 90)
                booked.append(bookings.create_booking(uow(), SYSTEM, bookings.BookingRequest(
                    patient_id=clinic.patient_ids[index], provider_id=provider,
                    service_type_id=consultation, location_id=clinic.virtual_id,
                    start=start, patient_state="AZ"), now=utcnow()))
            for index in range(slots):
                waitlist.join_waitlist(uow(), SYSTEM, waitlist.EntryRequest(
                    patient_id=clinic.patient_ids[slots + index],
                    service_type_id=consultation, earliest_date=clinic.first_day,
                    latest_date=day + timedelta(days=2), patient_state="AZ"),
                    today=clinic.first_day - timedelta(days=1))
            env = {**os.environ, "DATABASE_URL": url, "WAITLIST_POLL_SECONDS": str(poll),
                   "REMINDER_CHANNEL": "log", "REMINDER_POLL_SECONDS": "60",
                   "WEBHOOK_POLL_SECONDS": "60"}
            scheduler = subprocess.Popen([sys.executable, "-m", "service.scheduler"],
                                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            try:
                time.sleep(2.0)  # started and past its first run
                for booking in booked:
                    bookings.transition_booking(uow(), SYSTEM, booking.id, "cancel",
                                                now=utcnow(), reason="Bench cancellation")
                    time.sleep(gap)
                deadline = time.monotonic() + poll * 3 + 10
                offers: list[WaitlistOffer] = []
                while time.monotonic() < deadline:
                    with db.write_sessions() as session:
                        offers = list(session.scalars(select(WaitlistOffer)))
                    if len(offers) >= slots:
                        break
                    time.sleep(0.2)
            finally:
                scheduler.terminate()
                scheduler.wait(timeout=30)
            lags = [(o.offered_at - o.freed_at).total_seconds() for o in offers]
            return Result(database, poll, slots, len(offers), lags)
        finally:
            db.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--slots", type=int, default=20)
    parser.add_argument("--poll", type=float, default=5.0)
    parser.add_argument("--gap", type=float, default=0.5)
    args = parser.parse_args()
    result = run(args.database, slots=args.slots, poll=args.poll, gap=args.gap)
    print(result.report())
    return 0 if result.offered == result.slots else 1


if __name__ == "__main__":
    sys.exit(main())
