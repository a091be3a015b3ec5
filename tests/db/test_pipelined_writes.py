"""A booking's transaction, pipelined on PostgreSQL (``BoundedConnection.begin_pipelined``):
its statements grouped into three round trips, and every error answered as before.

The grouping: BEGIN with the parties' read, then the visit's facts, then the INSERT, the
change feed, the audit row and the COMMIT with one Sync (counted from libpq's own protocol
trace). The errors: a slot the database's constraint refuses (its error read only at the
commit) is the same 409 ``slot_unavailable`` with the same alternatives; a statement that
fails in the pipeline is raised as itself (not as the ``PipelineAborted`` of the statements
after it), at the next statement whose rows are read or at the commit; a lock held past
lock_timeout is a 503. After each, the pooled connection is clean: idle, out of pipeline
mode, out of the driver's autocommit, and the next transaction on it works.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import pq
from sqlalchemy import event, exc, func, insert, select, text

from service import uow
from service.app import create_app
from service.db import BoundedConnection, DirectStatement, begin_pipelined, utcnow
from service.domain.audit.models import AuditAction, AuditEvent, AuditOutcome
from service.domain.availability import placement
from service.domain.bookings.models import Booking
from service.domain.calendar.models import BookingChange
from tests.conftest import BACKEND
from tests.scenario import build_clinic

pytestmark = pytest.mark.skipif(BACKEND != "postgresql",
                                reason="psycopg's pipeline mode: PostgreSQL only")

AUDIT_COLUMNS = sorted(c.key for c in AuditEvent.__table__.columns if c.key != "id")
AUDIT_ROW = DirectStatement(insert(AuditEvent.__table__).inline(), columns=AUDIT_COLUMNS)
COUNT_AUDIT = DirectStatement(select(func.count().label("rows")).select_from(AuditEvent.__table__))


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def audit_row(**changes):
    return {"occurred_at": utcnow(), "key_id": None, "role": "staff",
            "action": AuditAction.READ, "resource_type": "booking", "resource_id": None,
            "patient_id": uuid.uuid4(), "outcome": AuditOutcome.SUCCESS, "method": "GET",
            "request_id": "pipelined", "client_address": None, **changes}


@contextmanager
def traced(engine, path: Path) -> Iterator[Counter[str]]:
    """libpq's protocol trace of every connection the engine hands out in the block; after
    it, the counted ``round trips`` (turns from the client's messages to the server's),
    ``syncs`` and ``statements`` (Execute and simple Query messages)."""
    counted: Counter[str] = Counter()
    with path.open("w") as file:

        def checkout(dbapi_connection, _record, _proxy):
            dbapi_connection.pgconn.trace(file.fileno())
            dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

        def checkin(dbapi_connection, _record):
            if dbapi_connection is not None and not dbapi_connection.closed:
                dbapi_connection.pgconn.untrace()

        event.listen(engine, "checkout", checkout)
        event.listen(engine, "checkin", checkin)
        try:
            yield counted
        finally:
            event.remove(engine, "checkout", checkout)
            event.remove(engine, "checkin", checkin)
    last = None
    for line in path.read_text().splitlines():
        direction, _length, message = (line.split("\t") + ["", ""])[:3]
        if direction == "B" and last == "F":
            counted["round trips"] += 1
        if direction == "F" and message == "Sync":
            counted["syncs"] += 1
        if direction == "F" and message in ("Execute", "Query"):
            counted["statements"] += 1
        last = direction


def assert_pool_clean(engine) -> None:
    """Every connection in the pool: idle, out of pipeline mode and of autocommit; and the
    next transaction on it works."""
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert isinstance(raw, BoundedConnection)
        assert raw.pgconn.transaction_status == pq.TransactionStatus.IDLE
        assert raw.pgconn.pipeline_status == pq.PipelineStatus.OFF
        assert not raw.pipelined and not raw.autocommit
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
        assert raw.pgconn.transaction_status == pq.TransactionStatus.INTRANS  # BEGIN sent
        connection.rollback()


def booking_rows(app) -> tuple[int, int]:
    with app.extensions["clinic.database"].writer.connect() as connection:
        return (connection.execute(select(func.count()).select_from(Booking)).scalar_one(),
                connection.execute(select(func.count()).select_from(BookingChange))
                .scalar_one())


# The grouping ------------------------------------------------------------------------------


@pytest.fixture
def keys_cached(app, monkeypatch) -> None:
    """The API key looked up once, then cached (as the service runs): its lookup is not
    the booking's transaction."""
    monkeypatch.setitem(app.config, "SETTINGS", dataclasses.replace(
        app.config["SETTINGS"], api_key_cache_seconds=60))


