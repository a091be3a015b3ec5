"""The FHIR R4 read facade through HTTP, every resource validated with fhir.resources.

fhir.resources 8 ships R5 (default), R4B and STU3 models, no plain R4; R4B (4.3.0) is R4's
technical correction and leaves Appointment, Slot, Schedule, Practitioner, Bundle and
OperationOutcome as R4 defines them, so the R4B models validate here. They check structure
and types (unknown elements are refused), not value sets: the status codes are checked
against R4's lists below.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.schedule import Schedule
from fhir.resources.R4B.slot import Slot

from tests.factories import NPIS
from tests.scenario import build_clinic

FHIR_JSON = "application/fhir+json"
MODELS = {"Appointment": Appointment, "Practitioner": Practitioner, "Schedule": Schedule,
          "Slot": Slot, "Bundle": Bundle, "OperationOutcome": OperationOutcome}
R4_APPOINTMENT_STATUSES = {"proposed", "pending", "booked", "arrived", "fulfilled",
                           "cancelled", "noshow", "entered-in-error", "checked-in",
                           "waitlist"}
R4_SLOT_STATUSES = {"busy", "free", "busy-unavailable", "busy-tentative", "entered-in-error"}


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def validate(resource: dict[str, Any]) -> None:
    MODELS[resource["resourceType"]].model_validate(resource)
    if resource["resourceType"] == "Appointment":
        assert resource["status"] in R4_APPOINTMENT_STATUSES
        assert all(p["status"] in {"accepted", "declined", "tentative", "needs-action"}
                   for p in resource["participant"])
    if resource["resourceType"] == "Slot":
        assert resource["status"] in R4_SLOT_STATUSES
    for entry in resource.get("entry", []):
        validate(entry["resource"])


def fhir_get(api, path: str, role: str = "staff", expect: int = 200, **params):
    response = api.get(f"/fhir/R4/{path}", query_string=params, role=role)
    assert response.status_code == expect, response.get_data(as_text=True)
    assert response.mimetype == FHIR_JSON
    body = response.get_json()
    validate(body)
    return body


def resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return [entry["resource"] for entry in bundle["entry"]]


def test_appointments_search_and_read(clinic, api):
    video = clinic.book("consultation", clinic.at(14)).get_json()
    chair = clinic.book("iv-infusion", clinic.at(9)).get_json()
    held = clinic.book("consultation", clinic.at(16), hold=True).get_json()
    api.post(f"/api/v1/bookings/{held['id']}/cancel", json={"reason": "Schedule conflict"})

    bundle = fhir_get(api, "Appointment")
    assert bundle["total"] == 3
    found = {r["id"]: r for r in resources(bundle)}
    assert set(found) == {video["id"], chair["id"], held["id"]}
    assert bundle["entry"][0]["fullUrl"].endswith(f"/fhir/R4/Appointment/{chair['id']}")
    visit = found[video["id"]]
    assert visit["status"] == "booked" and visit["minutesDuration"] == 60
    assert visit["start"] == datetime.fromisoformat(video["start"]).astimezone(
        UTC).isoformat().replace("+00:00", "Z")
    actors = [p["actor"]["reference"] for p in visit["participant"]]
    assert actors == [f"Patient/{clinic.patient['id']}",
                      f"Practitioner/{clinic.doctor['id']}",
                      f"Location/{clinic.virtual['id']}"]
    assert visit["serviceType"][0]["coding"][0]["code"] == "consultation"
    assert found[held["id"]]["status"] == "cancelled"
    assert found[held["id"]]["cancelationReason"] == {"text": "Schedule conflict"}
    text = str(bundle)
    assert clinic.patient["first_name"] not in text and clinic.patient["email"] not in text

    read = fhir_get(api, f"Appointment/{video['id']}")
    assert read == visit

    def ids(**params) -> set[str]:
        return {r["id"] for r in resources(fhir_get(api, "Appointment", **params))}

    assert ids(status="booked") == {video["id"], chair["id"]}
    assert ids(status="cancelled,noshow") == {held["id"]}
    assert ids(status="arrived") == set()
    assert ids(patient=f"Patient/{clinic.patient['id']}") == set(found)
    assert ids(practitioner=clinic.doctor["id"]) == set(found)
    day = clinic.day.isoformat()
    assert ids(date=day) == set(found)
    assert ids(date=[f"ge{day}T13:00:00-07:00", f"lt{day}T15:00:00-07:00"]) == {video["id"]}
    assert ids(date=f"gt{day}") == set()
    assert ids(date=f"lt{day}") == set()
    assert ids(date=f"le{clinic.day.isoformat()[:7]}") == set(found)
    assert ids(_id=video["id"]) == {video["id"]}


def test_paging_links(clinic, api):
    for hour in (13, 14, 15, 16):
        clinic.book("consultation", clinic.at(hour))
    first = fhir_get(api, "Appointment", _count=3)
    assert first["total"] == 4 and len(first["entry"]) == 3
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert "_page=2" in next_url and "_count=3" in next_url
    second = api.get(next_url.replace("http://localhost", ""), role="staff").get_json()
    validate(second)
    assert len(second["entry"]) == 1
    assert [link["relation"] for link in second["link"]] == ["self"]


def test_the_same_access_rules_apply(clinic, api):
    mine = clinic.book("consultation", clinic.at(14)).get_json()
    other_patient = clinic.add_patient(first_name="Other")
    other_doctor = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    theirs = clinic.book("consultation", clinic.at(15), patient=other_patient,
                         provider=other_doctor).get_json()
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    api.bind("doc", "provider", provider_id=other_doctor["id"])
    assert [r["id"] for r in resources(fhir_get(api, "Appointment", role="me"))] == [
        mine["id"]]
    assert [r["id"] for r in resources(fhir_get(
        api, "Appointment", role="me", patient=other_patient["id"]))] == []
    assert [r["id"] for r in resources(fhir_get(api, "Appointment", role="doc"))] == [
        theirs["id"]]
    outcome = fhir_get(api, f"Appointment/{theirs['id']}", role="me", expect=404)
    issue = outcome["issue"][0]
    assert issue["code"] == "not-found"
    assert issue["details"]["coding"][0]["code"] == "booking_not_found"
    assert issue["details"]["coding"][0]["system"].endswith("/problems")
    assert fhir_get(api, "Appointment", role="integration")["total"] == 2


def test_errors_are_operation_outcomes(clinic, api):
    response = api.get("/fhir/R4/Appointment", role=None)
    assert response.status_code == 401 and response.mimetype == FHIR_JSON
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    outcome = response.get_json()
    validate(outcome)
    assert outcome["issue"][0]["code"] == "login"
    bad_key = api.get("/fhir/R4/Practitioner", role=None,
                      headers={"Authorization": "Bearer ck_staff_nobody_secret"})
    assert bad_key.status_code == 401
    assert bad_key.get_json()["issue"][0]["details"]["coding"][0]["code"] == "invalid_api_key"

    unknown = fhir_get(api, "Appointment", expect=422, patinet="Patient/x")
    assert unknown["issue"][0]["expression"] == ["patinet"]
    for params in ({"date": "yesterday"}, {"date": "sa2026-01-01"}, {"status": "done"},
                   {"patient": "Practitioner/1"}, {"patient": "not-an-id"}):
        outcome = fhir_get(api, "Appointment", expect=400, **params)
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == (
            "invalid_search_parameter")
    assert fhir_get(api, "Patient", expect=404)["issue"][0]["code"] == "not-found"
    assert fhir_get(api, "Appointment/not-a-uuid", expect=404)["resourceType"] == (
        "OperationOutcome")
    assert fhir_get(api, "Slot", expect=422, status="busy") is not None
    assert fhir_get(api, "Appointment", expect=422, _format="xml")["issue"]
    post = api.post("/fhir/R4/Appointment", json={"resourceType": "Appointment"})
    assert post.status_code == 405 and post.mimetype == FHIR_JSON
    assert post.headers["Allow"] == "GET"
    validate(post.get_json())


def test_options_lists_only_the_resources_methods(clinic, api):
    """Not the catch-all's POST/PUT/PATCH/DELETE, which only answer OperationOutcomes."""
    for path in ("/fhir/R4/Appointment", f"/fhir/R4/Practitioner/{clinic.doctor['id']}"):
        response = api.request("OPTIONS", path)
        assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_practitioners_and_schedules(clinic, api):
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1], credential="DO")
    bundle = fhir_get(api, "Practitioner")
    assert bundle["total"] == 2
    doctor = next(r for r in resources(bundle) if r["id"] == clinic.doctor["id"])
    assert doctor["identifier"] == [{"system": "http://hl7.org/fhir/sid/us-npi",
                                     "value": clinic.doctor["npi"]}]
    assert doctor["name"] == [{"text": "Dr. Ada Stone"}]
    assert doctor["qualification"][0]["code"]["coding"][0]["code"] == "MD"
    assert doctor["qualification"][1]["issuer"]["display"] == "Arizona Medical Board"
    assert fhir_get(api, f"Practitioner/{other['id']}")["id"] == other["id"]
    by_npi = fhir_get(api, "Practitioner",
                      identifier=f"http://hl7.org/fhir/sid/us-npi|{NPIS[1]}")
    assert [r["id"] for r in resources(by_npi)] == [other["id"]]
    assert [r["id"] for r in resources(fhir_get(api, "Practitioner", name="cole"))] == [
        other["id"]]
    assert fhir_get(api, "Practitioner", identifier="urn:other|1")["total"] == 0

    schedules = fhir_get(api, "Schedule", role="integration")
    assert {r["id"] for r in resources(schedules)} == {clinic.doctor["id"], other["id"]}
    mine = fhir_get(api, "Schedule", actor=f"Practitioner/{clinic.doctor['id']}")
    [schedule] = resources(mine)
    assert schedule["actor"][0]["reference"] == f"Practitioner/{clinic.doctor['id']}"
    assert fhir_get(api, f"Schedule/{other['id']}")["active"] is True
    fhir_get(api, f"Schedule/{clinic.patient['id']}", expect=404)


