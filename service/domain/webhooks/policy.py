"""Who may manage webhook subscriptions, and which: clinic staff and integration keys. Staff
see every subscription; an integration key sees the ones it made; a subscription the key
may not see is "not found", and so are its deliveries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy import Select

from service.domain.access.actor import Actor, Role
from service.domain.access.policy import STAFF, Missing, Policy, Rule
from service.domain.calendar.models import WebhookSubscription

MANAGERS = (*STAFF, Role.INTEGRATION)


class WebhookPolicy(Policy):
    name = "webhooks"
    model = WebhookSubscription
    missing = Missing("No webhook subscription with this id.", code="webhook_not_found")
    rules: ClassVar[Mapping[str, Rule]] = {
        "list": Rule(MANAGERS),
        "create": Rule(MANAGERS),
        "read": Rule(MANAGERS),
        "update": Rule(MANAGERS),
        "delete": Rule(MANAGERS),
        "list_deliveries": Rule(MANAGERS),
        "read_delivery": Rule(MANAGERS),
        "redeliver": Rule(MANAGERS),
        "rotate_secret": Rule(MANAGERS),
        "events": Rule(MANAGERS),
    }

    def visible(self, actor: Actor, query: Select) -> Select:
        if actor.role in STAFF:
            return query
        if actor.role is Role.INTEGRATION:
            return query.where(WebhookSubscription.created_by_key_id == actor.key_id)
        return query.where(WebhookSubscription.id.is_(None))

    def can_see(self, actor: Actor, record: Any) -> bool:
        if actor.role in STAFF:
            return True
        return actor.role is Role.INTEGRATION and record.created_by_key_id == actor.key_id


policy = WebhookPolicy()
