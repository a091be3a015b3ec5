"""calendar_stale alerts: alerts about no patient, resolved by the service; sync backoff

alerts.patient_id becomes nullable; alerts get provider_id, connection_id (a connected
calendar's id, no foreign key: kept after it is removed) and resolved_at, a new kind
calendar_stale, and a partial unique index: one open (unresolved) alert per connection.
calendar_connections.failures counts failed syncs in a row (retry backoff).

Revision ID: c8f2d6a1e374
Revises: a14c0ffee001
Create Date: 2026-11-30 09:45:00.000000+00:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'c8f2d6a1e374'
down_revision = 'a14c0ffee001'
branch_labels = None
depends_on = None


OLD_KINDS = "kind IN ('phq9_item_9', 'booking_attention', 'vitals_out_of_range')"
NEW_KINDS = ("kind IN ('phq9_item_9', 'booking_attention', 'vitals_out_of_range', "
             "'calendar_stale')")


def upgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('connection_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column('patient_id', existing_type=sa.Uuid(), nullable=True)
        batch_op.drop_constraint(op.f('ck_alerts_alert_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_alerts_alert_kind'), NEW_KINDS)
        batch_op.create_index(batch_op.f('ix_alerts_provider_id'), ['provider_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_alerts_provider_id_providers'), 'providers',
                                    ['provider_id'], ['id'])
    op.create_index('uq_alerts_open_connection', 'alerts', ['connection_id'], unique=True,
                    postgresql_where=sa.text('resolved_at IS NULL'),
                    sqlite_where=sa.text('resolved_at IS NULL'))

    with op.batch_alter_table('calendar_connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failures', sa.Integer(), nullable=False,
                                      server_default='0'))
    with op.batch_alter_table('calendar_connections', schema=None) as batch_op:
        batch_op.alter_column('failures', existing_type=sa.Integer(), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('calendar_connections', schema=None) as batch_op:
        batch_op.drop_column('failures')

    op.drop_index('uq_alerts_open_connection', table_name='alerts',
                  postgresql_where=sa.text('resolved_at IS NULL'),
                  sqlite_where=sa.text('resolved_at IS NULL'))
    op.execute("DELETE FROM alerts WHERE patient_id IS NULL OR kind = 'calendar_stale'")
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_alerts_provider_id_providers'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_alerts_provider_id'))
        batch_op.drop_constraint(op.f('ck_alerts_alert_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_alerts_alert_kind'), OLD_KINDS)
        batch_op.alter_column('patient_id', existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_column('resolved_at')
        batch_op.drop_column('connection_id')
        batch_op.drop_column('provider_id')
