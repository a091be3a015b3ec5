"""Who may manage calendar feeds, and what the changes feed shows.

A provider's feed tokens are managed by clinic staff and by that provider; a patient's by
clinic staff and by that patient (a patient the key may not see is "not found"). The feed
itself needs no API key: its secret token is the credential. The booking changes feed shows
every key the bookings it may see (the bookings policy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy import Select

from service.domain.access.actor import Actor, Role
from service.domain.access.policy import EVERYONE, STAFF, Policy, Rule, acts_for_provider
from service.domain.calendar.models import CalendarFeedToken
from service.domain.errors import Forbidden


class CalendarPolicy(Policy):
    name = "calendar"
    model = CalendarFeedToken
    rules: ClassVar[Mapping[str, Rule]] = {
        "manage_provider_feeds": Rule((*STAFF, Role.PROVIDER)),
        "manage_patient_feeds": Rule((*STAFF, Role.PATIENT)),
        "sync_bookings": Rule(EVERYONE),
    }

    def visible(self, actor: Actor, query: Select) -> Select:
        if actor.role in STAFF:
            return query
        if actor.role is Role.PROVIDER:
            return query.where(CalendarFeedToken.provider_id == actor.provider_id)
        if actor.role is Role.PATIENT:
            return query.where(CalendarFeedToken.patient_id == actor.patient_id)
        return query.where(CalendarFeedToken.id.is_(None))

    def can_see(self, actor: Actor, record: Any) -> bool:
        """``record``: a feed token, or the owner of feeds (``provider_id`` or ``patient_id``)."""
        if actor.role in STAFF:
            return True
        if actor.role is Role.PROVIDER:
            return record.provider_id is not None and record.provider_id == actor.provider_id
        if actor.role is Role.PATIENT:
            return record.patient_id is not None and record.patient_id == actor.patient_id
        return False

    def check_owner(self, actor: Actor, owner: Any) -> None:
        """May the actor manage the feeds of ``owner`` (found and visible already)?"""
        if owner.provider_id is not None:
            self.require(actor, "manage_provider_feeds")
            if not acts_for_provider(actor, owner.provider_id):
                raise Forbidden("A provider manages only their own calendar feeds.",
                                code="forbidden")
        else:
            self.require(actor, "manage_patient_feeds")


policy = CalendarPolicy()
