"""The message bus in the unit of work, on the real database: handlers run in the
transaction of the change (all or nothing), may record further events, the final handler
runs last; and a transaction that lost a real deadlock runs again (``uow.run``)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, text

from service import bootstrap
from service.config import Settings
from service.db import utcnow
from service.domain.access.actor import SYSTEM
from service.domain.bookings.events import BookingCreated
from service.domain.bookings.models import Booking
from service.domain.bookings.services import BookingRequest, create_booking
from service.domain.calendar.models import BookingChange
from service.domain.events import Event
from service.domain.reminders.models import Reminder
from service.extensions import database
from service.messagebus import MessageBus, UnknownEvent
from service.uow import RETRIES, UnitOfWork
from tests.scenario import build_clinic

HANDLERS = bootstrap.handlers(Settings())  # the service's handlers, default settings


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def _uow(app, bus: MessageBus | None) -> UnitOfWork:
    with app.app_context():
        db = database()
    return UnitOfWork(db.write_sessions, dialect=db.dialect, bus=bus)


def _request(clinic, hour: int = 14) -> BookingRequest:
    return BookingRequest(
        patient_id=uuid.UUID(clinic.patient["id"]), provider_id=uuid.UUID(clinic.doctor["id"]),
        service_type_id=uuid.UUID(clinic.services["consultation"]["id"]),
        location_id=uuid.UUID(clinic.virtual["id"]), start=clinic.at(hour), patient_state="AZ")


def _count(app, model) -> int:  # type: ignore[no-untyped-def]
    uow = _uow(app, None)
    with uow:
        return uow.session.scalar(select(func.count()).select_from(model))


@dataclass(frozen=True, kw_only=True)
class Noted(Event):
    """An event a handler records in turn (tests only)."""

    booking_id: uuid.UUID


def test_a_failing_handler_rolls_the_change_back(app, clinic):
    def broken(uow, event):  # type: ignore[no-untyped-def]
        raise RuntimeError("the outbox could not be written")

    bus = MessageBus({**HANDLERS, BookingCreated: [broken]}, final=bootstrap.FINAL)
    with pytest.raises(RuntimeError):
        create_booking(_uow(app, bus), SYSTEM, _request(clinic), now=utcnow())
    assert (_count(app, Booking), _count(app, Reminder), _count(app, BookingChange)) == (0, 0, 0)


def test_handlers_run_before_the_commit_in_order_and_may_record_more(app, clinic):
    seen: list[str] = []

    def first(uow, event):  # type: ignore[no-untyped-def]
        # Inside the booking's transaction: the booking is there, not yet committed.
        assert uow.session.get(Booking, event.booking_id) is not None
        seen.append("first")
        uow.record(Noted(booking_id=event.booking_id, occurred_at=event.occurred_at))

    def second(uow, event):  # type: ignore[no-untyped-def]
        seen.append("second")

    def noted(uow, event):  # type: ignore[no-untyped-def]
        seen.append("noted")

    def final(uow, events):  # type: ignore[no-untyped-def]
        seen.append(f"final:{len(events)}")

    bus = MessageBus({**HANDLERS, Noted: [noted],
                      BookingCreated: [first, second, *HANDLERS[BookingCreated]]},
                     final=[((BookingCreated, Noted), final), *bootstrap.FINAL])
    booking = create_booking(_uow(app, bus), SYSTEM, _request(clinic), now=utcnow())
    assert seen == ["first", "second", "noted", "final:2"]
    assert _count(app, Booking) == 1 and _count(app, Reminder) > 0
    uow = _uow(app, None)
    with uow:
        changes = uow.session.execute(select(BookingChange.booking_id, BookingChange.kind)).all()
    assert changes == [(booking.id, "booking.created")]


def test_an_event_nobody_declared_is_refused_and_nothing_commits(app, clinic):
    bus = MessageBus({**HANDLERS, BookingCreated: []})

    def work():  # type: ignore[no-untyped-def]
        uow.session.execute(text("INSERT INTO sync_counters (name, value) "
                                 "VALUES ('unknown-event', 1)"))
        uow.record(Noted(booking_id=uuid.uuid4(), occurred_at=utcnow()))

    uow = _uow(app, bus)
    with pytest.raises(UnknownEvent):
        uow.run(work)
    with uow:
        assert uow.session.scalar(text("SELECT count(*) FROM sync_counters")) == 0


def test_every_event_of_the_domain_is_declared_in_bootstrap():
    def subclasses(kind: type[Event]) -> set[type[Event]]:
        found = set(kind.__subclasses__())
        return found.union(*(subclasses(k) for k in found))

    domain = {k for k in subclasses(Event)
              if k.__module__.startswith("service.") and k.__subclasses__() == []}
    assert domain - set(HANDLERS) == set()


def test_a_transaction_that_lost_a_deadlock_runs_again(app):
    """Two writers lock the same two rows in opposite orders: PostgreSQL aborts one
    (SQLSTATE 40P01); its unit of work runs it again and both changes commit."""
    if app.extensions["clinic.database"].dialect != "postgresql":
        pytest.skip("SQLite serializes writers (BEGIN IMMEDIATE): no deadlock to lose")
    setup = _uow(app, None)
    with setup:
        setup.session.execute(text("INSERT INTO sync_counters (name, value) "
                                   "VALUES ('race-a', 0), ('race-b', 0)"))
        setup.commit()
    both_locked_one = threading.Barrier(2, timeout=30)
    attempts: list[str] = []
    failures: list[BaseException] = []

    def writer(first: str, second: str) -> None:
        uow = _uow(app, None)

        def work() -> None:
            attempts.append(first)
            bump = text("UPDATE sync_counters SET value = value + 1 WHERE name = :name")
            uow.session.execute(bump, {"name": first})
            if attempts.count(first) == 1:
                both_locked_one.wait()
            uow.session.execute(bump, {"name": second})

        try:
            uow.run(work)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=("race-a", "race-b")),
               threading.Thread(target=writer, args=("race-b", "race-a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(attempts) == 3 <= 2 * RETRIES  # one of the two ran twice
    with setup:
        values = dict(setup.session.execute(text(
            "SELECT name, value FROM sync_counters WHERE name LIKE 'race-%'")).all())
    assert values == {"race-a": 2, "race-b": 2}
