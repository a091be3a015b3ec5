"""Use cases for patients. A patient sees only their own record; a provider only the patients
they have a visit with; anyone else asking for a record they may not see gets "not found"."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, false, select

from service.db import utcnow
from service.domain.access.actor import Actor, Role
from service.domain.consultations.events import ClearanceChanged
from service.domain.errors import Forbidden, NotFound
from service.domain.patients.models import Patient
from service.domain.patients.relations import patients_of_provider
from service.domain.records import Page, apply_changes, paginate
from service.uow import UnitOfWork

# What a patient may change on their own record: contact details and consent.
PATIENT_EDITABLE = frozenset(
    {"email", "phone", "timezone", "home_state", "sms_consent", "email_consent"}
)


def visible_patients(actor: Actor, query: Select) -> Select:
    """Restrict a query over patients to those the actor may see."""
    if actor.sees_every_patient:
        return query
    if actor.role is Role.PATIENT:
        return query.where(Patient.id == actor.patient_id)
    if actor.role is Role.PROVIDER:
        return query.where(Patient.id.in_(patients_of_provider(actor.provider_id)))
    return query.where(false())


def find_patient(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID) -> Patient:
    """The patient, if the actor may see them (for use inside a unit of work)."""
    patient = uow.session.scalar(visible_patients(actor, select(Patient))
                                 .where(Patient.id == patient_id))
    if patient is None:
        raise NotFound("No patient with this id.", code="patient_not_found")
    return patient


def list_patients(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                  active: bool | None = None, name: str | None = None) -> Page[Patient]:
    query = visible_patients(actor, select(Patient)).order_by(
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
    if not actor.is_clinic_staff:
        raise Forbidden("Only clinic staff register patients.", code="forbidden")

    def work() -> Patient:
        patient = Patient(**values)
        if patient.sms_consent is False:
            patient.sms_opted_out_at = None
        uow.session.add(patient)
        return patient

    return uow.run(work)


def update_patient(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID, *,
                   expected_version: int, changes: dict[str, Any]) -> Patient:
    def work() -> Patient:
        patient = find_patient(uow, actor, patient_id)
        if not actor.is_clinic_staff:
            refused = sorted(set(changes) - PATIENT_EDITABLE)
            if actor.role is not Role.PATIENT or refused:
                raise Forbidden("Only clinic staff may change these fields.",
                                code="field_not_editable", fields=refused)
        applied = changes
        if changes.get("sms_consent") is True:
            applied = {**changes, "sms_opted_out_at": None}
        elif changes.get("sms_consent") is False and patient.sms_opted_out_at is None:
            applied = {**changes, "sms_opted_out_at": utcnow()}
        apply_changes(patient, applied, expected_version=expected_version)
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
