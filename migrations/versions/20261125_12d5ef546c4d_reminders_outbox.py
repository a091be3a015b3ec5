"""reminders outbox

Revision ID: 12d5ef546c4d
Revises: ae3de653d3cd
Create Date: 2026-11-25 12:56:07.980028+00:00

The reminders outbox: one row per (booking, kind, plan version), the dedupe key unique, and
the index the dispatcher claims by (status, next_attempt_at). A branch from ae3de653d3cd
beside the treatment series; service.migrate upgrades to "heads".
"""
from alembic import op
import sqlalchemy as sa


revision = '12d5ef546c4d'
down_revision = 'ae3de653d3cd'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reminders',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('booking_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('plan_version', sa.Integer(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=100), nullable=False),
    sa.Column('status', sa.Enum('planned', 'sending', 'sent', 'skipped', 'cancelled', 'failed', name='reminder_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claim_token', sa.Uuid(), nullable=True),
    sa.Column('channel', sa.Enum('email', 'sms', 'log', name='reminder_channel', native_enum=False, create_constraint=True), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_reminders_attempts')),
    sa.CheckConstraint('plan_version > 0', name=op.f('ck_reminders_plan_version')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_reminders_booking_id_bookings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reminders')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_reminders_dedupe_key'))
    )
    with op.batch_alter_table('reminders', schema=None) as batch_op:
        batch_op.create_index('ix_reminders_booking', ['booking_id', 'plan_version'], unique=False)
        batch_op.create_index('ix_reminders_due_at', ['due_at'], unique=False)
        batch_op.create_index('ix_reminders_status_next_attempt', ['status', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('reminders', schema=None) as batch_op:
        batch_op.drop_index('ix_reminders_status_next_attempt')
        batch_op.drop_index('ix_reminders_due_at')
        batch_op.drop_index('ix_reminders_booking')

    op.drop_table('reminders')