def test_free_slots_come_from_the_slot_search(clinic, api):
    clinic.book("consultation", clinic.at(14))
    day = clinic.day.isoformat()
    window = [f"ge{day}T13:00:00-07:00", f"lt{day}T17:00:00-07:00"]
    bundle = fhir_get(api, "Slot", schedule=f"Schedule/{clinic.doctor['id']}",
                      **{"service-type": "consultation"}, start=window, status="free")
    slots = resources(bundle)
    starts = [datetime.fromisoformat(s["start"].replace("Z", "+00:00")) for s in slots]
    api_slots = clinic.slots("consultation", provider_id=clinic.doctor["id"])
    assert starts == [datetime.fromisoformat(s["start"]) for s in api_slots]
    assert clinic.at(14) not in starts and clinic.at(13) in starts
    first = slots[0]
    assert first["status"] == "free"
    assert first["schedule"]["reference"] == f"Schedule/{clinic.doctor['id']}"
    assert first["extension"][0]["valueReference"]["reference"] == (
        f"Location/{clinic.virtual['id']}")
    again = fhir_get(api, "Slot", schedule=f"Schedule/{clinic.doctor['id']}",
                     **{"service-type": "consultation"}, start=window)
    assert [s["id"] for s in resources(again)] == [s["id"] for s in slots]  # stable ids
    every = fhir_get(api, "Slot", start=[f"ge{day}", f"lt{(clinic.day + timedelta(days=1))}"],
                     _count=100)
    codes = {s["serviceType"][0]["coding"][0]["code"] for s in resources(every)}
    assert codes == {"consultation", "iv-infusion", "esketamine"}
    assert len(resources(fhir_get(api, "Slot", _count=5, start=f"ge{day}"))) == 5
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    mine = fhir_get(api, "Slot", role="me", start=window, **{"service-type": "consultation"})
    assert clinic.at(14) not in [datetime.fromisoformat(s["start"].replace("Z", "+00:00"))
                                 for s in resources(mine)]
