"""``POST /bookings`` runs its transaction without an ORM session (``UnitOfWork.run(direct=
True)``, issue 14): the same statements in the same order, the same rows (the booking, its
history, its reminders, the change feed, the webhook deliveries, the audit row), the same
answer as the slow path (the transaction run through a session, as before), on both
databases. A handler that adds an ORM instance (a webhook delivery) gets a session joined to
the transaction, which commits everything together; a failure leaves nothing."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import event, insert, select

from service import uow as uow_module
from service.db import hear_direct_commits
from service.domain.audit.models import AuditEvent, AuditOutcome
from service.domain.bookings.history import BookingEvent
from service.domain.bookings.models import Booking
from service.domain.calendar.models import BookingChange, SyncCounter, WebhookDelivery
from service.domain.reminders.models import Reminder
from service.domain.webhooks import services as webhooks
from service.uow import UnitOfWork
from tests.scenario import build_clinic

_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)")
_VOLATILE = {"id", "booking_id", "created_at", "updated_at", "occurred_at", "changed_at",
             "starts_at", "ends_at", "provider_starts_at", "provider_ends_at", "hold_ends_at",
             "due_at", "next_attempt_at", "request_id", "resource_id", "seq", "dedupe_key",
             "patient_id", "event_id", "payload", "client_address"}


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def _slow_path(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every transaction through a session, as before ``run(direct=True)``."""
    run = UnitOfWork.run
    monkeypatch.setattr(UnitOfWork, "run",
                        lambda self, work, direct=False: run(self, work, direct=False))


def _rows(database, model, booking_id: uuid.UUID) -> list[dict]:  # type: ignore[no-untyped-def]
    """The rows of ``model`` about the booking, without the values that differ from one
    booking to the next (ids, times)."""
    table = model.__table__
    if model is AuditEvent:
        where = table.c.resource_id == str(booking_id)
    elif model is Booking:
        where = table.c.id == booking_id
    else:
        where = table.c.booking_id == booking_id
    order = [c for c in (table.c.get("kind"), table.c.get("due_at")) if c is not None]
    with database.read_sessions() as session:
        found = session.execute(select(table).where(where).order_by(*order)).mappings().all()
    return [{key: value for key, value in row.items() if key not in _VOLATILE}
            for row in found]


def _booked(app, clinic, hour: int):  # type: ignore[no-untyped-def]
    """Book at ``hour``: the statements the writer ran (their text; "COMMIT" where a
    transaction committed),
    the sessions of the write factory that began a transaction, the answer and the rows."""
    database = app.extensions["clinic.database"]
    statements: list[str] = []
    began: list[object] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if "FROM api_keys" not in statement and "api_keys" not in statement[:40]:
            statements.append(statement)

    def committed(_conn) -> None:  # type: ignore[no-untyped-def]
        statements.append("COMMIT")

    def begun(session, *_args) -> None:  # type: ignore[no-untyped-def]
        began.append(session)

    event.listen(database.writer, "before_cursor_execute", count)
    event.listen(database.writer, "commit", committed)
    event.listen(database.write_sessions, "after_begin", begun)
    try:
        response = clinic.book("consultation", clinic.at(hour))
    finally:
        event.remove(database.writer, "before_cursor_execute", count)
        event.remove(database.writer, "commit", committed)
        event.remove(database.write_sessions, "after_begin", begun)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    booking_id = uuid.UUID(body["id"])
    rows = {model.__name__: _rows(database, model, booking_id) for model in (
        Booking, BookingEvent, Reminder, BookingChange, AuditEvent)}
    with database.read_sessions() as session:
        rows["deliveries"] = [
            (d.event_type, d.subscription_id) for d in session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.payload.contains(str(booking_id))))]
    answer = _without_instants({key: value for key, value in body.items() if key != "id"})
    return statements, began, answer, rows


