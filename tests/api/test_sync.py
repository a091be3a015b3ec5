"""The booking changes feed through HTTP: full sync, changes, incremental, expiry, filters,
visibility; and no change lost when writers commit concurrently."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from service import bootstrap
from service.domain.access.actor import Actor, Role
from service.domain.bookings.events import BookingCompleted
from service.domain.bookings.models import Booking
from service.domain.calendar import sync
from service.domain.calendar.models import BookingChange, SyncCounter
from service.extensions import database, unit_of_work
from service.messagebus import MessageBus
from service.uow import UnitOfWork
from tests.api.test_directory import assert_problem
from tests.factories import NPIS
from tests.scenario import build_clinic

PATH = "/api/v1/sync/bookings"


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def page(api, role: str = "staff", **params):
    response = api.get(PATH, query_string=params, role=role)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def drain(api, role: str = "staff", **params) -> tuple[list[dict], str]:
    """Follow next_page_token to the end: every item, and the next sync token."""
    items: list[dict] = []
    body = page(api, role, **params)
    while True:
        items += body["items"]
        if body["next_page_token"] is None:
            assert body["next_sync_token"]
            return items, body["next_sync_token"]
        assert body["next_sync_token"] is None
        body = page(api, role, page_token=body["next_page_token"],
                    **{k: v for k, v in params.items() if k == "page_size"})


def book(clinic, hour: int, day: int = 0, **extra):
    response = clinic.book("consultation",
                           clinic.at(hour, day=clinic.day + timedelta(days=day)), **extra)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_sync_round_trip_full_change_incremental_expired(clinic, api):
    first, held, third = book(clinic, 13), book(clinic, 14, hold=True), book(clinic, 15)
    cancelled_before = book(clinic, 16)
    api.post(f"/api/v1/bookings/{cancelled_before['id']}/cancel", json={"reason": "x"})

    # Full: every booking not cancelled, page by page; the last page has the sync token.
    one = page(api, page_size=2)
    assert len(one["items"]) == 2 and one["next_page_token"] and one["next_sync_token"] is None
    items, token = drain(api, page_size=2)
    assert sorted(i["id"] for i in items) == sorted(b["id"] for b in (first, held, third))
    assert all(i["deleted"] is False and i["patient_id"] for i in items)

    # Nothing changed: an empty page and a token.
    quiet = page(api, sync_token=token)
    assert quiet["items"] == [] and quiet["next_sync_token"]

    # Changes: a move, a cancellation (a tombstone), a new booking; in order of change.
    moved = api.post(f"/api/v1/bookings/{first['id']}/reschedule",
                     json={"start": clinic.at(13, day=clinic.day + timedelta(days=1)).isoformat()},
                     headers={"If-Match": '"v1"'})
    assert moved.status_code == 200
    api.post(f"/api/v1/bookings/{held['id']}/cancel", json={"reason": "Patient request"})
    fourth = book(clinic, 16)
    changes = page(api, sync_token=quiet["next_sync_token"])
    assert [i["id"] for i in changes["items"]] == [first["id"], held["id"], fourth["id"]]
    assert (datetime.fromisoformat(changes["items"][0]["start"])
            == datetime.fromisoformat(moved.get_json()["start"]))
    assert changes["items"][1] == {
        "id": held["id"], "status": "cancelled", "deleted": True,
        "cancelled_at": changes["items"][1]["cancelled_at"],
        "updated_at": changes["items"][1]["updated_at"], "version": 2}

    # Incremental again: only what changed since that answer.
    api.post(f"/api/v1/bookings/{third['id']}/confirm")  # booked already: 409, no change
    api.post(f"/api/v1/bookings/{fourth['id']}/cancel", json={"reason": "Sick"})
    again = page(api, sync_token=changes["next_sync_token"])
    assert [(i["id"], i["deleted"]) for i in again["items"]] == [(fourth["id"], True)]
    assert page(api, sync_token=again["next_sync_token"])["items"] == []

    # Expired (older than SYNC_TOKEN_RETENTION_DAYS) or unreadable: 410, sync from scratch.
    old = sync.SyncToken(mode="incremental", position=1,
                         issued_at=datetime.now(UTC) - timedelta(days=31)).encode()
    assert_problem(api.get(PATH, query_string={"sync_token": old}), 410, "sync_token_expired")
    for bad in ("nonsense", token[:-3], "e30", "x" * 512):
        assert_problem(api.get(PATH, query_string={"sync_token": bad}), 410,
                       "sync_token_expired")
    future = sync.SyncToken(mode="incremental", position=10**9,
                            issued_at=datetime.now(UTC)).encode()
    assert_problem(api.get(PATH, query_string={"sync_token": future}), 410,
                   "sync_token_expired")
    assert_problem(api.get(PATH, query_string={"sync_token": one["next_page_token"]}), 410,
                   "sync_token_expired")  # a page token is not a sync token


def test_a_token_cannot_be_combined_with_filters(clinic, api):
    book(clinic, 13)
    _, token = drain(api)
    for extra in ({"provider_id": clinic.doctor["id"]}, {"patient_id": clinic.patient["id"]},
                  {"page_token": token}):
        response = api.get(PATH, query_string={"sync_token": token, **extra})
        assert_problem(response, 422, "sync_token_with_filters")
    assert_problem(api.get(PATH, query_string={"since": "yesterday"}), 422,
                   "validation_failed")


def test_the_token_keeps_the_filters_of_its_full_sync(clinic, api):
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    mine = book(clinic, 13)
    theirs = book(clinic, 13, day=1, provider=other)
    items, token = drain(api, provider_id=clinic.doctor["id"])
    assert [i["id"] for i in items] == [mine["id"]]
    api.post(f"/api/v1/bookings/{theirs['id']}/cancel", json={"reason": "x"})
    api.post(f"/api/v1/bookings/{mine['id']}/cancel", json={"reason": "x"})
    changes = page(api, sync_token=token)
    assert [i["id"] for i in changes["items"]] == [mine["id"]]


def test_incremental_pages_miss_nothing(clinic, api):
    _, token = drain(api)
    created = [book(clinic, hour, day) for day in range(2) for hour in (13, 14, 15, 16)]
    api.post(f"/api/v1/bookings/{created[0]['id']}/cancel", json={"reason": "x"})
    items, _ = drain(api, sync_token=token, page_size=3)
    ids = [i["id"] for i in items]
    assert set(ids) == {b["id"] for b in created}
    assert ids[-1] == created[0]["id"]  # its latest change came last


def test_patients_and_providers_sync_only_what_they_may_see(clinic, api):
    other_patient = clinic.add_patient(first_name="Other")
    other_doctor = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    mine = book(clinic, 13)
    theirs = book(clinic, 14, patient=other_patient)
    elsewhere = book(clinic, 15, patient=other_patient, provider=other_doctor)
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    items, patient_token = drain(api, role="me")
    assert [i["id"] for i in items] == [mine["id"]]
    items, doctor_token = drain(api, role="doc")
    assert sorted(i["id"] for i in items) == sorted([mine["id"], theirs["id"]])
    for booking in (mine, theirs, elsewhere):
        api.post(f"/api/v1/bookings/{booking['id']}/cancel", json={"reason": "x"})
    assert [i["id"] for i in page(api, "me", sync_token=patient_token)["items"]] == [mine["id"]]
    assert ({i["id"] for i in page(api, "doc", sync_token=doctor_token)["items"]}
            == {mine["id"], theirs["id"]})
    assert_problem(api.get(PATH, role=None), 401, "unauthenticated")


def test_the_changes_of_one_transaction_are_numbered_in_order_after_the_last(clinic, api, app):
    """A transaction's changes take the next numbers, consecutive, in the order they
    happened (PostgreSQL: the counter's upsert and the rows are one statement)."""
    bookings = [book(clinic, hour) for hour in (13, 14, 15)]
    with app.app_context():
        db = database()
        with db.read_sessions() as session:
            before = session.scalar(select(func.max(BookingChange.seq)))
        feed_only = MessageBus({BookingCompleted: []}, final=bootstrap.FINAL)
        with UnitOfWork(db.write_sessions, dialect=db.dialect, bus=feed_only) as uow:
            for booking in reversed(bookings):
                found = uow.session.get(Booking, uuid.UUID(booking["id"]))
                uow.record(BookingCompleted.of(found, occurred_at=datetime.now(UTC)))
            uow.commit()
        with db.read_sessions() as session:
            rows = session.execute(select(BookingChange.seq, BookingChange.booking_id,
                                          BookingChange.kind)
                                   .where(BookingChange.seq > before)
                                   .order_by(BookingChange.seq)).all()
            counter = session.scalar(select(SyncCounter.value))
    assert [r.seq for r in rows] == [before + 1, before + 2, before + 3] and counter == before + 3
    assert [str(r.booking_id) for r in rows] == [b["id"] for b in reversed(bookings)]
    assert {r.kind for r in rows} == {"booking.completed"}


# Concurrent writers ---------------------------------------------------------------------------


def test_a_change_numbered_later_is_not_visible_before_an_earlier_one_commits(clinic, api, app):
    """Writer 1 has its sequence number but has not committed; writer 2 commits a later
    change. A reader must not see writer 2's change (and skip writer 1's for good): writer 2
    waits for writer 1's commit."""
    x, y = book(clinic, 13), book(clinic, 14)
    _, token = drain(api)
    numbered, release = threading.Event(), threading.Event()
    done: list[str] = []

    @event.listens_for(Session, "before_commit")
    def pause(session):  # runs after the sequence numbers were taken (registered later)
        if session.info.get("pause"):
            numbered.set()
            assert release.wait(timeout=30)

    # The change feed's own step, as bootstrap wires it, and no other handler.
    feed_only = MessageBus({BookingCompleted: []}, final=bootstrap.FINAL)

    def write(booking_id: str, *, paused: bool) -> None:
        with app.app_context():
            db = database()
            with UnitOfWork(db.write_sessions, dialect=db.dialect, bus=feed_only) as uow:
                uow.session.info["pause"] = paused
                booking = uow.session.get(Booking, uuid.UUID(booking_id))
                uow.record(BookingCompleted.of(booking, occurred_at=datetime.now(UTC)))
                uow.commit()
        done.append(booking_id)

    first = threading.Thread(target=write, args=(x["id"],), kwargs={"paused": True})
    second = threading.Thread(target=write, args=(y["id"],), kwargs={"paused": False})
    try:
        first.start()
        assert numbered.wait(timeout=30)
        second.start()
        time.sleep(0.3)
        assert done == []  # writer 2 waits for writer 1 (counter row lock / single writer)
        # Read through the use case: over HTTP the read's audit row is a write, which on
        # SQLite (one writer) would wait for writer 1, itself paused until this returns.
        with app.app_context():
            assert sync.sync_bookings(
                unit_of_work(read_only=True), Actor(key_id=None, role=Role.STAFF),
                now=datetime.now(UTC), retention=timedelta(days=1), page_size=10,
                sync_token=token).bookings == []
    finally:
        release.set()
        first.join(timeout=30)
        second.join(timeout=30)
        event.remove(Session, "before_commit", pause)
    assert sorted(done) == sorted([x["id"], y["id"]])
    # Both visible now, writer 1's change first: it was numbered first.
    assert [i["id"] for i in page(api, sync_token=token)["items"]] == [x["id"], y["id"]]


def test_concurrent_writers_lose_no_change_for_a_polling_reader(clinic, api, app):
    doctors = [clinic.doctor] + [clinic.add_provider(f"Dr. {n}", NPIS[i + 1])
                                 for i, n in enumerate(("Ben Cole", "Cy Dorn"))]
    patients = [clinic.add_patient(first_name=f"Racer{i}") for i in range(len(doctors))]
    _, token = drain(api)
    slots = [(day, hour) for day in range(3) for hour in (13, 14, 15, 16)]
    created: list[str] = []
    seen: set[str] = set()
    errors: list[object] = []
    lock = threading.Lock()
    writers_done = threading.Event()
    auth = {"Authorization": f"Bearer {api.tokens['staff']}"}

    def writer(doctor, patient) -> None:
        client = app.test_client()
        for day, hour in slots:
            start = clinic.at(hour, day=clinic.day + timedelta(days=day))
            response = client.post("/api/v1/bookings", headers=auth, json={
                "patient_id": patient["id"], "provider_id": doctor["id"],
                "service_type_id": clinic.services["consultation"]["id"],
                "location_id": clinic.virtual["id"], "start": start.isoformat(),
                "patient_state": "AZ"})
            with lock:
                if response.status_code == 201:
                    created.append(response.get_json()["id"])
                else:
                    errors.append(response.get_json())

    def reader() -> None:
        nonlocal token
        client = app.test_client()
        while True:
            finished = writers_done.is_set()
            body = client.get(PATH, headers=auth, query_string={"sync_token": token}).get_json()
            seen.update(item["id"] for item in body["items"])
            token = body["next_sync_token"] or body["next_page_token"]
            if finished and body["next_page_token"] is None:
                return

    threads = [threading.Thread(target=writer, args=pair) for pair in zip(doctors, patients)]
    polling = threading.Thread(target=reader)
    polling.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    writers_done.set()
    polling.join(timeout=60)
    assert errors == []
    assert len(created) == len(doctors) * len(slots)
    assert seen == set(created)


def test_history_purge_forgets_changes_no_token_can_ask_for(clinic, api, app):
    from sqlalchemy import func, select, update

    from service.domain.calendar.history import purge_history
    from service.domain.calendar.models import BookingChange

    book(clinic, 14)
    with app.app_context():
        with unit_of_work() as uow:
            uow.session.execute(update(BookingChange).values(
                changed_at=datetime.now(UTC) - timedelta(days=45)))
            uow.commit()
        book(clinic, 15)
        purged = purge_history(unit_of_work(), now=datetime.now(UTC),
                               change_retention=timedelta(days=30))
        assert purged.changes >= 1
        with unit_of_work() as uow:
            left = uow.session.scalar(select(func.count()).select_from(BookingChange))
    assert left >= 1  # the recent change stays
    items, token = drain(api)
    assert len(items) == 2 and token  # a full sync is unaffected
