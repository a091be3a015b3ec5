"""series protocol overrides: confirmed changes that break a protocol

Revision ID: c26d2b0b4f30
Revises: f36195c15c8c
Create Date: 2026-11-30 08:17:58.782751+00:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'c26d2b0b4f30'
down_revision = 'f36195c15c8c'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('series_protocol_overrides',
    sa.Column('series_id', sa.Uuid(), nullable=False),
    sa.Column('booking_id', sa.Uuid(), nullable=True),
    sa.Column('action', sa.Enum('book', 'reschedule', 'cancel', name='protocol_override_action', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('rules', sa.String(length=200), nullable=False),
    sa.Column('issues', sa.String(length=2000), nullable=False),
    sa.Column('session_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('actor_key_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint('length(reason) > 0', name=op.f('ck_series_protocol_overrides_reason')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_series_protocol_overrides_booking_id_bookings'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['series_id'], ['treatment_series.id'], name=op.f('fk_series_protocol_overrides_series_id_treatment_series'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_series_protocol_overrides'))
    )
    with op.batch_alter_table('series_protocol_overrides', schema=None) as batch_op:
        batch_op.create_index('ix_series_protocol_overrides_series', ['series_id', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('series_protocol_overrides', schema=None) as batch_op:
        batch_op.drop_index('ix_series_protocol_overrides_series')

    op.drop_table('series_protocol_overrides')
