"""waitlist (entries, freed-slot openings, offers held as pending bookings) and the
cancellation policy as data per service type (patient notice, late-cancel and no-show
outcome and fee), with the fee a booking incurred

Revision ID: 63061fad3e19
Revises: c26d2b0b4f30
Create Date: 2026-11-30 08:19:50.464759+00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '63061fad3e19'
down_revision = 'c26d2b0b4f30'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('waitlist_openings',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('location_id', sa.Uuid(), nullable=True),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cause', sa.Enum('cancelled', 'rescheduled', 'hours_changed', 'time_off_removed', name='opening_cause', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('status', sa.Enum('open', 'offered', 'unmatched', name='opening_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('freed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('starts_at < ends_at', name=op.f('ck_waitlist_openings_window')),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_waitlist_openings_location_id_locations')),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_waitlist_openings_provider_id_providers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_openings'))
    )
    with op.batch_alter_table('waitlist_openings', schema=None) as batch_op:
        batch_op.create_index('ix_waitlist_openings_status_freed', ['status', 'freed_at'], unique=False)

    op.create_table('waitlist_entries',
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('service_type_id', sa.Uuid(), nullable=False),
    sa.Column('provider_ids', sa.JSON(), nullable=False),
    sa.Column('location_id', sa.Uuid(), nullable=True),
    sa.Column('earliest_date', sa.Date(), nullable=False),
    sa.Column('latest_date', sa.Date(), nullable=False),
    sa.Column('weekdays', sa.JSON(), nullable=False),
    sa.Column('times_of_day', sa.JSON(), nullable=False),
    sa.Column('series_id', sa.Uuid(), nullable=True),
    sa.Column('keep_by', sa.Date(), nullable=True),
    sa.Column('patient_state', sa.String(length=2), nullable=True),
    sa.Column('ride_home_confirmed', sa.Boolean(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('waiting', 'offered', 'filled', 'expired', 'withdrawn', name='waitlist_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('created_by_key_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint('earliest_date <= latest_date', name=op.f('ck_waitlist_entries_date_range')),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_waitlist_entries_location_id_locations')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_waitlist_entries_patient_id_patients')),
    sa.ForeignKeyConstraint(['series_id'], ['treatment_series.id'], name=op.f('fk_waitlist_entries_series_id_treatment_series'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['service_type_id'], ['service_types.id'], name=op.f('fk_waitlist_entries_service_type_id_service_types')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_entries'))
    )
    with op.batch_alter_table('waitlist_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_waitlist_entries_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index('ix_waitlist_entries_status_position', ['status', 'position', 'created_at'], unique=False)

    op.create_table('waitlist_offers',
    sa.Column('entry_id', sa.Uuid(), nullable=False),
    sa.Column('opening_id', sa.Uuid(), nullable=False),
    sa.Column('booking_id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Enum('offered', 'accepted', 'declined', 'expired', name='offer_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('freed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('offered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_waitlist_offers_booking_id_bookings')),
    sa.ForeignKeyConstraint(['entry_id'], ['waitlist_entries.id'], name=op.f('fk_waitlist_offers_entry_id_waitlist_entries')),
    sa.ForeignKeyConstraint(['opening_id'], ['waitlist_openings.id'], name=op.f('fk_waitlist_offers_opening_id_waitlist_openings')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_waitlist_offers_patient_id_patients')),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_waitlist_offers_provider_id_providers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_offers'))
    )
    with op.batch_alter_table('waitlist_offers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_waitlist_offers_entry_id'), ['entry_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_waitlist_offers_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index('ix_waitlist_offers_status_expires', ['status', 'expires_at'], unique=False)
        batch_op.create_index('uq_waitlist_offers_open_per_opening', ['opening_id'], unique=True, sqlite_where=sa.text("status = 'offered'"), postgresql_where=sa.text("status = 'offered'"))

    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fee_cents', sa.Integer(), nullable=True))

    with op.batch_alter_table('service_types', schema=None) as batch_op:
        # Existing service types keep what they meant: late cancellations flagged, no fee.
        batch_op.add_column(sa.Column('patient_notice_hours', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('late_cancel_outcome', sa.Enum('none', 'flag', 'fee', name='late_cancel_outcome', native_enum=False, create_constraint=True), nullable=False, server_default='flag'))
        batch_op.add_column(sa.Column('late_cancel_fee_cents', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('no_show_outcome', sa.Enum('none', 'flag', 'fee', name='no_show_outcome', native_enum=False, create_constraint=True), nullable=False, server_default='flag'))
        batch_op.add_column(sa.Column('no_show_fee_cents', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.create_check_constraint(
            op.f('ck_service_types_cancellation_policy'),
            "patient_notice_hours >= 0 AND patient_notice_hours <= 720"
            " AND late_cancel_fee_cents >= 0 AND late_cancel_fee_cents <= 10000000"
            " AND no_show_fee_cents >= 0 AND no_show_fee_cents <= 10000000")



def downgrade() -> None:
    with op.batch_alter_table('service_types', schema=None) as batch_op:
        for name in ('cancellation_policy', 'late_cancel_outcome', 'no_show_outcome'):
            batch_op.drop_constraint(op.f(f'ck_service_types_{name}'), type_='check')
        batch_op.drop_column('no_show_fee_cents')
        batch_op.drop_column('no_show_outcome')
        batch_op.drop_column('late_cancel_fee_cents')
        batch_op.drop_column('late_cancel_outcome')
        batch_op.drop_column('patient_notice_hours')

    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.drop_column('fee_cents')

    with op.batch_alter_table('waitlist_offers', schema=None) as batch_op:
        batch_op.drop_index('uq_waitlist_offers_open_per_opening', sqlite_where=sa.text("status = 'offered'"), postgresql_where=sa.text("status = 'offered'"))
        batch_op.drop_index('ix_waitlist_offers_status_expires')
        batch_op.drop_index(batch_op.f('ix_waitlist_offers_patient_id'))
        batch_op.drop_index(batch_op.f('ix_waitlist_offers_entry_id'))

    op.drop_table('waitlist_offers')
    with op.batch_alter_table('waitlist_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_waitlist_entries_status_position')
        batch_op.drop_index(batch_op.f('ix_waitlist_entries_patient_id'))

    op.drop_table('waitlist_entries')
    with op.batch_alter_table('waitlist_openings', schema=None) as batch_op:
        batch_op.drop_index('ix_waitlist_openings_status_freed')

    op.drop_table('waitlist_openings')
