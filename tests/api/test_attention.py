"""Gates re-checked when their inputs change: a future booking that no longer passes a rule
it passed when made is flagged (``attention``), an alert and a ``booking.attention`` webhook
follow, and check-in waits for a provider to resolve it."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from service.domain.bookings import attention
from service.domain.calendar.models import WebhookDelivery
from service.domain.providers.models import License
from service.extensions import unit_of_work
from tests.api.test_consultations import consultation, decide, screen
from tests.api.test_directory import assert_problem
from tests.factories import clinic_today
from tests.scenario import Clinic, build_clinic


@pytest.fixture
def clinic(api):
    scenario = build_clinic(api)
    api.bind("doc", "provider", provider_id=scenario.doctor["id"])
    return scenario


def booked(clinic: Clinic, service: str = "iv-infusion", hour: int = 9,
           days_later: int = 0) -> dict:
    response = clinic.book(service, clinic.at(hour, day=clinic.day + timedelta(days_later)))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["attention"] is None
    return response.get_json()


def read(clinic: Clinic, booking: dict) -> dict:
    return clinic.api.get(f"/api/v1/bookings/{booking['id']}").get_json()


def resolve(clinic: Clinic, booking: dict, role: str = "doc", **body):
    return clinic.api.post(f"/api/v1/bookings/{booking['id']}/attention/resolve",
                           json={"reason": "Re-cleared after review", **body}, role=role)


def alerts(clinic: Clinic, role: str = "staff") -> list[dict]:
    response = clinic.api.get("/api/v1/alerts", role=role)
    assert response.status_code == 200, response.get_json()
    return [a for a in response.get_json() if a["kind"] == "booking_attention"]


def test_a_patient_moved_back_to_needs_review_flags_their_future_treatments(clinic, api):
    iv = booked(clinic, hour=9)
    visit = consultation(clinic)  # a consultation is not gated by clearance
    assert screen(clinic, visit, uncontrolled_hypertension=True).status_code == 201

    flagged = read(clinic, iv)
    assert flagged["attention"] == "clearance_required" and flagged["attention_since"]
    assert read(clinic, visit)["attention"] is None
    raised = alerts(clinic)
    assert [(a["booking_id"], a["code"]) for a in raised] == [(iv["id"], "clearance_required")]
    assert [a["booking_id"] for a in alerts(clinic, role="doc")] == [iv["id"]]
    assert_problem(clinic.check_in(iv), 409, "clearance_required")


def test_a_flagged_booking_is_checked_in_only_once_a_provider_resolved_it(clinic, api):
    iv = booked(clinic)
    assert decide(clinic, clinic.patient, "not_cleared",
                  reason="Blood pressure to be controlled first").status_code == 201
    assert read(clinic, iv)["attention"] == "clearance_required"
    assert decide(clinic, clinic.patient, "cleared",
                  reason="Blood pressure controlled, per the GP's letter").status_code == 201
    # Cleared again: the flag stays until a clinician looked at the booking.
    assert read(clinic, iv)["attention"] == "clearance_required"
    assert_problem(clinic.check_in(iv), 409, "clearance_required")

    assert_problem(resolve(clinic, iv, role="staff"), 403, "forbidden")
    assert_problem(resolve(clinic, iv, reason=""), 422, "validation_failed")
    resolved = resolve(clinic, iv)
    assert resolved.status_code == 200, resolved.get_json()
    body = resolved.get_json()
    assert body["attention"] is None and body["attention_since"] is None
    assert body["attention_resolution"] == "Re-cleared after review"
    assert_problem(resolve(clinic, iv), 409, "booking_not_flagged")
    assert clinic.check_in(iv).status_code == 200


def test_check_in_asks_the_gates_again_even_after_a_resolution(clinic, api):
    iv = booked(clinic)
    assert decide(clinic, clinic.patient, "needs_review", role="staff",
                  reason="New medication to review").status_code == 201
    assert resolve(clinic, iv, role="admin").status_code == 200
    assert_problem(clinic.check_in(iv), 409, "clearance_required")


def test_a_screening_that_names_a_contraindication_flags_esketamine(clinic, api):
    spray = booked(clinic, "esketamine", hour=9)
    iv = booked(clinic, "iv-infusion", days_later=1)
    visit = consultation(clinic)
    assert screen(clinic, visit, arteriovenous_malformation=True).status_code == 201
    assert read(clinic, spray)["attention"] == "esketamine_contraindicated"
    assert read(clinic, iv)["attention"] is None


def test_a_withdrawn_rems_enrolment_flags_esketamine(clinic, api):
    spray = booked(clinic, "esketamine")
    version = api.get(f"/api/v1/patients/{clinic.patient['id']}").headers["ETag"]
    changed = api.patch(f"/api/v1/patients/{clinic.patient['id']}",
                        json={"rems_enrolled": False}, headers={"If-Match": version})
    assert changed.status_code == 200, changed.get_json()
    assert read(clinic, spray)["attention"] == "rems_requirements_not_met"


def test_a_suspended_license_flags_the_providers_bookings_and_tells_webhooks(clinic, api):
    hook = api.post("/api/v1/webhooks", role="integration", json={
        "url": "https://ehr.example.com/hooks/clinic", "events": ["booking.attention"]})
    assert hook.status_code == 201, hook.get_json()
    iv = booked(clinic)
    licenses = api.get(f"/api/v1/providers/{clinic.doctor['id']}/licenses").get_json()
    changed = api.patch(f"/api/v1/providers/{clinic.doctor['id']}/licenses/"
                        f"{licenses[0]['id']}", json={"status": "suspended"},
                        headers={"If-Match": '"v1"'})
    assert changed.status_code == 200, changed.get_json()
    assert read(clinic, iv)["attention"] == "provider_not_licensed"
    sent = api.get(f"/api/v1/webhooks/{hook.get_json()['id']}/deliveries",
                   role="integration").get_json()
    assert [d["event_type"] for d in sent] == ["booking.attention"]
    with api.app.app_context(), unit_of_work() as uow:
        body = json.loads(uow.session.query(WebhookDelivery).one().payload)
    assert body["data"]["booking_id"] == iv["id"]
    assert body["data"]["attention"] == "provider_not_licensed"
    assert "patient_id" not in body["data"]


def test_the_daily_job_flags_bookings_after_a_license_expiry(clinic, api):
    iv = booked(clinic)
    with api.app.app_context():
        with unit_of_work() as uow:  # the license's end moved without an event (an import)
            record = uow.session.query(License).filter(
                License.provider_id == uuid.UUID(clinic.doctor["id"])).one()
            record.expires_on = clinic.day - timedelta(days=1)
            uow.commit()
        assert read(clinic, iv)["attention"] is None
        flagged = attention.recheck_licenses(unit_of_work(), now=_now(clinic))
    assert flagged == 1
    assert read(clinic, iv)["attention"] == "provider_not_licensed"
    assert [a["code"] for a in alerts(clinic)] == ["provider_not_licensed"]
    with api.app.app_context():  # a second run flags nothing again
        assert attention.recheck_licenses(unit_of_work(), now=_now(clinic)) == 0
    assert len(alerts(clinic)) == 1


def _now(clinic: Clinic):
    return clinic.at(0, day=clinic_today())
