"""Clearance from a consultation (issue 13 item 5), through HTTP: a decision cites the
consultation booking it rests on, completed and screened, or says why not in `reason`; any
provider of the clinic may record it."""

from __future__ import annotations

import pytest

from tests.api.test_consultations import (
    completed,
    consultation,
    decide,
    new_patient_with_consultation,
    screen,
)
from tests.api.test_directory import assert_problem
from tests.factories import NPIS
from tests.scenario import Clinic, build_clinic


@pytest.fixture
def clinic(api):
    scenario = build_clinic(api)
    api.bind("doc", "provider", provider_id=scenario.doctor["id"])
    return scenario


def cleared(clinic: Clinic, patient: dict) -> bool:
    return clinic.api.get(f"/api/v1/patients/{patient['id']}").get_json()[
        "cleared_for_treatment"]


def test_a_decision_cites_a_completed_screened_consultation(clinic):
    patient, booking = new_patient_with_consultation(clinic)
    assert screen(clinic, booking).status_code == 201
    completed(clinic, booking)
    response = decide(clinic, patient, "cleared", consultation_booking_id=booking["id"])
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["consultation_booking_id"] == booking["id"] and body["reason"] is None
    assert body["decided_by_provider_id"] == clinic.doctor["id"]
    assert cleared(clinic, patient)
    assert clinic.book("iv-infusion", clinic.at(9), patient=patient).status_code == 201


def test_clearing_before_the_consultation_is_completed_needs_a_reason(clinic):
    patient, booking = new_patient_with_consultation(clinic)  # booked, days or hours away
    screen(clinic, booking)
    body = assert_problem(decide(clinic, patient, "cleared",
                                 consultation_booking_id=booking["id"]),
                          409, "consultation_not_completed")
    assert body["booking_status"] == "booked"
    assert not cleared(clinic, patient)  # nothing written
    reason = "Records from the referring psychiatrist reviewed; consult is a formality"
    response = decide(clinic, patient, "cleared", consultation_booking_id=booking["id"],
                      reason=reason)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["reason"] == reason
    listed = clinic.api.get(f"/api/v1/patients/{patient['id']}/clearance-decisions").get_json()
    assert listed[0]["reason"] == reason
    assert listed[0]["consultation_booking_id"] == booking["id"]


def test_a_decision_citing_no_consultation_needs_a_reason(clinic):
    patient, _ = new_patient_with_consultation(clinic)
    for decision in ("cleared", "not_cleared", "needs_review"):
        assert_problem(decide(clinic, patient, decision), 422, "clearance_reason_required")
        assert_problem(decide(clinic, patient, decision, reason="   "), 422,
                       "clearance_reason_required")
    assert not cleared(clinic, patient)
    response = decide(clinic, patient, "not_cleared", reason="Blood pressure first")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["consultation_booking_id"] is None


def test_clearing_without_a_screening_on_the_consultation_needs_a_reason(clinic):
    patient, booking = new_patient_with_consultation(clinic)
    completed(clinic, booking)
    assert_problem(decide(clinic, patient, "cleared", consultation_booking_id=booking["id"]),
                   422, "clearance_reason_required")
    assert not cleared(clinic, patient)
    # Not clearing rests on the completed consultation alone.
    assert decide(clinic, patient, "needs_review",
                  consultation_booking_id=booking["id"]).status_code == 201
    response = decide(clinic, patient, "cleared", consultation_booking_id=booking["id"],
                      reason="Screened on paper at the consultation")
    assert response.status_code == 201, response.get_json()
    assert cleared(clinic, patient)


def test_the_cited_booking_is_the_patients_consultation(clinic):
    patient, booking = new_patient_with_consultation(clinic)
    others = consultation(clinic, hour=15)  # clinic.patient's
    assert_problem(decide(clinic, patient, "cleared", consultation_booking_id=others["id"],
                          reason="x"), 404, "consultation_not_found")
    assert_problem(decide(clinic, patient, "cleared",
                          consultation_booking_id="00000000-0000-4000-8000-000000000000",
                          reason="x"), 404, "consultation_not_found")
    session = clinic.book("iv-infusion", clinic.at(9)).get_json()  # clinic.patient's
    assert_problem(decide(clinic, clinic.patient, "cleared",
                          consultation_booking_id=session["id"], reason="x"),
                   409, "not_a_consultation")
    assert not cleared(clinic, patient)
    assert booking["patient_id"] == patient["id"]


def test_a_covering_provider_records_a_decision_but_reads_nothing_more(clinic, api):
    patient, booking = new_patient_with_consultation(clinic)
    screen(clinic, booking)
    completed(clinic, booking)
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    api.bind("other-doc", "provider", provider_id=other["id"])
    response = decide(clinic, patient, "cleared", role="other-doc",
                      consultation_booking_id=booking["id"])
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["decided_by_provider_id"] == other["id"]
    assert cleared(clinic, patient)
    # Reads stay behind the patients policy: no visit, no patient.
    for path in (f"/api/v1/patients/{patient['id']}",
                 f"/api/v1/patients/{patient['id']}/clearance-decisions",
                 f"/api/v1/bookings/{booking['id']}/screening"):
        assert api.get(path, role="other-doc").status_code == 404, path
    assert_problem(decide(clinic, {"id": "00000000-0000-4000-8000-000000000000"}, "cleared",
                          role="other-doc", reason="x"), 404, "patient_not_found")
