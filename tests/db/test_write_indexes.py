"""The indexes on the tables a booking writes (issue 14): each is one more entry per row a
POST writes, so only those a read needs are there, and the guarantees the dropped ones
carried still hold: a reminder's dedupe key is unique through (booking, plan version,
kind), of which it is made; the series index (partial: only a series' sessions are in it)
still serves a series' lookup and its foreign key's ON DELETE SET NULL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from service.db import utcnow
from service.domain.availability.models import ScheduleVersion
from service.domain.bookings.models import Booking
from service.domain.calendar.models import SyncCounter
from service.domain.reminders.models import Reminder, ReminderStatus, dedupe_key
from tests.scenario import build_clinic

# What the reads need and so stays: the slot search's time filters, the dispatcher's
# claim (SKIP LOCKED), a patient's bookings in time order, the booking's reminders.
NEEDED = {
    "bookings": {"ix_bookings_provider_block", "ix_bookings_patient_hold_ends",
                 "ix_bookings_location_hold_ends", "ix_bookings_patient_starts",
                 "ix_bookings_provider_starts", "ix_bookings_series_id"},
    "reminders": {"ix_reminders_status_next_attempt", "uq_reminders_booking_plan_kind"},
    "booking_changes": {"ix_booking_changes_changed_at"},  # the retention purge's filter
}
# Written on every row and read by nothing (or served by another index).
DROPPED = {
    "bookings": {"ix_bookings_location_starts"},
    "reminders": {"ix_reminders_booking"},
}


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def _index_names(engine, table: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {index["name"] for index in inspect(engine).get_indexes(table)}


def test_the_booking_tables_carry_the_indexes_reads_need_and_no_more(app):
    engine = app.extensions["clinic.database"].writer
    for table, names in NEEDED.items():
        assert names <= _index_names(engine, table), table
    for table, names in DROPPED.items():
        assert not names & _index_names(engine, table), table
    unique = {tuple(c["column_names"]) for c in inspect(engine).get_unique_constraints(
        "reminders")}
    assert ("dedupe_key",) not in unique  # the triple's unique index holds the rule


def _reminder(booking_id: uuid.UUID, kind: str, version: int) -> dict[str, object]:
    now = utcnow()
    return {"id": uuid.uuid4(), "booking_id": booking_id, "kind": kind,
            "plan_version": version, "dedupe_key": dedupe_key(booking_id, kind, version),
            "status": ReminderStatus.PLANNED, "due_at": now, "next_attempt_at": now,
            "attempts": 0, "created_at": now, "updated_at": now}


def test_a_second_reminder_with_the_same_dedupe_key_is_refused(app, clinic):
    made = clinic.book("consultation", clinic.at(13))
    assert made.status_code == 201, made.get_json()
    booking_id = uuid.UUID(made.get_json()["id"])
    engine = app.extensions["clinic.database"].writer
    with engine.begin() as connection:
        planned = connection.scalar(select(Reminder.kind).where(
            Reminder.booking_id == booking_id, Reminder.plan_version == 1).limit(1))
    assert planned is not None
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(Reminder), [_reminder(booking_id, planned, 1)])
    # Another kind or plan version is another key: written.
    with engine.begin() as connection:
        connection.execute(insert(Reminder), [_reminder(booking_id, planned, 2),
                                              _reminder(booking_id, "other_kind", 1)])


def test_the_partial_series_index_serves_a_series_lookup_and_its_foreign_key(app):
    engine = app.extensions["clinic.database"].writer
    if engine.dialect.name != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    series_id = uuid.uuid4()
    with engine.connect() as connection, connection.begin():
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        connection.execute(text("SET LOCAL enable_bitmapscan = off"))
        lookup = select(Booking.id).where(Booking.series_id == series_id)
        compiled = lookup.compile(engine)
        plan = "\n".join(connection.exec_driver_sql(f"EXPLAIN {compiled}",
                                                    compiled.params).scalars())
        assert "ix_bookings_series_id" in plan, plan
        # The foreign key's action: one generic parameter, as the trigger plans it.
        connection.execute(text("PREPARE unlink(uuid) AS "
                                "UPDATE bookings SET series_id = NULL WHERE $1 = series_id"))
        connection.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        plan = "\n".join(connection.execute(
            text(f"EXPLAIN EXECUTE unlink('{series_id}')")).scalars())
        connection.execute(text("DEALLOCATE unlink"))
        assert "ix_bookings_series_id" in plan, plan


def test_the_counters_every_booking_bumps_keep_room_for_short_update_chains(app):
    """sync_counters and schedule_versions (migration d7f2b4e91a36): the fillfactor their
    models declare is the database's, so their pages are pruned before chains grow long."""
    engine = app.extensions["clinic.database"].writer
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL storage parameter")
    for model in (SyncCounter, ScheduleVersion):
        table = model.__table__
        declared = table.dialect_options["postgresql"]["with"]
        with engine.connect() as connection:
            options = connection.scalar(text(
                "SELECT reloptions FROM pg_class WHERE oid = CAST(:table AS regclass)"),
                {"table": table.name})
        assert options == [f"fillfactor={declared['fillfactor']}"], (table.name, options)
