"""Which patients a provider is in care of: those with a visit booked with them."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, false, select

from service.domain.patients.models import Patient


def patients_of_provider(provider_id: uuid.UUID | None) -> Select:
    """Ids of the patients the provider has (or had) a visit with.

    Until bookings exist a provider is in care of nobody; the bookings area replaces this
    query with the real relation.
    """
    return select(Patient.id).where(false())
