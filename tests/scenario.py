"""A small clinic built through the API, for slot and booking tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from service.domain.consultations.models import (
    ClearanceDecision,
    ClearanceStatus,
    DecisionSource,
)
from service.domain.patients.models import Patient
from service.extensions import unit_of_work
from tests.factories import (
    NPIS,
    Api,
    clinic_payload,
    clinic_today,
    license_payload,
    patient_payload,
    provider_payload,
    virtual_payload,
)

PHOENIX = ZoneInfo("America/Phoenix")
EVERY_DAY = range(7)


@dataclass
class Clinic:
    api: Api
    clinic: dict[str, Any]
    virtual: dict[str, Any]
    doctor: dict[str, Any]  # MD, Arizona license, REMS prescriber
    services: dict[str, dict[str, Any]]
    patient: dict[str, Any]  # cleared, REMS-enrolled, in Phoenix
    day: date = field(default_factory=lambda: clinic_today() + timedelta(days=10))

    def at(self, hour: int, minute: int = 0, day: date | None = None) -> datetime:
        """A Phoenix wall-clock time on the test day."""
        return datetime.combine(day or self.day, time(hour, minute), tzinfo=PHOENIX)

    def add_provider(self, name: str, npi: str, *, licenses: list[dict] | None = None,
                     hours: list[dict] | None = None, **overrides: Any) -> dict[str, Any]:
        provider = self.api.create("/api/v1/providers",
                                   provider_payload(name=name, npi=npi, **overrides))
        for index, record in enumerate(licenses if licenses is not None else [{}]):
            self.api.create(f"/api/v1/providers/{provider['id']}/licenses",
                            license_payload(number=f"{npi}-{index}", **record))
        self.set_hours(provider, hours if hours is not None else self.standard_hours())
        return provider

    def standard_hours(self) -> list[dict[str, Any]]:
        """In the clinic 08:00-12:00 and on video 13:00-17:00, every day."""
        return ([{"location_id": self.clinic["id"], "weekday": d, "start": "08:00",
                  "end": "12:00"} for d in EVERY_DAY]
                + [{"location_id": self.virtual["id"], "weekday": d, "start": "13:00",
                    "end": "17:00"} for d in EVERY_DAY])

    def set_hours(self, provider: dict[str, Any], weekly: list[dict[str, Any]],
                  overrides: list[dict[str, Any]] | None = None) -> None:
        response = self.api.put(f"/api/v1/providers/{provider['id']}/availability",
                                json={"weekly": weekly, "overrides": overrides or []})
        assert response.status_code == 200, response.get_json()

    def add_patient(self, **overrides: Any) -> dict[str, Any]:
        return self.api.create("/api/v1/patients", patient_payload(**overrides))

    def add_cleared_patient(self, **overrides: Any) -> dict[str, Any]:
        """A patient a provider cleared for treatment (see ``clear_for_treatment``)."""
        return self.clear_for_treatment(self.add_patient(**overrides))

    def clear_for_treatment(self, patient: dict[str, Any],
                            provider: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record a provider's "cleared" decision, as made at an earlier consultation, and
        return the patient as read again (its version moved with the read-out).

        Written through the models on purpose: through HTTP, a provider decides only for a
        patient they have a visit with, and that consultation would add a booking (and its
        reminders) to the schedule of every test that needs a cleared patient. The HTTP path
        (consultation, screening, decision) is tested in tests/api/test_consultations.py.
        """
        with self.api.app.app_context(), unit_of_work() as uow:
            record = uow.session.get(Patient, uuid.UUID(patient["id"]))
            uow.session.add(ClearanceDecision(
                patient_id=record.id, decision=ClearanceStatus.CLEARED,
                source=DecisionSource.CLINICIAN, reason="Cleared at an earlier consultation",
                decided_by_provider_id=uuid.UUID((provider or self.doctor)["id"])))
            record.cleared_for_treatment = True
            uow.commit()
        response = self.api.get(f"/api/v1/patients/{patient['id']}")
        assert response.status_code == 200, response.get_json()
        patient.update(response.get_json())
        return patient

    def slots(self, service: str, *, role: str = "staff", **params: Any) -> list[dict]:
        query = {"service_type": self.services[service]["id"],
                 "start": self.day.isoformat(), "end": self.day.isoformat(), **params}
        response = self.api.get("/api/v1/slots", query_string=query, role=role)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["slots"]

    def book(self, service: str, start: datetime, *, role: str = "staff",
             provider: dict | None = None, patient: dict | None = None,
             location: dict | None = None, headers: dict[str, str] | None = None,
             **extra: Any):
        body = {
            "patient_id": (patient or self.patient)["id"],
            "provider_id": (provider or self.doctor)["id"],
            "service_type_id": self.services[service]["id"],
            "location_id": (location or (self.virtual if service in ("consultation",)
                                         else self.clinic))["id"],
            "start": start.isoformat(),
            **extra,
        }
        if service in ("iv-infusion", "esketamine"):
            body.setdefault("ride_home_confirmed", True)
        if service == "consultation":
            body.setdefault("patient_state", "AZ")
        return self.api.post("/api/v1/bookings", json=body, role=role, headers=headers)

    def check_in(self, booking: dict[str, Any], *, role: str = "staff", state: str = "AZ"):
        """Check a visit in; a telehealth one with the patient's consent on record first and
        the location attested again (``state``)."""
        base = f"/api/v1/bookings/{booking['id']}"
        if booking["location_id"] != self.virtual["id"]:
            return self.api.post(f"{base}/check-in", role=role)
        consent = self.api.post(f"{base}/telehealth/consent", role=role)
        assert consent.status_code == 200, consent.get_json()
        return self.api.post(f"{base}/telehealth/check-in", json={"patient_state": state},
                             role=role)


def build_clinic(api: Api) -> Clinic:
    clinic = api.create("/api/v1/locations", clinic_payload(chairs=2))
    virtual = api.create("/api/v1/locations", virtual_payload())
    services = {
        "consultation": api.create("/api/v1/service-types", {
            "code": "consultation", "name": "Telehealth consultation",
            "modality": "telehealth", "duration_minutes": 60, "slot_interval_minutes": 30,
            "min_notice_minutes": 120, "horizon_days": 300}),
        "iv-infusion": api.create("/api/v1/service-types", {
            "code": "iv-infusion", "name": "IV infusion", "modality": "in-person",
            "duration_minutes": 45, "recovery_minutes": 60, "buffer_before_minutes": 15,
            "buffer_after_minutes": 15, "slot_interval_minutes": 15, "needs_chair": True,
            "needs_clearance": True, "min_notice_minutes": 1440, "horizon_days": 90,
            "late_cancel_hours": 48}),
        "esketamine": api.create("/api/v1/service-types", {
            "code": "esketamine", "name": "Esketamine session", "modality": "in-person",
            "duration_minutes": 15, "recovery_minutes": 120, "buffer_before_minutes": 15,
            "slot_interval_minutes": 15, "needs_chair": True, "needs_clearance": True,
            "requires_rems": True, "min_notice_minutes": 1440, "horizon_days": 90}),
    }
    patient = api.create("/api/v1/patients", patient_payload(
        first_name="Robin", rems_enrolled=True))
    scenario = Clinic(api=api, clinic=clinic, virtual=virtual, doctor={}, services=services,
                      patient=patient)
    scenario.doctor = scenario.add_provider("Dr. Ada Stone", NPIS[0])
    scenario.clear_for_treatment(patient)
    return scenario
