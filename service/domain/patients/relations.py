"""Which patients a provider is in care of: those with a visit booked with them."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, select

from service.domain.bookings.models import Booking


def patients_of_provider(provider_id: uuid.UUID | None) -> Select:
    """Ids of the patients who have (or had) a booking with the provider, in any status."""
    return select(Booking.patient_id).where(Booking.provider_id == provider_id)
