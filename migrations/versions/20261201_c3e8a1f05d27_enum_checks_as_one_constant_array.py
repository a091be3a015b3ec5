"""the enum checks of the tables a booking writes: one constant array each (PostgreSQL)

PostgreSQL does not keep a table's CHECK constraints compiled between statements: every
INSERT or UPDATE reads each one's stored expression tree back from its text form, plans and
compiles it before the first row (ExecRelCheck). SQLAlchemy's ``status IN ('pending', ...)``
on a VARCHAR column is stored as an array built of one VARCHAR constant per value, coerced
to text[]: a long tree to read back, and two constant foldings (the array, then its
coercion) at every statement. A booking's POST writes six such checks (bookings.status,
booking_events.kind, reminders.status and .channel, audit_events.action and .outcome):
measured, 0.43M of the server's 3.42M instructions per POST (issue 14).

Each becomes ``column::text = ANY ('{...}'::text[])``: the same name, the same values, the
same refusal (check_violation naming the same constraint); one array constant, nothing to
fold (measured on one INSERT: 69k instructions for the six-value check, 38k as one array).
SQLite keeps its ``IN`` lists (it compiles a statement's checks with the statement).

The values are those of the enums at this revision; a migration that adds a value writes
the constraint again, preferably in this form (tests/db/test_enum_checks.py says which).

Production (PostgreSQL, large tables): each ALTER TABLE below scans its table under an
exclusive lock to validate. Instead, by hand, for each: ``ALTER TABLE t ADD CONSTRAINT
<name>_new CHECK (...) NOT VALID``, ``ALTER TABLE t VALIDATE CONSTRAINT <name>_new``, ``ALTER
TABLE t DROP CONSTRAINT <name>``, ``ALTER TABLE t RENAME CONSTRAINT <name>_new TO <name>``,
then ``alembic stamp c3e8a1f05d27``.

Revision ID: c3e8a1f05d27
Revises: e5a7c3f91b04
Create Date: 2026-12-01 19:00:00.000000+00:00
"""
from collections.abc import Callable

from alembic import op


revision = 'c3e8a1f05d27'
down_revision = 'e5a7c3f91b04'
branch_labels = None
depends_on = None

# (table, constraint, column, values): the enums' values at this revision.
CHECKS = (
    ('bookings', 'ck_bookings_booking_status', 'status',
     ('pending', 'booked', 'checked-in', 'fulfilled', 'cancelled', 'noshow')),
    ('booking_events', 'ck_booking_events_kind', 'kind',
     ('booking.created', 'booking.rescheduled', 'booking.confirmed', 'booking.checked_in',
      'booking.completed', 'booking.cancelled', 'booking.no_show',
      'booking.protocol_overridden')),
    ('reminders', 'ck_reminders_reminder_status', 'status',
     ('planned', 'sending', 'sent', 'skipped', 'cancelled', 'failed')),
    ('reminders', 'ck_reminders_reminder_channel', 'channel', ('email', 'sms', 'log')),
    ('audit_events', 'ck_audit_events_audit_action', 'action',
     ('read', 'create', 'update', 'delete', 'denied')),
    ('audit_events', 'ck_audit_events_audit_outcome', 'outcome',
     ('success', 'replayed', 'failed', 'not_found', 'error', 'forbidden', 'not_visible',
      'unauthenticated')),
)


def _one_array(column: str, values: tuple[str, ...]) -> str:
    array = ','.join(f'"{value}"' for value in values)
    return f"{column}::text = ANY ('{{{array}}}'::text[])"


def _in_list(column: str, values: tuple[str, ...]) -> str:
    listed = ', '.join(f"'{value}'" for value in values)
    return f'{column} IN ({listed})'


def _write(check: Callable[[str, tuple[str, ...]], str]) -> None:
    """Each constraint dropped and added again, in ``check``'s form (PostgreSQL only)."""
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table, name, column, values in CHECKS:
        op.execute(f'ALTER TABLE {table} DROP CONSTRAINT {name}, '
                   f'ADD CONSTRAINT {name} CHECK ({check(column, values)})')


def upgrade() -> None:
    _write(_one_array)


def downgrade() -> None:
    _write(_in_list)
