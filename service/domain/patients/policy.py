"""Who may see and change patients.

Clinic staff and integrations see every patient; a patient key only its own patient; a
provider key only the patients it has a visit with (in any status); anyone else no one. A
patient that cannot be seen is "not found". Clinic staff register, change and deactivate
patients; a patient may change its own contact details and consent, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy import Select, false, select
from sqlalchemy.orm import object_session

from service.domain.access.actor import Actor, Role
from service.domain.access.policy import EVERYONE, STAFF, Missing, Policy, Rule
from service.domain.bookings.models import Booking
from service.domain.errors import Forbidden
from service.domain.patients.models import Patient
from service.domain.patients.relations import patients_of_provider

SEE_EVERY_PATIENT = (*STAFF, Role.INTEGRATION)

# What a patient may change on their own record: contact details and consent.
PATIENT_EDITABLE = frozenset(
    {"email", "phone", "timezone", "home_state", "sms_consent", "email_consent"}
)


class PatientPolicy(Policy):
    name = "patients"
    model = Patient
    missing = Missing("No patient with this id.", code="patient_not_found")
    rules: ClassVar[Mapping[str, Rule]] = {
        "list": Rule(EVERYONE),
        "read": Rule(EVERYONE),
        "create": Rule(STAFF),
        "update": Rule((*STAFF, Role.PATIENT)),  # a patient: PATIENT_EDITABLE fields only
        "deactivate": Rule(STAFF),
    }

    def sees_every_patient(self, actor: Actor) -> bool:
        return actor.role in SEE_EVERY_PATIENT

    def visible(self, actor: Actor, query: Select) -> Select:
        if self.sees_every_patient(actor):
            return query
        if actor.role is Role.PATIENT:
            return query.where(Patient.id == actor.patient_id)
        if actor.role is Role.PROVIDER:
            return query.where(Patient.id.in_(patients_of_provider(actor.provider_id)))
        return query.where(false())

    def can_see(self, actor: Actor, record: Any) -> bool:
        if self.sees_every_patient(actor):
            return True
        if actor.role is Role.PATIENT:
            return record.id == actor.patient_id
        if actor.role is Role.PROVIDER:
            of_provider = patients_of_provider(actor.provider_id)
            return bool(object_session(record).scalar(
                select(of_provider.where(Booking.patient_id == record.id).exists())))
        return False

    def check_changes(self, actor: Actor, changes: Mapping[str, Any]) -> None:
        """Clinic staff change any field; a patient only its contact details and consent."""
        if actor.role in STAFF:
            return
        refused = sorted(set(changes) - PATIENT_EDITABLE)
        if actor.role is not Role.PATIENT or refused:
            raise Forbidden("Only clinic staff may change these fields.",
                            code="field_not_editable", fields=refused)


policy = PatientPolicy()
