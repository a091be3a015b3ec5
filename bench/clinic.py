"""A fictional clinic for the benchmarks, written straight through the service's models.

Every name and number is made up. Rows are bulk-inserted, with the values the service itself
would have written (ids, versions, timestamps, blocks computed by the slot engine).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import insert

from service.db import Database, utcnow
from service.domain.access import services as keys
from service.domain.access.actor import Role
from service.domain.availability import search
from service.domain.availability import slots as engine
from service.domain.availability.models import WeeklyHours
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.clinic.models import Location, LocationKind, ServiceType
from service.domain.patients.models import Patient
from service.domain.providers.licensing import Modality
from service.domain.providers.models import (
    Credential,
    License,
    LicenseKind,
    LicenseStatus,
    Provider,
)
from service.domain.time import in_zone, local_to_utc
from service.uow import UnitOfWork

ZONE = "America/Phoenix"
EVERY_DAY = range(7)

FIRST_NAMES = ["Avery", "Blake", "Camila", "Dario", "Elif", "Farah", "Gideon", "Hana", "Ines",
               "Jonah", "Kiona", "Lucia", "Mateo", "Nadia", "Omar", "Paloma", "Quinn", "Rosa",
               "Soren", "Talia", "Uriel", "Vera", "Wren", "Ximena", "Yusuf", "Zara"]
LAST_NAMES = ["Alvarado", "Benally", "Castillo", "Delgado", "Ekwueme", "Fitzgerald", "Garza",
              "Halvorsen", "Iwasaki", "Jaramillo", "Kowalczyk", "Lindqvist", "Montoya",
              "Nakai", "Okafor", "Petrakis", "Quintero", "Rasmussen", "Sandoval", "Tsosie"]
CREDENTIALS = [Credential.MD, Credential.DO, Credential.NP, Credential.PA]

# The demo clinic's service types (service/demo.py), a longer horizon for the consultation.
SERVICE_TYPES: dict[str, dict[str, Any]] = {
    "consultation": dict(name="Telehealth consultation", modality=Modality.TELEHEALTH,
                         duration_minutes=60, buffer_after_minutes=10, min_notice_minutes=120,
                         horizon_days=90, slot_interval_minutes=30, late_cancel_hours=24),
    "iv-infusion": dict(name="IV infusion", modality=Modality.IN_PERSON, duration_minutes=45,
                        recovery_minutes=60, buffer_before_minutes=15, buffer_after_minutes=15,
                        min_notice_minutes=24 * 60, horizon_days=90, slot_interval_minutes=15,
                        late_cancel_hours=48, needs_chair=True, needs_clearance=True),
    "follow-up": dict(name="Follow-up check-in", modality=Modality.TELEHEALTH,
                      duration_minutes=20, buffer_after_minutes=5, min_notice_minutes=60,
                      horizon_days=90, slot_interval_minutes=20, late_cancel_hours=12),
}


@dataclass
class Clinic:
    """Ids of what was seeded, and the first local day of the benchmark's calendar."""

    clinic_id: uuid.UUID
    virtual_id: uuid.UUID
    service_types: dict[str, ServiceType]
    provider_ids: list[uuid.UUID]
    patient_ids: list[uuid.UUID]
    first_day: date
    zone: str = ZONE
    bookings: int = 0
    chairs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def at(self, day: date, minutes: int) -> datetime:
        """The UTC instant of a local wall-clock time (minutes after midnight) on ``day``."""
        return local_to_utc(day, time(minutes // 60, minutes % 60), self.zone)

    def local_iso(self, instant: datetime) -> str:
        return in_zone(instant, self.zone).isoformat()


def npi(serial: int) -> str:
    """A fictional NPI with a valid check digit (Luhn over the 80840 prefix)."""
    base = f"1{serial:08d}"
    total = 0
    for index, digit in enumerate(reversed("80840" + base)):
        value = int(digit) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return base + str((10 - total % 10) % 10)


def _record_columns(now: datetime) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "created_at": now, "updated_at": now, "version": 1}


def unit_of_work(database: Database) -> UnitOfWork:
    return UnitOfWork(database.write_sessions, dialect=database.dialect)


def issue_key(database: Database, role: Role = Role.STAFF) -> str:
    """A fresh API key through the service's own use case (shown once, stored hashed)."""
    return keys.issue_key(unit_of_work(database), role=role, label=f"bench {role.value}").key


WeeklyPlan = Callable[[int], Iterable[tuple[str, int, time, time]]]


CLINIC_HOURS = (time(7), time(12))
VIDEO_HOURS = (time(12), time(20))


def clinic_and_telehealth(provider_index: int) -> Iterable[tuple[str, int, time, time]]:
    """In the clinic 07:00-12:00 and on video 12:00-20:00, every day."""
    for weekday in EVERY_DAY:
        yield "clinic", weekday, *CLINIC_HOURS
        yield "virtual", weekday, *VIDEO_HOURS


def seed_clinic(database: Database, *, providers: int, patients: int, chairs: int,
                hours: WeeklyPlan = clinic_and_telehealth, seed: int = 7) -> Clinic:
    """Locations, service types, providers with an active Arizona license and weekly hours,
    and cleared patients in Arizona."""
    rng = random.Random(seed)
    now = utcnow()
    today = now.date()
    first_day = in_zone(now, ZONE).date() + timedelta(days=1)
    with database.write_sessions() as session, session.begin():
        clinic = Location(name="Bench Clinic - Mesa Riverview", kind=LocationKind.CLINIC,
                          timezone=ZONE, address_line1="1 Fictional Way", city="Mesa",
                          state="AZ", postal_code="85201", chairs=chairs, rems_certified=True)
        virtual = Location(name="Bench Telehealth (video)", kind=LocationKind.VIRTUAL,
                           timezone=ZONE, chairs=0)
        session.add_all([clinic, virtual])
        types = {code: ServiceType(code=code, **values) for code, values in SERVICE_TYPES.items()}
        session.add_all(types.values())
        session.flush()
        where = {"clinic": clinic.id, "virtual": virtual.id}

        provider_rows, license_rows, hour_rows = [], [], []
        for index in range(providers):
            row = {**_record_columns(now), "name": _name(rng, doctor=True),
                   "credential": CREDENTIALS[index % len(CREDENTIALS)], "npi": npi(index + 1),
                   "timezone": ZONE, "is_prescriber": True, "is_rems_prescriber": index % 2 == 0,
                   "active": True}
            provider_rows.append(row)
            license_rows.append({
                **_record_columns(now), "provider_id": row["id"], "jurisdiction": "US-AZ",
                "kind": LicenseKind.LICENSE, "board": "Arizona Medical Board",
                "number": f"BENCH-{index + 1:05d}", "issued_on": today - timedelta(days=400),
                "expires_on": today + timedelta(days=400), "status": LicenseStatus.ACTIVE})
            for location, weekday, start, end in hours(index):
                hour_rows.append({**_record_columns(now), "provider_id": row["id"],
                                  "location_id": where[location], "weekday": weekday,
                                  "start_time": start, "end_time": end})
        patient_rows = [
            {**_record_columns(now), "first_name": rng.choice(FIRST_NAMES),
             "last_name": rng.choice(LAST_NAMES),
             "birth_date": date(1960, 1, 1) + timedelta(days=rng.randrange(15000)),
             "email": f"bench.patient{index}@example.com", "phone": None, "timezone": ZONE,
             "home_state": "AZ", "sms_consent": False, "email_consent": True,
             "rems_enrolled": True, "cleared_for_treatment": True, "active": True}
            for index in range(patients)
        ]
        for model, rows in ((Provider, provider_rows), (License, license_rows),
                            (WeeklyHours, hour_rows), (Patient, patient_rows)):
            if rows:
                session.execute(insert(model), rows)
    return Clinic(clinic_id=where["clinic"], virtual_id=where["virtual"], service_types=types,
                  provider_ids=[row["id"] for row in provider_rows],
                  patient_ids=[row["id"] for row in patient_rows], first_day=first_day,
                  chairs=chairs)


def _name(rng: random.Random, *, doctor: bool) -> str:
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    return f"Dr. {name}" if doctor else name


@dataclass(frozen=True)
class Placement:
    """One existing booking to write: who, where, which service, when."""

    provider_id: uuid.UUID
    patient_id: uuid.UUID
    location_id: uuid.UUID
    service: str
    start: datetime
    chair: int | None = None
    status: BookingStatus = BookingStatus.BOOKED


def insert_bookings(database: Database, clinic: Clinic, placements: Sequence[Placement]) -> int:
    """Bulk-insert bookings with the blocks the service computes for them."""
    now = utcnow()
    rows = []
    for placed in placements:
        service_type = clinic.service_types[placed.service]
        rules = search.rules_of(service_type)
        provider = engine.provider_block(placed.start, rules)
        rows.append({
            **_record_columns(now), "patient_id": placed.patient_id,
            "provider_id": placed.provider_id, "service_type_id": service_type.id,
            "location_id": placed.location_id, "status": placed.status,
            "starts_at": placed.start, "ends_at": engine.visit_block(placed.start, rules).end,
            "provider_starts_at": provider.start, "provider_ends_at": provider.end,
            "hold_ends_at": engine.chair_block(placed.start, rules).end,
            "chair_number": placed.chair,
            "patient_state": "AZ" if service_type.modality == Modality.TELEHEALTH else None,
            "ride_home_confirmed": service_type.needs_chair, "late_cancellation": False,
        })
    with database.write_sessions() as session, session.begin():
        for offset in range(0, len(rows), 2000):
            session.execute(insert(Booking), rows[offset:offset + 2000])
    clinic.bookings += len(rows)
    return len(rows)
