"""The zones a booking is shown in: its location's (every instant of it, and of the records
attached to it: reminders, readings, ...), and, for a telehealth visit, the patient's own
(where the patient sits when the visit starts).

A read for the HTTP layer's rendering of time: the clinic has a handful of locations and
service types, so both are read whole, once per answer; patients only by the ids asked. A
read of one booking reads its zones with it instead (``WITH_ZONES``: the same statement).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import joinedload, with_expression

from service.domain.bookings.models import Booking
from service.domain.clinic.models import Location, ServiceType
from service.domain.patients.models import Patient
from service.domain.providers.licensing import Modality
from service.uow import UnitOfWork

# Loader options for a booking read with what its answer shows: its service type (joined,
# rather than the relationship's own second SELECT), its location's zone and its patient's
# (``Booking.zone_of_location``, ``Booking.zone_of_patient``). Not for a locking read: the
# join would lock the service type's row too.
WITH_ZONES = (
    joinedload(Booking.service_type, innerjoin=True),
    with_expression(Booking.zone_of_location, select(Location.timezone).where(
        Location.id == Booking.location_id).scalar_subquery()),
    with_expression(Booking.zone_of_patient, select(Patient.timezone).where(
        Patient.id == Booking.patient_id).scalar_subquery()),
)


@dataclass
class Zones:
    locations: dict[uuid.UUID, str] = field(default_factory=dict)
    telehealth_services: frozenset[uuid.UUID] = frozenset()
    patients: dict[uuid.UUID, str] = field(default_factory=dict)


def clinic_zones(uow: UnitOfWork) -> Zones:
    """Every location's zone, and which service types are telehealth."""
    with uow:
        session = uow.session
        rows = session.execute(select(Location.id, Location.timezone))
        return Zones(
            locations={row[0]: row[1] for row in rows},
            telehealth_services=frozenset(session.scalars(
                select(ServiceType.id).where(ServiceType.modality == Modality.TELEHEALTH))))


def booking_locations(uow: UnitOfWork, booking_ids: Iterable[uuid.UUID]
                      ) -> dict[uuid.UUID, uuid.UUID]:
    """The location of each of these bookings (for the records attached to them)."""
    return _by_id(uow, Booking.id, Booking.location_id, booking_ids)


def patient_zones(uow: UnitOfWork, patient_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The zones of these patients (the caller already sees their bookings)."""
    return _by_id(uow, Patient.id, Patient.timezone, patient_ids)


def _by_id(uow: UnitOfWork, key: Any, value: Any, ids: Iterable[uuid.UUID]) -> dict[Any, Any]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    with uow:
        rows = uow.session.execute(select(key, value).where(key.in_(wanted)))
        return {row[0]: row[1] for row in rows}
