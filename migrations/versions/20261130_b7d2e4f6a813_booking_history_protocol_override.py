"""booking history: a confirmed protocol override

booking_events.kind gains booking.protocol_overridden: a provider (or an admin) confirmed,
with a reason, a reschedule or cancellation of a series session that breaks its protocol
(the reason stays on series_protocol_overrides).

Revision ID: b7d2e4f6a813
Revises: c8f2d6a1e374
Create Date: 2026-11-30 09:55:00.000000+00:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'b7d2e4f6a813'
down_revision = 'c8f2d6a1e374'
branch_labels = None
depends_on = None


OLD_KINDS = ("kind IN ('booking.created', 'booking.rescheduled', 'booking.confirmed', "
             "'booking.checked_in', 'booking.completed', 'booking.cancelled', "
             "'booking.no_show')")
NEW_KINDS = ("kind IN ('booking.created', 'booking.rescheduled', 'booking.confirmed', "
             "'booking.checked_in', 'booking.completed', 'booking.cancelled', "
             "'booking.no_show', 'booking.protocol_overridden')")


def upgrade() -> None:
    with op.batch_alter_table('booking_events', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_booking_events_kind'), type_='check')
        batch_op.alter_column('kind', existing_type=sa.String(length=19),
                              type_=sa.String(length=27), existing_nullable=False)
        batch_op.create_check_constraint(op.f('ck_booking_events_kind'), NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM booking_events WHERE kind = 'booking.protocol_overridden'")
    with op.batch_alter_table('booking_events', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_booking_events_kind'), type_='check')
        batch_op.alter_column('kind', existing_type=sa.String(length=27),
                              type_=sa.String(length=19), existing_nullable=False)
        batch_op.create_check_constraint(op.f('ck_booking_events_kind'), OLD_KINDS)
