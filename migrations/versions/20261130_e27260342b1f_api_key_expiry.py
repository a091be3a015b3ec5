"""api key expiry: a key issued for a front end may carry an expiry (NULL: never)

Revision ID: e27260342b1f
Revises: 322fbc5e3710
Create Date: 2026-11-30 05:41:19.339013+00:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'e27260342b1f'
down_revision = '322fbc5e3710'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('expires_at')

