"""webhook secret rotation: the previous signing secret and when it stops signing

Revision ID: 5b7e1c9d2a40
Revises: f4e8f50226ff
Create Date: 2026-11-30 07:18:00.000000+00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '5b7e1c9d2a40'
down_revision = 'f4e8f50226ff'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_secret', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('webhook_subscriptions', schema=None) as batch_op:
        batch_op.drop_column('previous_secret_expires_at')
        batch_op.drop_column('previous_secret')
