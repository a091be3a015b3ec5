"""slot search: the providers' time-filter index carries the block's start too

ix_bookings_provider_ends (provider_id, provider_ends_at) becomes ix_bookings_provider_block
(provider_id, provider_ends_at, provider_starts_at). A search's filter on a provider's
block, ``provider_ends_at > lo AND provider_starts_at < hi``, is then checked in the index:
only the bookings that overlap the range are read from the table, not every booking that
ends after its start (issue 14).

Revision ID: d41b7c9e2a50
Revises: b7d2e4f6a813
Create Date: 2026-12-01 02:10:00.000000+00:00
"""
from alembic import op


revision = 'd41b7c9e2a50'
down_revision = 'b7d2e4f6a813'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_bookings_provider_block', 'bookings',
                    ['provider_id', 'provider_ends_at', 'provider_starts_at'])
    op.drop_index('ix_bookings_provider_ends', table_name='bookings')


def downgrade() -> None:
    op.create_index('ix_bookings_provider_ends', 'bookings', ['provider_id', 'provider_ends_at'])
    op.drop_index('ix_bookings_provider_block', table_name='bookings')
