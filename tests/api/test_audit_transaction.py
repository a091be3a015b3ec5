"""A read's audit row in the request's one transaction (PostgreSQL without a replica), and
the answer still withheld when that row cannot be written."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from sqlalchemy import event

from service import db
from service.domain.audit import services as audit_services
from service.domain.audit.models import AuditEvent, AuditOutcome
from service.domain.bookings import reading
from tests.api.test_audit import clinic, last_row_id, rows_after  # noqa: F401 - fixture
from tests.api.test_directory import assert_problem


def _booking(clinic) -> str:  # noqa: F811
    response = clinic.book("consultation", clinic.at(14))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_a_read_and_its_row_share_one_connection_in_autocommit(app, api, clinic):  # noqa: F811
    database = app.extensions["clinic.database"]
    booking_id = _booking(clinic)
    api.get(f"/api/v1/bookings/{booking_id}")  # the key is looked up (and cached) once
    before = last_row_id(app)
    seen: dict[str, list] = {"checkouts": [], "commits": [], "statements": []}

    def checkout(*_):
        seen["checkouts"].append(True)

    def commit(*_):
        seen["commits"].append(True)

    def statement(connection, _cursor, text, *_):
        # (its first word, whether it committed on its own: psycopg's autocommit)
        seen["statements"].append((text.split(None, 1)[0].upper(), getattr(
            connection.connection.dbapi_connection, "autocommit", None)))

    engines = {id(e): e for e in (database.writer, database.reader)}.values()
    for engine in engines:
        event.listen(engine.pool, "checkout", checkout)
        event.listen(engine, "commit", commit)
        event.listen(engine, "before_cursor_execute", statement)
    try:
        response = api.get(f"/api/v1/bookings/{booking_id}")
    finally:
        for engine in engines:
            event.remove(engine.pool, "checkout", checkout)
            event.remove(engine, "commit", commit)
            event.remove(engine, "before_cursor_execute", statement)
    assert response.status_code == 200
    [row] = rows_after(app, before)  # committed: another connection reads it
    assert (row.action.value, row.outcome.value) == ("read", "success")
    assert row.resource_id == booking_id
    assert row.patient_id == uuid.UUID(clinic.patient["id"])
    if database.reader is database.writer:
        # PostgreSQL, no replica: one connection in autocommit, the reads (the key's, if
        # not cached, and the booking's) then the row, each its own transaction (no BEGIN,
        # no COMMIT): the row's INSERT has committed when it returns, nothing is left.
        assert len(seen["checkouts"]) == 1
        kinds = [kind for kind, _ in seen["statements"]]
        assert kinds[-1] == "INSERT" and set(kinds[:-1]) == {"SELECT"}
        assert all(autocommit for _, autocommit in seen["statements"])
        assert seen["commits"] == []
    else:  # SQLite: the read on the reader engine, the row in a transaction of its own
        assert len(seen["commits"]) == 1


def test_a_refused_read_and_its_row_share_the_transaction(app, api, clinic):  # noqa: F811
    booking_id = _booking(clinic)
    before = last_row_id(app)
    response = api.get(f"/api/v1/bookings/{booking_id}", role="me")  # the patient's own
    assert response.status_code == 200
    response = api.get(f"/api/v1/bookings/{uuid.uuid4()}")
    assert response.status_code == 404
    rows = rows_after(app, before)
    assert [(r.action.value, r.outcome.value) for r in rows] == [
        ("read", "success"), ("read", "not_found")]


@pytest.mark.parametrize("path", ["/api/v1/bookings/{id}", "/api/v1/bookings"])
def test_a_row_the_database_refuses_withholds_the_answer(app, api, clinic, monkeypatch,  # noqa: F811
                                                         path):
    booking_id = _booking(clinic)
    original = audit_services.build_event

    def unwritable(session, context, outcome, **kwargs):
        row = original(session, context, outcome, **kwargs)
        row.outcome = None  # NOT NULL: the INSERT (or its commit) fails in the database
        return row

    monkeypatch.setattr(audit_services, "build_event", unwritable)
    before = last_row_id(app)
    response = api.get(path.format(id=booking_id))
    assert_problem(response, 503, "service_unavailable")
    assert "starts_at" not in response.get_data(as_text=True)
    monkeypatch.setattr(audit_services, "build_event", original)
    assert rows_after(app, before) == []
    # The request's transaction ended: the next read answers and leaves its row.
    assert api.get(f"/api/v1/bookings/{booking_id}").status_code == 200
    assert [r.outcome for r in rows_after(app, before)] == [AuditOutcome.SUCCESS]


def test_a_reads_connection_goes_back_to_the_pool_out_of_autocommit(app, api, clinic):  # noqa: F811
    """The request session's autocommit ends with its checkout: the pool hands the same
    connection to a writer next, whose statements must run in a transaction again."""
    database = app.extensions["clinic.database"]
    booking_id = _booking(clinic)
    returned: list[object] = []

    def checkin(dbapi_connection, _record):
        returned.append(getattr(dbapi_connection, "autocommit", None))

    event.listen(database.writer.pool, "checkin", checkin)
    try:
        response = api.get(f"/api/v1/bookings/{booking_id}")
    finally:
        event.remove(database.writer.pool, "checkin", checkin)
    assert response.status_code == 200
    if database.request_autocommit:  # PostgreSQL without a replica: it was in autocommit
        assert returned and not any(returned)
        with database.write_sessions() as session:
            assert session.connection().connection.dbapi_connection.autocommit is False


def test_a_booking_inserted_directly_is_the_created_record_of_its_row(app, api, clinic):  # noqa: F811
    """``POST /bookings`` inserts the booking with a DirectStatement, not through
    ``Session.execute``: the audit still hears of it (``service.db.announce_insert``), so
    its request's row names the booking and its patient as for any created record."""
    before = last_row_id(app)
    booking = _booking(clinic)
    rows = [row for row in rows_after(app, before) if row.method == "POST"]
    assert [(row.action.value, row.resource_type, row.resource_id, str(row.patient_id),
             row.outcome) for row in rows] == [
        ("create", "booking", booking, clinic.patient["id"], AuditOutcome.SUCCESS)]


