"""The enum checks of the tables a booking writes, stored on PostgreSQL as one constant array
each (migration c3e8a1f05d27, issue 14: cheaper to compile at every statement than the IN
list SQLAlchemy writes): each accepts exactly its enum's values, as the IN list did, and a
value outside them is refused under the same constraint name."""

from __future__ import annotations

import enum

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from service.domain.audit.models import AuditAction, AuditOutcome
from service.domain.bookings.history import BookingEventKind
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.reminders.models import ReminderChannel, ReminderStatus
from tests.scenario import build_clinic

# (table, constraint, column, the enum the model checks it against)
CHECKS: tuple[tuple[str, str, str, type[enum.Enum]], ...] = (
    ("bookings", "ck_bookings_booking_status", "status", BookingStatus),
    ("booking_events", "ck_booking_events_kind", "kind", BookingEventKind),
    ("reminders", "ck_reminders_reminder_status", "status", ReminderStatus),
    ("reminders", "ck_reminders_reminder_channel", "channel", ReminderChannel),
    ("audit_events", "ck_audit_events_audit_action", "action", AuditAction),
    ("audit_events", "ck_audit_events_audit_outcome", "outcome", AuditOutcome),
)
NOT_VALUES = ("", "BOOKED", "booked ", "unknown", "cancelled,booked", "{booked}", '"booked"')


@pytest.fixture
def engine(app):  # type: ignore[no-untyped-def]
    engine = app.extensions["clinic.database"].writer
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps SQLAlchemy's IN lists")
    return engine


def _expression(connection, table: str, name: str) -> str:  # type: ignore[no-untyped-def]
    return connection.scalar(text(
        "SELECT pg_get_expr(conbin, conrelid) FROM pg_constraint "
        "WHERE conrelid = CAST(:table AS regclass) AND conname = :name"),
        {"table": table, "name": name})


@pytest.mark.parametrize(("table", "name", "column", "values"), CHECKS,
                         ids=[check[1] for check in CHECKS])
def test_each_check_is_one_array_and_accepts_exactly_its_enum(engine, table, name, column,
                                                              values):
    with engine.connect() as connection:
        expression = _expression(connection, table, name)
        assert expression is not None, name
        assert "ARRAY[" not in expression, expression  # one constant, nothing to fold
        # The stored expression, evaluated for a value in the column's place.
        probe = text(f"SELECT {expression} FROM (SELECT CAST(:value AS varchar) "
                     f"AS {column}) AS candidate")
        for member in values:
            assert connection.scalar(probe, {"value": member.value}) is True, member
        for value in NOT_VALUES:
            assert connection.scalar(probe, {"value": value}) is False, value
        # NULL passes a check, as it did: nullability is the column's own rule.
        assert connection.scalar(probe, {"value": None}) is None


def test_a_status_outside_the_enum_is_refused_under_the_same_name(app, api, engine):
    clinic = build_clinic(api)
    made = clinic.book("consultation", clinic.at(13))
    assert made.status_code == 201, made.get_json()
    with pytest.raises(IntegrityError) as refused, engine.begin() as connection:
        booking_id = connection.scalar(select(Booking.id).limit(1))
        # Past the ORM's own enum check, as another client would write it.
        connection.execute(text("UPDATE bookings SET status = 'archived' WHERE id = :id"),
                           {"id": booking_id})
    assert "ck_bookings_booking_status" in str(refused.value)
