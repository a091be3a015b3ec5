"""No double booking under concurrency: the database decides, not only a Python check."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from service.domain.bookings.models import Booking, BookingStatus
from service.domain.errors import Conflict
from service.extensions import unit_of_work
from tests.factories import NPIS
from tests.scenario import build_clinic

CLIENTS = 12
ROUNDS = 2


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def _race(app, clinic, patients, start, service="consultation") -> list[int]:
    barrier = threading.Barrier(len(patients))
    statuses: list[int] = []
    lock = threading.Lock()
    service_type = clinic.services[service]
    location = clinic.virtual if service == "consultation" else clinic.clinic

    def book(patient):
        client = app.test_client()
        body = {"patient_id": patient["id"], "provider_id": clinic.doctor["id"],
                "service_type_id": service_type["id"], "location_id": location["id"],
                "start": start.isoformat(), "patient_state": "AZ"}
        barrier.wait()
        response = client.post("/api/v1/bookings", json=body, headers={
            "Authorization": f"Bearer {clinic.api.tokens['staff']}"})
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=book, args=(p,)) for p in patients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def test_concurrent_clients_booking_one_slot_get_exactly_one_201(app, clinic):
    patients = [clinic.add_patient(first_name=f"Racer{i}") for i in range(CLIENTS)]
    for round_number in range(ROUNDS):
        start = clinic.at(13 + round_number)
        statuses = _race(app, clinic, patients, start)
        assert sorted(statuses) == [201] + [409] * (CLIENTS - 1), statuses


def test_overlapping_rows_written_past_the_python_check_are_refused(app, clinic):
    """Insert an overlapping booking directly (no Python check): PostgreSQL's exclusion
    constraint refuses it and the refusal becomes the same slot_unavailable conflict."""
    if app.extensions["clinic.database"].dialect != "postgresql":
        pytest.skip("exclusion constraints are PostgreSQL's; SQLite serializes writers")
    first = clinic.book("consultation", clinic.at(14)).get_json()
    other = clinic.add_patient(first_name="Sneaky")
    with app.app_context():
        uow = unit_of_work()
        with pytest.raises(Conflict) as refused, uow:
            row = uow.session.scalar(select(Booking).where(Booking.id == uuid.UUID(first["id"])))
            copy = Booking(
                patient_id=uuid.UUID(other["id"]), provider_id=row.provider_id,
                service_type_id=row.service_type_id, location_id=row.location_id,
                status=BookingStatus.BOOKED, starts_at=row.starts_at + timedelta(minutes=30),
                ends_at=row.ends_at + timedelta(minutes=30),
                provider_starts_at=row.provider_starts_at + timedelta(minutes=30),
                provider_ends_at=row.provider_ends_at + timedelta(minutes=30),
                hold_ends_at=row.hold_ends_at + timedelta(minutes=30))
            uow.session.add(copy)
            uow.commit()
        assert refused.value.code == "slot_unavailable"


def test_cancelled_rows_do_not_block_in_the_database(app, clinic, api):
    first = clinic.book("consultation", clinic.at(14)).get_json()
    api.post(f"/api/v1/bookings/{first['id']}/cancel", json={"reason": "moved"})
    other = clinic.add_patient(first_name="Next")
    assert clinic.book("consultation", clinic.at(14), patient=other).status_code == 201


def test_two_providers_can_book_the_same_time(clinic):
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    patient = clinic.add_patient(first_name="Second")
    assert clinic.book("consultation", clinic.at(14)).status_code == 201
    assert clinic.book("consultation", clinic.at(14), provider=other,
                       patient=patient).status_code == 201