def test_the_write_sessions_hear_a_direct_insert_before_it_runs(app):
    """``announce_insert`` tells the write sessions' hook (the audit's) of a row, and a
    session with no hook (the read sessions') is told nothing."""
    database = app.extensions["clinic.database"]
    heard = []
    session = database.write_sessions()
    try:
        session.info[db._INSERT_HOOK] = lambda *told: heard.append(told)
        db.announce_insert(session, AuditEvent.__table__, {"id": 1})
    finally:
        session.close()
    assert heard == [(session, AuditEvent.__table__, {"id": 1})]
    reader = database.read_sessions()
    try:
        assert db._INSERT_HOOK not in reader.info
        db.announce_insert(reader, AuditEvent.__table__, {"id": 1})
    finally:
        reader.close()
    fresh = database.write_sessions()
    try:
        assert callable(fresh.info[db._INSERT_HOOK])  # the audit's, installed with the app
    finally:
        fresh.close()


def _sessions_of_a_read(app, api, clinic, monkeypatch, *, noted: bool = True) -> list:  # noqa: F811
    """Read a booking, its key cached (as a worker does; the suite's app looks it up at
    every request), and check its row names the patient; the request sessions it opened
    (``Database.request_sessions`` called). ``noted``: the read notes what it read
    (``audit.note_read``)."""
    booking_id = _booking(clinic)
    monkeypatch.setitem(app.config, "SETTINGS", dataclasses.replace(
        app.config["SETTINGS"], api_key_cache_seconds=60))
    api.get(f"/api/v1/bookings/{booking_id}")  # the key is looked up (and cached) once
    if not noted:
        monkeypatch.setattr(reading, "note_read", lambda *args: None)
    database = app.extensions["clinic.database"]
    sessions, opened = database.request_sessions, []

    def counted(**kwargs):
        opened.append(True)
        return sessions(**kwargs)

    monkeypatch.setattr(database, "request_sessions", counted)
    before = last_row_id(app)
    assert api.get(f"/api/v1/bookings/{booking_id}").status_code == 200
    [row] = rows_after(app, before)
    assert row.patient_id == uuid.UUID(clinic.patient["id"])
    return opened


def test_a_bookings_read_and_its_row_open_no_session(app, api, clinic, monkeypatch):  # noqa: F811
    """``GET /bookings/{id}`` runs both its statements on the request's connection and its
    row names the patient from what the read noted (``UnitOfWork.seen``): no ORM session is
    made, cleared or closed for it (``UnitOfWork.session``, opened on use)."""
    opened = _sessions_of_a_read(app, api, clinic, monkeypatch)
    if app.extensions["clinic.database"].request_autocommit:
        assert opened == []


def test_a_row_whose_records_were_not_noted_reads_them_in_a_session(app, api, clinic,  # noqa: F811
                                                                    monkeypatch):
    """Without the read's notes, the row still names the booking's patient: the session is
    opened then, for the query (``build_event``'s session, given as a callable)."""
    opened = _sessions_of_a_read(app, api, clinic, monkeypatch, noted=False)
    if app.extensions["clinic.database"].request_autocommit:
        assert opened == [True]
