"""Who may see and move which booking.

Rows: a patient key sees its patient's bookings, a provider key its provider's; clinic staff
and integrations see all. A booking that cannot be seen is "not found". A provider key books
only its own visits (another provider is "not found").

Routes let every key ask (the row rule answers first); which status change a role may make
is the use case's to check (``confirm`` ... ``cancel`` below), in words of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy import Select

from service.domain.access.actor import Actor, Role
from service.domain.access.policy import EVERYONE, STAFF, Missing, Policy, Rule, acts_for_provider
from service.domain.bookings.models import Booking


def _transition(action: str, *roles: Role) -> Rule:
    return Rule((*STAFF, *roles),
                refusal=f"The {{role}} role may not {action.replace('_', ' ')} a booking.")


class BookingPolicy(Policy):
    name = "bookings"
    model = Booking
    missing = Missing("No booking with this id.", code="booking_not_found")
    rules: ClassVar[Mapping[str, Rule]] = {
        # the routes
        "list": Rule(EVERYONE),
        "read": Rule(EVERYONE),
        "create": Rule(EVERYONE),
        "reschedule": Rule(EVERYONE),
        "change_status": Rule(EVERYONE),  # cancel, confirm, check in, complete, no-show
        # the status changes (apply_transition), by action
        "confirm": _transition("confirm", Role.PATIENT, Role.PROVIDER),
        "check_in": _transition("check_in", Role.PROVIDER),
        "complete": _transition("complete", Role.PROVIDER),
        "no_show": _transition("no_show", Role.PROVIDER),
        "cancel": _transition("cancel", Role.PATIENT, Role.PROVIDER),
        # a booking flagged for attention (a gate it no longer passes): a clinician's call
        "resolve_attention": Rule((Role.ADMIN, Role.PROVIDER),
                                  refusal="Only a provider or an admin may resolve a "
                                          "booking's attention flag."),
    }

    def visible(self, actor: Actor, query: Select) -> Select:
        if actor.role is Role.PATIENT:
            return query.where(Booking.patient_id == actor.patient_id)
        if actor.role is Role.PROVIDER:
            return query.where(Booking.provider_id == actor.provider_id)
        return query

    def can_see(self, actor: Actor, record: Any) -> bool:
        if actor.role is Role.PATIENT:
            return record.patient_id == actor.patient_id
        if actor.role is Role.PROVIDER:
            return record.provider_id == actor.provider_id
        return True

    def may_book_with(self, actor: Actor, provider_id: Any) -> bool:
        """A provider key books only its own visits; other keys book with any provider."""
        return acts_for_provider(actor, provider_id)


policy = BookingPolicy()
