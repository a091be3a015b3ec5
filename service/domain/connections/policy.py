"""Who may see and change a provider's connected calendars.

Clinic staff and providers connect, list and remove calendars; a provider key only its own
provider's (any other provider's are "not found"). Integrations push busy intervals into a
push connection (and read its freshness), for any provider. Nobody reads a connection's
address or credentials back: they are write-only.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import Select

from service.domain.access.actor import Actor, Role
from service.domain.access.policy import STAFF, Missing, Policy, Rule, acts_for_provider
from service.domain.connections.models import CalendarConnection

OWNERS = (*STAFF, Role.PROVIDER)


@dataclass(frozen=True)
class Owner:
    provider_id: uuid.UUID


class ConnectionPolicy(Policy):
    name = "connections"
    model = CalendarConnection
    missing = Missing("No connected calendar with this id for this provider.",
                      code="calendar_connection_not_found")
    rules: ClassVar[Mapping[str, Rule]] = {
        "read": Rule((*OWNERS, Role.INTEGRATION)),
        "change": Rule(OWNERS),
        "push": Rule((*OWNERS, Role.INTEGRATION)),
        "oversee": Rule(STAFF),  # every connection of the clinic, the stale ones first
    }

    def visible(self, actor: Actor, query: Select) -> Select:
        if actor.role is Role.PROVIDER:
            return query.where(CalendarConnection.provider_id == actor.provider_id)
        return query

    def can_see(self, actor: Actor, record: Any) -> bool:
        return acts_for_provider(actor, record.provider_id)

    def check_owner(self, actor: Actor, provider_id: uuid.UUID, action: str) -> None:
        if not self.can_see(actor, Owner(provider_id)):
            raise NotFoundProvider.error()
        self.require(actor, action)


NotFoundProvider = Missing("No provider with this id.", code="provider_not_found")

policy = ConnectionPolicy()
