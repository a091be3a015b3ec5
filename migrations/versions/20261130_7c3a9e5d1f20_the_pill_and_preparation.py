"""the pill and how to prepare: route, at-home, arrival and instructions per service type

service_types.route: how the dose is given (iv, intranasal, oral, sublingual; NULL: no dose);
service_types.at_home: the patient takes the dose at home under a prescribed protocol (the
service type is the telehealth check-in); service_types.arrive_early_minutes: arrival before
the start (the rows already there: 0); service_types.preparation / after_care: instructions
(JSON lists of {"text", "reminder"}; NULL: none).

Revision ID: 7c3a9e5d1f20
Revises: 7c3a9e51d2b8
Create Date: 2026-11-30 08:30:00.000000+00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '7c3a9e5d1f20'
down_revision = '7c3a9e51d2b8'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('service_types', schema=None) as batch_op:
        batch_op.add_column(sa.Column('route', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('at_home', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('arrive_early_minutes', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('preparation', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('after_care', sa.JSON(), nullable=True))
        batch_op.create_check_constraint(
            op.f('ck_service_types_treatment_route'),
            "route IN ('iv', 'intranasal', 'oral', 'sublingual')")
        batch_op.create_check_constraint(
            op.f('ck_service_types_arrive_early'),
            'arrive_early_minutes >= 0 AND arrive_early_minutes <= 240')


def downgrade() -> None:
    with op.batch_alter_table('service_types', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_service_types_arrive_early'), type_='check')
        batch_op.drop_constraint(op.f('ck_service_types_treatment_route'), type_='check')
        batch_op.drop_column('after_care')
        batch_op.drop_column('preparation')
        batch_op.drop_column('arrive_early_minutes')
        batch_op.drop_column('at_home')
        batch_op.drop_column('route')
