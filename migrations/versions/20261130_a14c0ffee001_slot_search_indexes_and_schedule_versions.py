"""slot search: indexes serving the bookings time filters; schedule versions for the cache

Revision ID: a14c0ffee001
Revises: 7c3a9e5d1f20
Create Date: 2026-11-30 08:20:00.000000+00:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'a14c0ffee001'
down_revision = '7c3a9e5d1f20'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'schedule_versions',
        sa.Column('scope', sa.String(length=60), nullable=False),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('scope', name=op.f('pk_schedule_versions')),
    )
    op.create_index('ix_bookings_provider_ends', 'bookings', ['provider_id', 'provider_ends_at'])
    op.create_index('ix_bookings_patient_hold_ends', 'bookings', ['patient_id', 'hold_ends_at'])
    op.create_index('ix_bookings_location_hold_ends', 'bookings',
                    ['location_id', 'hold_ends_at'])


def downgrade() -> None:
    op.drop_index('ix_bookings_location_hold_ends', table_name='bookings')
    op.drop_index('ix_bookings_patient_hold_ends', table_name='bookings')
    op.drop_index('ix_bookings_provider_ends', table_name='bookings')
    op.drop_table('schedule_versions')
