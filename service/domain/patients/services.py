"""Use cases for patients. Who sees and changes which patient is the patients policy's to say
(``service/domain/patients/policy.py``): a record the caller may not see is "not found"."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from service.db import utcnow
from service.domain.access.actor import Actor
from service.domain.consultations.events import ClearanceChanged
from service.domain.patients.events import RemsEnrolmentChanged
from service.domain.patients.models import Patient
from service.domain.patients.policy import policy
from service.domain.records import Page, apply_changes, paginate
from service.uow import UnitOfWork


def find_patient(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID) -> Patient:
    """The patient, if the actor may see them (for use inside a unit of work)."""
    return policy.load(uow.session, actor, patient_id)


def list_patients(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                  active: bool | None = None, name: str | None = None) -> Page[Patient]:
    query = policy.visible(actor, select(Patient)).order_by(
        Patient.last_name, Patient.first_name, Patient.id)
    if active is not None:
        query = query.where(Patient.active.is_(active))
    if name:
        pattern = f"%{name}%"
        query = query.where(Patient.last_name.ilike(pattern) | Patient.first_name.ilike(pattern))
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)


def get_patient(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID) -> Patient:
    with uow:
        return find_patient(uow, actor, patient_id)


def create_patient(uow: UnitOfWork, actor: Actor, **values: Any) -> Patient:
    policy.require(actor, "create")

    def work() -> Patient:
        patient = Patient(**values)
        if patient.sms_consent is False:
            patient.sms_opted_out_at = None
        uow.session.add(patient)
        return patient

    return uow.run(work)


def update_patient(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID, *,
                   expected_version: int | None, changes: dict[str, Any]) -> Patient:
    def work() -> Patient:
        patient = find_patient(uow, actor, patient_id)
        policy.check_changes(actor, changes)
        applied = changes
        if changes.get("sms_consent") is True:
            applied = {**changes, "sms_opted_out_at": None}
        elif changes.get("sms_consent") is False and patient.sms_opted_out_at is None:
            applied = {**changes, "sms_opted_out_at": utcnow()}
        enrolled = patient.rems_enrolled
        apply_changes(patient, applied, expected_version=expected_version)
        if patient.rems_enrolled != enrolled:
            uow.record(RemsEnrolmentChanged(patient_id=patient.id,
                                            enrolled=patient.rems_enrolled,
                                            occurred_at=utcnow()))
        return patient

    return uow.run(work)


def deactivate_patient(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID) -> Patient:
    def work() -> Patient:
        patient = find_patient(uow, actor, patient_id)
        patient.active = False
        return patient

    return uow.run(work)


def follow_clearance(uow: UnitOfWork, event: ClearanceChanged) -> None:
    """The patient's ``cleared_for_treatment`` is a read-only copy of the decision that
    stands (handler of ``ClearanceChanged``, in the decision's transaction)."""
    patient = uow.session.get(Patient, event.patient_id)
    if patient.cleared_for_treatment != event.cleared:
        patient.cleared_for_treatment = event.cleared
