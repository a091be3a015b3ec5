"""Who may read the FHIR facade, and which of its resources: every key, under the rules of
``/api/v1``. An Appointment is a booking (the bookings policy decides which are visible);
Practitioner and Schedule are the provider directory, Slot the slot search (a patient key
searches for its own patient)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy import Select

from service.domain.access.actor import Actor
from service.domain.access.policy import EVERYONE, Policy, Rule
from service.domain.bookings.policy import policy as bookings


class FhirPolicy(Policy):
    name = "fhir"
    model = bookings.model
    missing = bookings.missing
    rules: ClassVar[Mapping[str, Rule]] = {
        "search_appointments": Rule(EVERYONE),
        "read_appointment": Rule(EVERYONE),
        "search_practitioners": Rule(EVERYONE),
        "read_practitioner": Rule(EVERYONE),
        "search_schedules": Rule(EVERYONE),
        "read_schedule": Rule(EVERYONE),
        "search_slots": Rule(EVERYONE),
        "search_patients": Rule(EVERYONE),  # which patients: the patients policy decides
        "read_patient": Rule(EVERYONE),
        "search_locations": Rule(EVERYONE),
        "read_location": Rule(EVERYONE),
    }

    def visible(self, actor: Actor, query: Select) -> Select:
        """Appointments: the bookings the actor may see."""
        return bookings.visible(actor, query)

    def can_see(self, actor: Actor, record: Any) -> bool:
        return bookings.can_see(actor, record)


policy = FhirPolicy()
