"""fewer index entries per booking written: indexes no query uses, or one serving two

A booking's POST writes a booking, its history row, four reminders, a change-feed row and
an audit row; every index on these tables is one more entry written (and WAL) per row
(issue 14). These were written and never needed:

- ix_bookings_location_starts (location_id, starts_at): no query filters a location's
  bookings by start; the chairs' holds are read through ex_bookings_chair_overlap or
  ix_bookings_location_hold_ends, which also serves the foreign key to locations.
- ix_bookings_series_id becomes partial (series_id IS NOT NULL): every query looks for one
  series (and the foreign key's ON DELETE SET NULL for one value), which implies NOT NULL;
  a booking outside a series, nearly all of them, writes no entry.
- (ix_booking_changes_changed_at stays: clients read the feed by seq, but the retention
  purge, calendar/history.py, deletes the rows older than the window by changed_at.)
- uq_reminders_dedupe_key and ix_reminders_booking (booking_id, plan_version) become one
  unique index, uq_reminders_booking_plan_kind (booking_id, plan_version, kind): the dedupe
  key is made of exactly these (``<booking>.<kind>.v<version>``, reminders/models.py), so
  the same rows are refused, and the booking's reminders by plan version keep their prefix.

Production (PostgreSQL, large tables): these statements take locks that block writes while
an index builds. Run them by hand instead, then ``alembic stamp e5a7c3f91b04``:
``CREATE UNIQUE INDEX CONCURRENTLY uq_reminders_booking_plan_kind ON reminders (booking_id,
plan_version, kind)``; ``CREATE INDEX CONCURRENTLY ix_bookings_series_id_partial ON bookings
(series_id) WHERE series_id IS NOT NULL``, ``DROP INDEX CONCURRENTLY ix_bookings_series_id``,
``ALTER INDEX ix_bookings_series_id_partial RENAME TO ix_bookings_series_id``; ``DROP INDEX
CONCURRENTLY`` of ix_bookings_location_starts and ix_reminders_booking; ``ALTER TABLE reminders DROP CONSTRAINT uq_reminders_dedupe_key``
(quick: it only removes the index).

Revision ID: e5a7c3f91b04
Revises: d41b7c9e2a50
Create Date: 2026-12-01 13:50:00.000000+00:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'e5a7c3f91b04'
down_revision = 'd41b7c9e2a50'
branch_labels = None
depends_on = None

WITH_SERIES = sa.text('series_id IS NOT NULL')


def upgrade() -> None:
    op.drop_index('ix_bookings_location_starts', table_name='bookings')
    op.drop_index('ix_bookings_series_id', table_name='bookings')
    op.create_index('ix_bookings_series_id', 'bookings', ['series_id'],
                    postgresql_where=WITH_SERIES, sqlite_where=WITH_SERIES)
    op.create_index('uq_reminders_booking_plan_kind', 'reminders',
                    ['booking_id', 'plan_version', 'kind'], unique=True)
    op.drop_index('ix_reminders_booking', table_name='reminders')
    with op.batch_alter_table('reminders', schema=None) as batch_op:
        batch_op.drop_constraint('uq_reminders_dedupe_key', type_='unique')


def downgrade() -> None:
    with op.batch_alter_table('reminders', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_reminders_dedupe_key', ['dedupe_key'])
    op.create_index('ix_reminders_booking', 'reminders', ['booking_id', 'plan_version'])
    op.drop_index('uq_reminders_booking_plan_kind', table_name='reminders')
    op.drop_index('ix_bookings_series_id', table_name='bookings')
    op.create_index('ix_bookings_series_id', 'bookings', ['series_id'])
    op.create_index('ix_bookings_location_starts', 'bookings', ['location_id', 'starts_at'])
