"""treatment series

Revision ID: 1d471864c2d8
Revises: ae3de653d3cd
Create Date: 2026-11-25 12:54:47.643078+00:00

The treatment_series table, and bookings.series_id as a foreign key to it (ON DELETE SET
NULL). SQLite cannot add a constraint to an existing table: batch mode rebuilds bookings and
drops the old table, which (foreign keys on) would delete or block the rows of every table
referring to bookings, booking_events among them. Those rows are set aside first and put
back afterwards.
"""
from alembic import op
import sqlalchemy as sa


revision = '1d471864c2d8'
down_revision = 'ae3de653d3cd'
branch_labels = None
depends_on = None


def _referring_tables(table: str) -> list[str]:
    """Tables whose rows refer to ``table``, directly or through each other, parents first."""
    inspector = sa.inspect(op.get_bind())
    names = inspector.get_table_names()
    found: list[str] = []
    frontier = [table]
    while frontier:
        parent = frontier.pop(0)
        for name in names:
            if name in found or name == table:
                continue
            if any(fk["referred_table"] == parent for fk in inspector.get_foreign_keys(name)):
                found.append(name)
                frontier.append(name)
    return found


def _rebuild_bookings(change) -> None:
    """Run a batch change of bookings without losing the rows that refer to it (SQLite)."""
    if op.get_bind().dialect.name != "sqlite":
        with op.batch_alter_table('bookings', schema=None) as batch_op:
            change(batch_op)
        return
    kept = _referring_tables('bookings')
    for name in kept:
        op.execute(f'CREATE TEMP TABLE "_keep_{name}" AS SELECT * FROM "{name}"')
    for name in reversed(kept):
        op.execute(f'DELETE FROM "{name}"')
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        change(batch_op)
    for name in kept:
        op.execute(f'INSERT INTO "{name}" SELECT * FROM "_keep_{name}"')
        op.execute(f'DROP TABLE "_keep_{name}"')


def upgrade() -> None:
    op.create_table('treatment_series',
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=True),
    sa.Column('service_type_id', sa.Uuid(), nullable=False),
    sa.Column('location_id', sa.Uuid(), nullable=False),
    sa.Column('protocol', sa.String(length=40), nullable=False),
    sa.Column('rrule', sa.String(length=500), nullable=True),
    sa.Column('status', sa.Enum('active', 'cancelled', name='series_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('planned_sessions', sa.Integer(), nullable=False),
    sa.Column('first_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('previous_session_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.String(length=500), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by_key_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("status <> 'cancelled' OR cancel_reason IS NOT NULL", name=op.f('ck_treatment_series_cancel_reason')),
    sa.CheckConstraint('planned_sessions >= 1 AND planned_sessions <= 52', name=op.f('ck_treatment_series_planned_sessions')),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_treatment_series_location_id_locations')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_treatment_series_patient_id_patients')),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_treatment_series_provider_id_providers')),
    sa.ForeignKeyConstraint(['service_type_id'], ['service_types.id'], name=op.f('fk_treatment_series_service_type_id_service_types')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_treatment_series'))
    )
    with op.batch_alter_table('treatment_series', schema=None) as batch_op:
        batch_op.create_index('ix_treatment_series_patient_created', ['patient_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_treatment_series_provider_id'), ['provider_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_treatment_series_status'), ['status'], unique=False)

    _rebuild_bookings(lambda batch_op: batch_op.create_foreign_key(
        batch_op.f('fk_bookings_series_id_treatment_series'), 'treatment_series',
        ['series_id'], ['id'], ondelete='SET NULL'))


def downgrade() -> None:
    _rebuild_bookings(lambda batch_op: batch_op.drop_constraint(
        batch_op.f('fk_bookings_series_id_treatment_series'), type_='foreignkey'))

    with op.batch_alter_table('treatment_series', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_treatment_series_status'))
        batch_op.drop_index(batch_op.f('ix_treatment_series_provider_id'))
        batch_op.drop_index('ix_treatment_series_patient_created')

    op.drop_table('treatment_series')
