"""booking attention: a gate no longer passed, and alerts about a booking

bookings.attention (the code of the rule a booking no longer passes), since when, and how a
provider resolved it; alerts may be about a booking (booking_id, the rule's code) instead of
an assessment, and have two new kinds (booking_attention, vitals_out_of_range).

Revision ID: 0beae75ea0e4
Revises: e27260342b1f
Create Date: 2026-11-30 06:35:53.484652+00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0beae75ea0e4'
down_revision = 'e27260342b1f'
branch_labels = None
depends_on = None


OLD_KINDS = "kind IN ('phq9_item_9')"
NEW_KINDS = "kind IN ('phq9_item_9', 'booking_attention', 'vitals_out_of_range')"


def upgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('booking_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('code', sa.String(length=64), nullable=True))
        batch_op.alter_column('assessment_id', existing_type=sa.Uuid(), nullable=True)
        batch_op.drop_constraint(op.f('ck_alerts_alert_kind'), type_='check')
        batch_op.alter_column('kind', existing_type=sa.String(length=11),
                              type_=sa.String(length=19), existing_nullable=False)
        batch_op.create_check_constraint(op.f('ck_alerts_alert_kind'), NEW_KINDS)
        batch_op.create_index(batch_op.f('ix_alerts_booking_id'), ['booking_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_alerts_booking_id_bookings'), 'bookings',
                                    ['booking_id'], ['id'])

    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attention', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('attention_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('attention_resolution', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('attention_resolved_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.drop_column('attention_resolved_at')
        batch_op.drop_column('attention_resolution')
        batch_op.drop_column('attention_since')
        batch_op.drop_column('attention')

    op.execute("DELETE FROM alerts WHERE assessment_id IS NULL")
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_alerts_booking_id_bookings'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_alerts_booking_id'))
        batch_op.drop_constraint(op.f('ck_alerts_alert_kind'), type_='check')
        batch_op.alter_column('kind', existing_type=sa.String(length=19),
                              type_=sa.String(length=11), existing_nullable=False)
        batch_op.create_check_constraint(op.f('ck_alerts_alert_kind'), OLD_KINDS)
        batch_op.alter_column('assessment_id', existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_column('code')
        batch_op.drop_column('booking_id')