def test_a_booking_is_three_round_trips_with_one_sync(app, clinic, tmp_path, keys_cached):
    for hour in (13, 14):  # warm: the key cache, psycopg's prepared statements
        assert clinic.book("consultation", clinic.at(hour)).status_code == 201
    engine = app.extensions["clinic.database"].writer
    with traced(engine, tmp_path / "trace") as counted:
        response = clinic.book("consultation", clinic.at(15))
    assert response.status_code == 201, response.get_json()
    # BEGIN + the parties; the visit's facts; INSERT, change feed, audit row, COMMIT.
    assert counted == {"round trips": 3, "syncs": 1, "statements": 7}, counted
    assert_pool_clean(engine)


def test_without_a_pipeline_each_statement_is_a_round_trip(app, clinic, tmp_path,
                                                           keys_cached):
    """The same booking, its transaction not pipelined (``UnitOfWork.pipeline`` a no-op):
    what the grouping saves, and that the count above is the pipeline's doing."""
    assert clinic.book("consultation", clinic.at(13)).status_code == 201
    engine = app.extensions["clinic.database"].writer
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BoundedConnection, "begin_pipelined", lambda self: False)
        with traced(engine, tmp_path / "trace") as counted:
            assert clinic.book("consultation", clinic.at(15)).status_code == 201
    assert counted["round trips"] == counted["statements"] == 7, counted


# A slot the database refuses ---------------------------------------------------------------


def test_a_slot_the_constraint_refuses_at_the_commit_is_the_same_409(app, clinic, api,
                                                                     monkeypatch):
    """The Python check made blind to the booking in the way (its facts read without it):
    the INSERT reaches the exclusion constraint, whose error is read after it was sent (at
    a later statement's sending or at the commit's Sync).
    The answer is the registered 409 with the alternatives of the Python check's 409; no
    row of the refused booking is left; the request's audit row is written as for any
    refused booking; the pooled connection is clean."""
    first = clinic.book("consultation", clinic.at(14)).get_json()
    other = clinic.add_patient(first_name="Second")
    refused_by_check = clinic.book("consultation", clinic.at(14), patient=other)
    assert refused_by_check.status_code == 409
    rows_before = booking_rows(app)
    load = placement.load_visit_schedule

    def blind(session, visit, *, start, end, exclude_booking_id=None):
        return load(session, visit, start=start, end=end,
                    exclude_booking_id=uuid.UUID(first["id"]))

    translate = uow.translate_integrity_error
    translated: list[BaseException] = []

    def seen(error):
        translated.append(error.orig)
        return translate(error)

    with monkeypatch.context() as patch:
        patch.setattr(placement, "load_visit_schedule", blind)
        patch.setattr(uow, "translate_integrity_error", seen)
        audits_before = audit_count(app)
        refused = clinic.book("consultation", clinic.at(14), patient=other)
    assert [type(error) for error in translated] == [psycopg.errors.ExclusionViolation]
    body = refused.get_json()
    assert refused.status_code == 409, body
    assert body["code"] == "slot_unavailable"
    assert body["detail"] in ("The provider is already booked then.",
                              "The patient already has a visit then.")
    assert body["alternatives"] == refused_by_check.get_json()["alternatives"]
    assert booking_rows(app) == rows_before
    assert audit_count(app) == audits_before + 1
    assert_pool_clean(app.extensions["clinic.database"].writer)
    assert clinic.book("consultation", clinic.at(16), patient=other).status_code == 201


def audit_count(app) -> int:
    with app.extensions["clinic.database"].writer.connect() as connection:
        return COUNT_AUDIT.first(connection, {})[0]


