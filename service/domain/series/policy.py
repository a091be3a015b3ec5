"""Who may see and change which treatment series.

Rows: a patient key sees its patient's series; a provider key the series it leads or has a
session in; clinic staff and integrations see all. A series that cannot be seen is "not
found". A provider key plans series only with itself as the provider.

Routes let every key ask; cancelling a series takes the right to cancel a booking (the
bookings policy's ``cancel``), and a provider cancels only a series whose remaining sessions
are all its own. A change that breaks a series' protocol is confirmed only by a provider or
an admin (``override_protocol``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import object_session

from service.domain.access.actor import Actor, Role
from service.domain.access.policy import EVERYONE, Missing, Policy, Rule, acts_for_provider
from service.domain.bookings.models import Booking
from service.domain.bookings.policy import policy as bookings
from service.domain.errors import Forbidden, NotFound
from service.domain.series.models import TreatmentSeries


class SeriesPolicy(Policy):
    name = "series"
    model = TreatmentSeries
    missing = Missing("No treatment series with this id.", code="series_not_found")
    rules: ClassVar[Mapping[str, Rule]] = {
        # the routes
        "list_protocols": Rule(EVERYONE),
        "preview": Rule(EVERYONE),
        "list": Rule(EVERYONE),
        "read": Rule(EVERYONE),
        "create": Rule(EVERYONE),
        "cancel": Rule(EVERYONE),
        "add_session": Rule(EVERYONE),
        # cancel_series, once the series is found
        "cancel_remaining": Rule(bookings.roles("cancel"),
                                 refusal="The {role} role may not cancel a series."),
        # a change that breaks the series' protocol goes through only when a clinician (or
        # an admin) confirms it with a reason (adherence.py)
        "override_protocol": Rule((Role.ADMIN, Role.PROVIDER),
                                  refusal="Only a provider or an admin may confirm a change "
                                          "that breaks a series' protocol.",
                                  code="protocol_override_not_allowed"),
    }

    def _sessions_of_provider(self, actor: Actor) -> Select:
        return select(Booking.series_id).where(Booking.provider_id == actor.provider_id,
                                               Booking.series_id.is_not(None))

    def visible(self, actor: Actor, query: Select) -> Select:
        if actor.role is Role.PATIENT:
            return query.where(TreatmentSeries.patient_id == actor.patient_id)
        if actor.role is Role.PROVIDER:
            return query.where(or_(
                TreatmentSeries.provider_id == actor.provider_id,
                TreatmentSeries.id.in_(self._sessions_of_provider(actor))))
        return query

    def can_see(self, actor: Actor, record: Any) -> bool:
        if actor.role is Role.PATIENT:
            return record.patient_id == actor.patient_id
        if actor.role is Role.PROVIDER:
            if record.provider_id == actor.provider_id:
                return True
            mine = self._sessions_of_provider(actor).where(Booking.series_id == record.id)
            return bool(object_session(record).scalar(select(mine.exists())))
        return True

    def provider_for(self, actor: Actor, requested: uuid.UUID | None) -> uuid.UUID | None:
        """The provider the key plans the series with: a provider key itself (naming another
        is "not found"); other keys the one they name (None: any licensed provider)."""
        if actor.role is not Role.PROVIDER:
            return requested
        if requested is not None and not acts_for_provider(actor, requested):
            raise NotFound("No provider with this id.", code="provider_not_found")
        return actor.provider_id

    def check_remaining(self, actor: Actor, remaining: Iterable[Booking]) -> None:
        """A provider cancels a series only when every remaining session is its own."""
        if not all(acts_for_provider(actor, b.provider_id) for b in remaining):
            raise Forbidden("Some remaining sessions are with another provider; the clinic "
                            "cancels the series.", code="forbidden")


policy = SeriesPolicy()