def _without_instants(value):  # type: ignore[no-untyped-def]
    """The answer with every instant (which differs from one booking to the next) masked."""
    if isinstance(value, dict):
        return {key: _without_instants(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_instants(item) for item in value]
    return "<instant>" if isinstance(value, str) and _INSTANT.fullmatch(value) else value


@pytest.mark.parametrize("hook", [False, True], ids=["no-subscription", "a-subscription"])
def test_a_booking_without_a_session_writes_what_the_session_wrote(app, api, clinic,
                                                                    monkeypatch, hook):
    if hook:
        made = api.post("/api/v1/webhooks", role="integration", json={
            "url": "https://ehr.example.com/hooks/1", "events": ["booking.created"]})
        assert made.status_code == 201, made.get_json()
    assert clinic.book("consultation", clinic.at(13)).status_code == 201  # warm: the key
    fast = _booked(app, clinic, 14)
    with monkeypatch.context() as patch:
        _slow_path(patch)
        slow = _booked(app, clinic, 15)
    statements, began, answer, rows = fast
    assert statements == slow[0]  # the same statements, in the same order
    # One transaction: the audit row's INSERT the last statement before its one COMMIT.
    assert statements.count("COMMIT") == 1 and statements[-1] == "COMMIT"
    assert "INSERT INTO audit_events" in statements[-2]
    assert answer == slow[2]
    assert rows == slow[3]
    # What the handlers and the audit wrote, all of it.
    assert [r["kind"] for r in rows["BookingEvent"]] == ["booking.created"]
    assert [r["kind"] for r in rows["BookingChange"]] == ["booking.created"]
    assert rows["Reminder"]
    assert [r["outcome"] for r in rows["AuditEvent"]] == [AuditOutcome.SUCCESS]
    assert len(rows["deliveries"]) == (1 if hook else 0)
    # The slow path began one session's transaction; the fast one none, unless a handler
    # added an instance (the delivery), whose session joined the transaction.
    assert len(slow[1]) == 1
    assert len(began) == (1 if hook else 0)


def test_a_failed_booking_without_a_session_leaves_nothing(app, api, clinic, monkeypatch):
    """A handler failing after the booking's INSERT (no session made): nothing of the
    booking stays, the answer is an error, and the next booking works."""
    def failing(*_args, **_kwargs) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("a handler failed")

    database = app.extensions["clinic.database"]
    with database.read_sessions() as session:
        before = len(session.scalars(select(Booking.id)).all())
    with monkeypatch.context() as patch:
        patch.setattr(webhooks, "_enqueue", failing)
        assert clinic.book("consultation", clinic.at(13)).status_code == 500
    with database.read_sessions() as session:
        assert len(session.scalars(select(Booking.id)).all()) == before
    assert clinic.book("consultation", clinic.at(13)).status_code == 201


# The unit of work's direct transactions --------------------------------------------------


def _counter(database, name: str) -> int | None:  # type: ignore[no-untyped-def]
    with database.read_sessions() as session:
        return session.scalar(select(SyncCounter.value).where(SyncCounter.name == name))


def test_a_session_asked_for_joins_the_direct_transaction(app):
    database = app.extensions["clinic.database"]
    unit = UnitOfWork(database.write_sessions, dialect=database.dialect)
    names = [f"direct-{uuid.uuid4().hex[:8]}" for _ in range(2)]

    def work() -> object:
        connection = unit.connection()
        connection.execute(insert(SyncCounter.__table__), {"name": names[0], "value": 1})
        assert unit._session is None  # nothing asked for a session yet
        unit.session.add(SyncCounter(name=names[1], value=2))
        assert unit.session.connection() is connection
        return connection

    unit.run(work, direct=True)
    assert (_counter(database, names[0]), _counter(database, names[1])) == (1, 2)

    def failing() -> None:
        unit.connection().execute(insert(SyncCounter.__table__),
                                  {"name": names[0] + "x", "value": 1})
        unit.session.add(SyncCounter(name=names[1] + "x", value=2))
        unit.session.flush()
        raise RuntimeError("after both")

    with pytest.raises(RuntimeError):
        unit.run(failing, direct=True)
    assert _counter(database, names[0] + "x") is None
    assert _counter(database, names[1] + "x") is None


def test_a_direct_transaction_calls_the_commit_hooks_around_its_commit(app, monkeypatch):
    database = app.extensions["clinic.database"]
    sessions = database.write_sessions
    monkeypatch.setattr(sessions, "kw", {**sessions.kw, "info": dict(sessions.kw["info"])})
    name = f"hooks-{uuid.uuid4().hex[:8]}"
    heard: list[tuple[str, int | None]] = []
    hear_direct_commits(sessions, before=lambda t: heard.append(("before", t.info.get("n"))),
                        after=lambda t: heard.append(("after", _counter(database, name))))
    unit = uow_module.UnitOfWork(sessions, dialect=database.dialect)

    def work() -> None:
        unit.connection().execute(insert(SyncCounter.__table__), {"name": name, "value": 7})
        unit.info["n"] = 1

    unit.run(work, direct=True)
    assert heard == [("before", 1), ("after", 7)]  # the row committed before "after"
