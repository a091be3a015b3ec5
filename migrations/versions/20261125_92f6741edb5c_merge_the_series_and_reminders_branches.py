"""merge the series and reminders branches

Revision ID: 92f6741edb5c
Revises: 12d5ef546c4d, 1d471864c2d8
Create Date: 2026-11-25 13:23:27.211190+00:00
"""


revision = '92f6741edb5c'
down_revision = ('12d5ef546c4d', '1d471864c2d8')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
