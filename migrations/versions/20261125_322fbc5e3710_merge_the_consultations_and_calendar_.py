"""merge the consultations and calendar branches

Revision ID: 322fbc5e3710
Revises: 924e2347f3be, 5f9e772bd5e4
Create Date: 2026-11-25 13:36:49.470633+00:00
"""


revision = '322fbc5e3710'
down_revision = ('924e2347f3be', '5f9e772bd5e4')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
