"""One safety standard for every modality: contraindications declared per service type, and
every in-clinic treatment completed only with readings before, during and after the dose."""

from __future__ import annotations

import pytest

from tests.api.test_consultations import (
    checked_in_session,
    consultation,
    monitored,
    screen,
)
from tests.api.test_directory import assert_problem
from tests.scenario import Clinic, build_clinic


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def declare(clinic: Clinic, service: str, contraindications: list[str]):
    path = f"/api/v1/service-types/{clinic.services[service]['id']}"
    version = clinic.api.get(path).headers["ETag"]
    return clinic.api.patch(path, json={"contraindications": contraindications},
                            headers={"If-Match": version})


def test_iv_ketamine_checks_the_contraindications_it_declares(clinic):
    assert declare(clinic, "iv-infusion", ["aneurysmal_vascular_disease", "pregnancy"]
                   ).get_json()["contraindications"] == ["aneurysmal_vascular_disease",
                                                         "pregnancy"]
    visit = consultation(clinic)
    assert screen(clinic, visit, aneurysmal_vascular_disease=True).status_code == 201
    refused = clinic.book("iv-infusion", clinic.at(9))
    body = assert_problem(refused, 409, "contraindicated")
    assert body["contraindications"] == ["aneurysmal_vascular_disease"]


def test_an_undeclared_answer_does_not_rule_the_visit_out(clinic):
    assert declare(clinic, "iv-infusion", ["pregnancy"]).status_code == 200
    visit = consultation(clinic)
    assert screen(clinic, visit, hypersensitivity=True).status_code == 201
    assert clinic.book("iv-infusion", clinic.at(9)).status_code == 201


def test_a_declared_contraindication_found_later_flags_the_booked_session(clinic, api):
    assert declare(clinic, "iv-infusion", ["aneurysmal_vascular_disease"]).status_code == 200
    booked = clinic.book("iv-infusion", clinic.at(9)).get_json()
    visit = consultation(clinic)
    assert screen(clinic, visit, aneurysmal_vascular_disease=True).status_code == 201
    assert api.get(f"/api/v1/bookings/{booked['id']}").get_json()["attention"] == (
        "contraindicated")


def test_only_screening_answers_can_be_declared(clinic):
    assert_problem(declare(clinic, "iv-infusion", ["headache"]), 422, "validation_failed")


def test_an_iv_session_completes_only_with_pre_during_and_discharge_readings(clinic, api):
    session = checked_in_session(clinic, "iv-infusion")
    complete = f"/api/v1/bookings/{session['id']}/complete"
    body = assert_problem(api.post(complete), 409, "session_vitals_incomplete")
    assert body["missing"] == ["pre", "during", "discharge"]
    monitored(clinic, session)
    assert api.post(complete).get_json()["status"] == "fulfilled"
