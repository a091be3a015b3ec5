"""``service.db.DirectStatement``: a Core statement run on the DBAPI cursor gives what
``Connection.execute`` gives (the same values, of the same types), the engine's cursor
listeners see it, and a DBAPI error comes out as SQLAlchemy's exception for it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event, exc, func, insert, select

from service.db import DirectStatement, utcnow
from service.domain.audit.models import AuditAction, AuditEvent, AuditOutcome
from service.domain.bookings import reading
from service.domain.bookings.models import Booking
from tests.api.test_audit import clinic  # noqa: F401 - fixture


def _same(direct, executed) -> None:
    assert direct is not None and executed is not None
    assert direct._fields == tuple(executed._fields)
    for name, value in executed._mapping.items():
        assert getattr(direct, name) == value, name
        assert type(getattr(direct, name)) is type(value), name


@pytest.mark.parametrize("cancelled", [False, True])
def test_a_booking_read_is_what_connection_execute_reads(app, clinic, api, cancelled):  # noqa: F811
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    if cancelled:  # more columns set: reason, when, fee
        response = api.post(f"/api/v1/bookings/{booking['id']}/cancel",
                            json={"reason": "The patient asked."})
        assert response.status_code == 200, response.get_json()
    database = app.extensions["clinic.database"]
    parameters = {"record_id": uuid.UUID(booking["id"])}
    for engine in {id(e): e for e in (database.writer, database.reader)}.values():
        with engine.connect() as connection:
            _same(reading._BY_ID_DIRECT.first(connection, parameters),
                  connection.execute(reading._BY_ID, parameters).first())
            assert reading._BY_ID_DIRECT.first(
                connection, {"record_id": uuid.uuid4()}) is None


def test_bound_literals_keep_their_value(app, clinic):  # noqa: F811
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    query = (select(Booking.id, Booking.status, Booking.starts_at)
             .where(Booking.patient_id == uuid.UUID(clinic.patient["id"]))
             .where(Booking.starts_at > utcnow() - timedelta(days=1)))
    with app.extensions["clinic.database"].writer.connect() as connection:
        direct = DirectStatement(query).first(connection, {})
        _same(direct, connection.execute(query).first())
        assert str(direct.id) == booking["id"]


def test_cursor_listeners_see_it_and_errors_are_sqlalchemys(app):
    engine = app.extensions["clinic.database"].writer
    columns = sorted(c.key for c in AuditEvent.__table__.columns if c.key != "id")
    statement = DirectStatement(insert(AuditEvent.__table__).inline(), columns=columns)
    row = {"occurred_at": utcnow(), "key_id": None, "role": "staff",
           "action": AuditAction.READ, "resource_type": "booking", "resource_id": None,
           "patient_id": uuid.uuid4(), "outcome": AuditOutcome.SUCCESS, "method": "GET",
           "request_id": "direct", "client_address": None}
    seen: list[tuple[str, str]] = []

    def before(_connection, _cursor, sql, *_):
        seen.append(("before", sql.split(None, 1)[0]))

    def after(_connection, _cursor, sql, *_):
        seen.append(("after", sql.split(None, 1)[0]))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        with engine.begin() as connection:
            statement.execute(connection, row)
            with pytest.raises(exc.IntegrityError):  # NOT NULL, as Connection.execute says
                with connection.begin_nested():
                    statement.execute(connection, {**row, "outcome": None})
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    assert ("before", "INSERT") in seen and ("after", "INSERT") in seen
    assert seen.count(("before", "INSERT")) == 2 and seen.count(("after", "INSERT")) == 1
    with engine.connect() as connection:
        written = connection.execute(select(AuditEvent).where(
            AuditEvent.request_id == "direct")).one()
        assert (written.action, written.outcome, written.patient_id) == (
            AuditAction.READ, AuditOutcome.SUCCESS, row["patient_id"])
        assert written.occurred_at == row["occurred_at"]
        assert connection.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.request_id == "direct")) == 1
