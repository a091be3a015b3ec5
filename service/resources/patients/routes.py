"""Patients: ``/api/v1/patients``. Patients see only themselves; providers their patients."""

from __future__ import annotations

from service.domain.patients import services
from service.domain.patients.policy import policy
from service.extensions import Blueprint
from service.resources.common import Catalog, register_catalog
from service.resources.patients.schemas import (
    PatientQueryArgsSchema,
    PatientSchema,
    PatientUpdateSchema,
)

blp = Blueprint("patients", __name__, url_prefix="/api/v1",
                description="Patients: contact, zone, consent, REMS enrollment, clearance. "
                            "A patient key sees only its patient; a provider key only the "
                            "patients it has visits with; others get 404.")

register_catalog(
    blp,
    Catalog(noun="patient", plural="patients", id_name="patient_id",
            list=services.list_patients, get=services.get_patient,
            create=services.create_patient, update=services.update_patient,
            deactivate=services.deactivate_patient),
    policy=policy, schema=PatientSchema, update_schema=PatientUpdateSchema,
    query_schema=PatientQueryArgsSchema,
)
