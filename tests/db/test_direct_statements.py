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
from service.domain.availability import placement
from service.domain.bookings import reading
from service.domain.bookings.models import Booking
from service.domain.patients.models import Patient
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


def test_all_reads_rows_as_connection_execute_does_by_position(app, clinic):  # noqa: F811
    """``all``: every row, each value (and its type) where ``Row`` has it by position,
    several columns of one name included (the booking's parties' read)."""
    clinic.book("consultation", clinic.at(14))
    clinic.book("consultation", clinic.at(15))
    query = (select(Booking.id, Booking.status, Booking.starts_at, Booking.late_cancellation,
                    Patient.id, Patient.active, Patient.timezone)
             .join(Patient, Patient.id == Booking.patient_id).order_by(Booking.starts_at))
    with app.extensions["clinic.database"].writer.connect() as connection:
        direct = DirectStatement(query).all(connection, {})
        executed = connection.execute(query).all()
        with pytest.raises(TypeError):  # no named tuple holds two "id"s
            DirectStatement(query).first(connection, {})
    assert len(direct) >= 2 and len(direct) == len(executed)
    for got, expected in zip(direct, executed, strict=True):
        assert got == tuple(expected)
        assert [type(value) for value in got] == [type(value) for value in expected]


@pytest.mark.parametrize("chairs", [False, True])
@pytest.mark.parametrize("exclude", [False, True])
def test_a_visits_facts_are_what_connection_execute_reads(app, clinic, chairs, exclude):  # noqa: F811
    """The booking's check reads its schedule (``placement._facts``) directly: the same
    rows, of the same types, as ``Connection.execute`` gives."""
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    start = clinic.at(14)
    parameters = {"provider_id": uuid.UUID(clinic.doctor["id"]),
                  "location_id": uuid.UUID(clinic.virtual["id"]),
                  "patient_id": uuid.UUID(clinic.patient["id"]),
                  "lo": start - timedelta(days=3), "hi": start + timedelta(days=3),
                  "first_day": (start - timedelta(days=3)).date(),
                  "last_day": (start + timedelta(days=3)).date(),
                  "exclude_booking_id": uuid.UUID(booking["id"]) if exclude else None}
    database = app.extensions["clinic.database"]
    postgres = database.dialect == "postgresql"
    with database.writer.connect() as connection:
        direct = placement._facts_direct(postgres, chairs=chairs, exclude=exclude).all(
            connection, parameters)
        executed = connection.execute(placement._facts(postgres, chairs=chairs,
                                                       exclude=exclude), parameters).all()
    assert sorted(map(repr, direct)) == sorted(repr(tuple(row)) for row in executed)
    kinds = {row[0] for row in direct}
    assert "weekly" in kinds and ("provider_busy" in kinds) is not exclude