def test_a_lock_held_past_lock_timeout_is_a_503_and_the_connection_clean(
        clinic, database_url, monkeypatch, api):
    """The booking's INSERT waits on the provider's schedule version row another
    transaction holds: lock_timeout, read at the commit's Sync, answers 503."""
    monkeypatch.setenv("DATABASE_LOCK_TIMEOUT_SECONDS", "0.3")
    application = create_app({"DATABASE_URL": database_url, "TESTING": True})
    engine = application.extensions["clinic.database"].writer
    client = application.test_client()
    body = {"patient_id": clinic.patient["id"], "provider_id": clinic.doctor["id"],
            "service_type_id": clinic.services["consultation"]["id"],
            "location_id": clinic.virtual["id"], "patient_state": "AZ"}
    try:
        warm = client.post("/api/v1/bookings", headers=api.headers("staff"),
                           json={**body, "start": clinic.at(13).isoformat()})
        assert warm.status_code == 201, warm.get_json()
        with engine.connect() as holder:
            holder.execute(text("SELECT 1 FROM schedule_versions WHERE scope = :scope "
                                "FOR UPDATE"), {"scope": f"provider:{clinic.doctor['id']}"})
            response = client.post("/api/v1/bookings", headers=api.headers("staff"),
                                   json={**body, "start": clinic.at(15).isoformat()})
            holder.rollback()
        assert response.status_code == 503, response.get_json()
        assert response.get_json()["code"] == "database_unavailable"
        assert_pool_clean(engine)
        again = client.post("/api/v1/bookings", headers=api.headers("staff"),
                            json={**body, "start": clinic.at(15).isoformat()})
        assert again.status_code == 201, again.get_json()
    finally:
        application.extensions["clinic.database"].dispose()


# The driver's pipelined transaction --------------------------------------------------------


def test_a_failed_statement_is_raised_as_itself_by_a_later_one(app):
    """A NOT NULL violation sent, then statements after it: the violation is raised by
    the first of them that reads an answer (the server's error may arrive while the next
    one is sent, or only when rows are read), as SQLAlchemy's IntegrityError with its own
    SQLSTATE, the connection out of pipeline mode; the rollback leaves it clean."""
    engine = app.extensions["clinic.database"].writer
    with engine.connect() as connection:
        assert begin_pipelined(connection)
        raw = connection.connection.dbapi_connection
        AUDIT_ROW.execute(connection, audit_row(role=None, action=None))  # sent, fails
        with pytest.raises(exc.IntegrityError) as failed:
            AUDIT_ROW.execute(connection, audit_row())  # skipped
            COUNT_AUDIT.first(connection, {})
        assert isinstance(failed.value.orig, psycopg.errors.NotNullViolation)
        assert not raw.pipelined and raw.pgconn.pipeline_status == pq.PipelineStatus.OFF
        connection.rollback()
    assert_pool_clean(engine)
    assert audit_count(app) == 0


def test_a_failed_statement_is_raised_as_itself_at_the_commit(app):
    engine = app.extensions["clinic.database"].writer
    with pytest.raises(exc.IntegrityError) as failed:
        with engine.begin() as connection:
            assert begin_pipelined(connection)
            AUDIT_ROW.execute(connection, audit_row())
            AUDIT_ROW.execute(connection, audit_row(role=None, action=None))  # fails
            AUDIT_ROW.execute(connection, audit_row())
    assert isinstance(failed.value.orig, psycopg.errors.NotNullViolation)
    assert_pool_clean(engine)
    assert audit_count(app) == 0  # none of the three: one transaction


def test_a_statement_run_by_sqlalchemy_ends_the_pipeline_first(app):
    """SQLAlchemy's own execution reads its result at once: the pipeline is synced before
    it (an earlier error raised there, as SQLAlchemy's exception), and the rest of the
    transaction runs as without a pipeline, committed as one."""
    engine = app.extensions["clinic.database"].writer
    with engine.begin() as connection:
        assert begin_pipelined(connection)
        AUDIT_ROW.execute(connection, audit_row())
        assert connection.execute(select(func.count()).select_from(AuditEvent)).scalar() == 1
        assert not connection.connection.dbapi_connection.pipelined
        AUDIT_ROW.execute(connection, audit_row())
    assert audit_count(app) == 2
    with engine.connect() as connection:
        assert begin_pipelined(connection)
        AUDIT_ROW.execute(connection, audit_row(role=None, action=None))
        with pytest.raises(exc.IntegrityError) as failed:
            connection.execute(text("SELECT 1"))  # (the error may come with its sending)
        assert isinstance(failed.value.orig, psycopg.errors.NotNullViolation)
        connection.rollback()
    assert_pool_clean(engine)
    assert audit_count(app) == 2


def test_a_pipeline_begins_only_before_anything_was_sent(app):
    engine = app.extensions["clinic.database"].writer
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))  # psycopg's BEGIN sent with it
        assert not begin_pipelined(connection)
        connection.rollback()
    with engine.connect() as connection:
        assert begin_pipelined(connection)
        assert not begin_pipelined(connection)
        connection.rollback()  # nothing but BEGIN sent: rolled back in the same Sync
    assert_pool_clean(engine)
