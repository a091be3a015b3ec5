"""One booking read for its answer (``GET /bookings/{id}``): exactly the columns the answer
shows, as one plain row (a Core select: no ORM instance, identity map or instance state for
a read that changes nothing).

The row carries the booking's own columns, the few of its service type the answer shows
(its modality, preparation and after-care, cancellation terms: under their own names, so
the row also serves where a service type is read, e.g. ``instructions.advice``), and the
zones it is shown in (its location's, its patient's), all in one statement. The access
policy restricts it as ``policy.load`` does (another's booking is "not found"), and the
request's audit row learns whose booking it was without reading it again.
"""

from __future__ import annotations

import uuid
from operator import attrgetter
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Select, bindparam, select

from service.db import DirectStatement
from service.domain.access.actor import Actor
from service.domain.audit.services import note_read
from service.domain.bookings.models import Booking
from service.domain.bookings.policy import policy
from service.domain.clinic.models import Location, ServiceType
from service.domain.patients.models import Patient
from service.uow import UnitOfWork

# The booking's columns its answer shows.
SHOWN = ("id", "created_at", "updated_at", "version", "patient_id", "provider_id",
         "service_type_id", "location_id", "status", "starts_at", "ends_at", "hold_ends_at",
         "chair_number", "patient_state", "ride_home_confirmed", "note", "cancel_reason",
         "cancelled_at", "late_cancellation", "fee_cents", "checked_in_at", "series_id",
         "attention", "attention_since", "attention_resolution", "attention_resolved_at",
         "vitals_alert_at")
_BOOKING_COLUMNS = tuple(getattr(Booking, name) for name in SHOWN)
# The service type's, under their own names (none is also a booking column).
_SERVICE_TYPE_COLUMNS = (
    ServiceType.modality, ServiceType.preparation, ServiceType.after_care,
    ServiceType.patient_notice_hours, ServiceType.late_cancel_hours,
    ServiceType.late_cancel_outcome, ServiceType.late_cancel_fee_cents,
    ServiceType.no_show_outcome, ServiceType.no_show_fee_cents)

_BY_ID: Select[Any] = (
    select(*_BOOKING_COLUMNS, *_SERVICE_TYPE_COLUMNS,
           select(Location.timezone).where(Location.id == Booking.location_id)
           .scalar_subquery().label("zone_of_location"),
           select(Patient.timezone).where(Patient.id == Booking.patient_id)
           .scalar_subquery().label("zone_of_patient"))
    .join_from(Booking, ServiceType, Booking.service_type_id == ServiceType.id)
    .where(Booking.id == bindparam("record_id")))


def as_read(booking: Booking) -> SimpleNamespace:
    """A booking just written in this request (its service type loaded with it, its zones
    set from its parties: ``services.book``), as ``read_booking``'s row shows it: the same
    names and values, for the same direct rendering, without reading it back."""
    values = dict(zip(SHOWN, _SHOWN_OF(booking), strict=True))
    values.update(zip(_SERVICE_TYPE_KEYS, _SERVICE_TYPE_OF(booking.service_type), strict=True))
    return SimpleNamespace(**values, zone_of_location=booking.zone_of_location,
                           zone_of_patient=booking.zone_of_patient)


# ``as_read``'s readers: each a tuple of the values in one call.
_SHOWN_OF = attrgetter(*SHOWN)
_SERVICE_TYPE_KEYS = tuple(column.key for column in _SERVICE_TYPE_COLUMNS)
_SERVICE_TYPE_OF = attrgetter(*_SERVICE_TYPE_KEYS)


# Compiled once: where the actor sees every booking (clinic staff, integrations), the read
# runs as it is, without SQLAlchemy's per-execution machinery (``DirectStatement``).
_BY_ID_DIRECT = DirectStatement(_BY_ID)


def read_booking(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID) -> Any:
    """The booking as its answer shows it, if the actor may see it (else "not found"): a
    row with the columns of ``SHOWN``, the service type's and the zones, by name."""
    with uow:
        # On the unit of work's connection (in its transaction), not through the ORM's
        # execution, which has no instance to make of plain columns.
        connection = uow.connection()
        visible = policy.visible(actor, _BY_ID)
        parameters = {"record_id": booking_id}
        row = (_BY_ID_DIRECT.first(connection, parameters) if visible is _BY_ID
               else connection.execute(visible, parameters).first())
        if row is None:
            raise policy.missing.error()
        note_read(uow, Booking, row.id, row.patient_id)
        return row
