"""Who may see and change when providers work, and whom a slot search is for.

Everyone reads a provider's weekly hours and overrides; clinic staff, providers and
integrations read time off; clinic staff and providers change a schedule. A provider key
sees and changes only its own provider's schedule: any other provider is "not found".
Everyone searches slots; a patient key searches for its own patient (whose bookings count
as busy).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import Select

from service.domain.access.actor import Actor, Role
from service.domain.access.policy import (
    EVERYONE,
    STAFF,
    Missing,
    Policy,
    Rule,
    acts_for_provider,
)
from service.domain.availability.models import TimeOff

SCHEDULERS = (*STAFF, Role.PROVIDER)
TIME_OFF_READERS = (*STAFF, Role.PROVIDER, Role.INTEGRATION)


@dataclass(frozen=True)
class Schedule:
    """A provider's schedule, before any of its rows is read."""

    provider_id: uuid.UUID


class AvailabilityPolicy(Policy):
    name = "availability"
    model = TimeOff
    missing = Missing("No provider with this id.", code="provider_not_found")
    rules: ClassVar[Mapping[str, Rule]] = {
        "read": Rule(EVERYONE),
        "change": Rule(SCHEDULERS),  # replace the hours, add or remove time off
        "read_time_off": Rule(TIME_OFF_READERS),
        "search_slots": Rule(EVERYONE),
    }

    def visible(self, actor: Actor, query: Select) -> Select:
        if actor.role is Role.PROVIDER:
            return query.where(TimeOff.provider_id == actor.provider_id)
        return query

    def can_see(self, actor: Actor, record: Any) -> bool:
        """``record``: a schedule's row (hours, override, time off) or a ``Schedule``."""
        return acts_for_provider(actor, record.provider_id)

    def check_schedule(self, actor: Actor, provider_id: uuid.UUID, action: str) -> None:
        """A schedule the actor may not see is "not found"; then the role rule of ``action``."""
        if not self.can_see(actor, Schedule(provider_id)):
            raise self.missing.error()
        self.require(actor, action)

    def searching_for(self, actor: Actor, patient_id: uuid.UUID | None) -> uuid.UUID | None:
        """The patient a slot search is for: a patient key searches for itself."""
        return actor.patient_id if actor.role is Role.PATIENT else patient_id


policy = AvailabilityPolicy()
