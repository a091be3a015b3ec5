"""Who may see and record which clinical records.

Clinical records are for clinic staff and providers; a patient sees its own assessments,
vital signs and telehealth link, and may submit its own assessments and telehealth consent.
Records hang off a booking or a patient, and are reached only through the bookings and
patients policies (someone else's record is "not found"). Only a provider, a clinician,
clears a patient for treatment (any provider, for
any patient: a covering provider too) or overrides a blood pressure hold; a provider records only
its own in-person evaluations. Alerts: clinic staff see all, a provider those of the
patients it sees, those about no patient but its own calendars (calendar_stale), and every
urgent one while it is on the on-call rota (it is paged for them). Tasks: a provider sees
those of its own sessions, clinic staff all.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy import Select, and_, exists, or_, select
from sqlalchemy.orm import object_session

from service.domain.access.actor import Actor, Role
from service.domain.access.policy import CLINICAL, Missing, Policy, Rule, acts_for_provider
from service.domain.consultations.models import Alert, Task
from service.domain.oncall.models import OnCallContact
from service.domain.patients.models import Patient
from service.domain.patients.policy import policy as patients

CLINICAL_AND_PATIENT = (*CLINICAL, Role.PATIENT)


def _clinician(what: str) -> Rule:
    return Rule((Role.PROVIDER,), refusal=f"Only a provider (a clinician) may {what}.",
                code="clinician_only")


class ConsultationPolicy(Policy):
    name = "consultations"
    rules: ClassVar[Mapping[str, Rule]] = {
        # screening and clearance
        "read_screening": Rule(CLINICAL),
        "record_screening": Rule(CLINICAL),
        "update_screening": Rule(CLINICAL),
        "list_decisions": Rule(CLINICAL),
        "record_decision": Rule(CLINICAL),
        "clear_for_treatment": _clinician("clear a patient for treatment"),
        "list_evaluations": Rule(CLINICAL),
        "record_evaluation": Rule(CLINICAL),
        # telehealth
        "read_telehealth": Rule(CLINICAL_AND_PATIENT),
        "record_consent": Rule(CLINICAL_AND_PATIENT),
        "check_in_telehealth": Rule(CLINICAL),
        "mark_prescribing": Rule(CLINICAL),
        # sessions
        "list_vitals": Rule(CLINICAL_AND_PATIENT),
        "record_vitals": Rule(CLINICAL),
        "list_holds": Rule(CLINICAL),
        "override_hold": Rule(CLINICAL),
        "sign_hold_override": _clinician("override a blood pressure hold"),
        "list_side_effects": Rule(CLINICAL),
        "log_side_effect": Rule(CLINICAL),
        "update_side_effect": Rule(CLINICAL),
        # assessments
        "list_assessments": Rule(CLINICAL_AND_PATIENT),
        "submit_assessment": Rule(CLINICAL_AND_PATIENT),
    }
    # Rows: through the bookings policy (a booking's records) and the patients policy.

    def may_evaluate_as(self, actor: Actor, provider_id: uuid.UUID) -> bool:
        """A provider key records only its own in-person evaluations (another provider is
        "not found"); clinic staff record any provider's."""
        return acts_for_provider(actor, provider_id)

    def decides_for_any_patient(self, actor: Actor) -> bool:
        """Any provider of the clinic records a clearance decision for any patient (a
        covering provider with no visit with them); reading the patient's records still
        goes through the patients policy."""
        return actor.role is Role.PROVIDER or patients.sees_every_patient(actor)


class AlertPolicy(Policy):
    name = "alerts"
    model = Alert
    missing = Missing("No such alert.", code="alert_not_found")
    rules: ClassVar[Mapping[str, Rule]] = {
        "list": Rule(CLINICAL),
        "read": Rule(CLINICAL),
        "acknowledge": Rule(CLINICAL),
    }

    @staticmethod
    def _on_call(actor: Actor) -> Any:
        """The actor is a provider on the active on-call rota."""
        return exists().where(OnCallContact.provider_id == actor.provider_id,
                              OnCallContact.active.is_(True))

    def visible(self, actor: Actor, query: Select) -> Select:
        if patients.sees_every_patient(actor):
            return query
        theirs = Alert.patient_id.in_(patients.visible(actor, select(Patient.id)))
        if actor.role is Role.PROVIDER and actor.provider_id is not None:
            own = and_(Alert.patient_id.is_(None), Alert.provider_id == actor.provider_id)
            return query.where(or_(theirs, own,
                                   and_(Alert.urgent.is_(True), self._on_call(actor))))
        return query.where(theirs)

    def can_see(self, actor: Actor, record: Any) -> bool:
        if patients.sees_every_patient(actor):
            return True
        session = object_session(record)
        if (actor.role is Role.PROVIDER and actor.provider_id is not None and record.urgent
                and session.scalar(select(self._on_call(actor)))):
            return True
        if record.patient_id is None:  # about a provider (its calendar): that provider
            return (actor.role is Role.PROVIDER and actor.provider_id is not None
                    and record.provider_id == actor.provider_id)
        patient = session.get(Patient, record.patient_id)
        return patients.can_see(actor, patient)


class TaskPolicy(Policy):
    name = "tasks"
    model = Task
    missing = Missing("No such task.", code="task_not_found")
    rules: ClassVar[Mapping[str, Rule]] = {
        "list": Rule(CLINICAL),
        "complete": Rule(CLINICAL),
    }

    def visible(self, actor: Actor, query: Select) -> Select:
        if actor.role is Role.PROVIDER:
            return query.where(Task.provider_id == actor.provider_id)
        return query

    def can_see(self, actor: Actor, record: Any) -> bool:
        return acts_for_provider(actor, record.provider_id)


policy = ConsultationPolicy()
alerts = AlertPolicy()
tasks = TaskPolicy()
