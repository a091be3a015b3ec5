"""contraindications declared per service type

service_types.contraindications: the screening answers that rule the kind of visit out (JSON
list; NULL, as for the rows already there, declares none: esketamine keeps the REMS label's
hard contraindications through requires_rems).

Revision ID: f4e8f50226ff
Revises: dae5b186b19a
Create Date: 2026-11-30 06:47:23.881292+00:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'f4e8f50226ff'
down_revision = 'dae5b186b19a'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('service_types', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contraindications', sa.JSON(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('service_types', schema=None) as batch_op:
        batch_op.drop_column('contraindications')

