"""Who may see and change which waitlist entries and offers.

A patient key joins, sees, withdraws its own entries and answers its own offers (another
patient's are "not found"); clinic staff see the whole list, reorder it and act for any
patient. Providers and integrations have no part in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy import Select

from service.domain.access.actor import Actor, Role
from service.domain.access.policy import STAFF, Missing, Policy, Rule
from service.domain.waitlist.models import WaitlistEntry, WaitlistOffer

STAFF_AND_PATIENT = (*STAFF, Role.PATIENT)


class _PatientsOwn(Policy):
    """Rows with a ``patient_id``: a patient key sees its own, staff every one."""

    def visible(self, actor: Actor, query: Select) -> Select:
        if actor.role is Role.PATIENT:
            return query.where(self.model.patient_id == actor.patient_id)
        return query

    def can_see(self, actor: Actor, record: Any) -> bool:
        return actor.role is not Role.PATIENT or record.patient_id == actor.patient_id


class EntryPolicy(_PatientsOwn):
    name = "waitlist"
    model = WaitlistEntry
    missing = Missing("No waitlist entry with this id.", code="waitlist_entry_not_found")
    rules: ClassVar[Mapping[str, Rule]] = {
        "list": Rule(STAFF_AND_PATIENT),
        "read": Rule(STAFF_AND_PATIENT),
        "join": Rule(STAFF_AND_PATIENT),
        "withdraw": Rule(STAFF_AND_PATIENT),
        "reorder": Rule(STAFF),
    }


class OfferPolicy(_PatientsOwn):
    name = "waitlist_offers"
    model = WaitlistOffer
    missing = Missing("No waitlist offer with this id.", code="waitlist_offer_not_found")
    rules: ClassVar[Mapping[str, Rule]] = {
        "list": Rule(STAFF_AND_PATIENT),
        "read": Rule(STAFF_AND_PATIENT),
        "accept": Rule(STAFF_AND_PATIENT),
        "decline": Rule(STAFF_AND_PATIENT),
    }


entries = EntryPolicy()
offers = OfferPolicy()
