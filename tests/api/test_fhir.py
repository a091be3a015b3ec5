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
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.schedule import Schedule
from fhir.resources.R4B.slot import Slot

from service.resources.fhir.schemas import (
    AppointmentSearchSchema,
    LocationSearchSchema,
    PatientSearchSchema,
    PractitionerSearchSchema,
    ScheduleSearchSchema,
    SlotSearchSchema,
)
from tests.factories import NPIS
from tests.scenario import build_clinic

FHIR_JSON = "application/fhir+json"
STRICT = {"Prefer": "handling=strict"}
MODELS = {"Appointment": Appointment, "Practitioner": Practitioner, "Schedule": Schedule,
          "Slot": Slot, "Bundle": Bundle, "OperationOutcome": OperationOutcome,
          "Patient": Patient, "Location": Location,
          "CapabilityStatement": CapabilityStatement}
R4_APPOINTMENT_STATUSES = {"proposed", "pending", "booked", "arrived", "fulfilled",
                           "cancelled", "noshow", "entered-in-error", "checked-in",
                           "waitlist"}
SEARCH_SCHEMAS = {"Appointment": AppointmentSearchSchema, "Patient": PatientSearchSchema,
                  "Practitioner": PractitionerSearchSchema, "Location": LocationSearchSchema,
                  "Schedule": ScheduleSearchSchema, "Slot": SlotSearchSchema}
RESULT_PARAMETERS = {"_count", "_page", "_format", "_summary", "_sort"}
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


def fhir_get(api, path: str, role: str | None = "staff", expect: int = 200,
             headers: dict[str, str] | None = None, **params):
    response = api.get(f"/fhir/R4/{path}", query_string=params, role=role, headers=headers)
    assert response.status_code == expect, response.get_data(as_text=True)
    assert response.mimetype == FHIR_JSON
    body = response.get_json()
    validate(body)
    return body


def resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The matches of a searchset (an OperationOutcome entry about ignored parameters
    aside)."""
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return [entry["resource"] for entry in bundle["entry"]
            if entry["search"]["mode"] == "match"]


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

    unknown = fhir_get(api, "Appointment", expect=422, patinet="Patient/x", headers=STRICT)
    assert unknown["issue"][0]["expression"] == ["patinet"]
    for params in ({"date": "yesterday"}, {"date": "sa2026-01-01"}, {"status": "done"},
                   {"patient": "Practitioner/1"}, {"patient": "not-an-id"}):
        outcome = fhir_get(api, "Appointment", expect=400, **params)
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == (
            "invalid_search_parameter")
    assert fhir_get(api, "Encounter", expect=404)["issue"][0]["code"] == "not-found"
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


# Conformance: the CapabilityStatement, lenient and strict searches, _count, _summary, _sort


def test_the_capability_statement_needs_no_key_and_lists_what_is_served(app, api):
    response = api.get("/fhir/R4/metadata", role=None)
    assert response.status_code == 200 and response.mimetype == FHIR_JSON
    assert response.headers["Cache-Control"].startswith("public")
    statement = response.get_json()
    validate(statement)
    assert statement["fhirVersion"] == "4.0.1" and statement["kind"] == "instance"
    assert "json" in statement["format"]
    [rest] = statement["rest"]
    assert rest["mode"] == "server"
    assert rest["security"]["service"][0]["text"] == "Bearer"
    served = {r["type"]: r for r in rest["resource"]}
    assert set(served) == {"Appointment", "Patient", "Practitioner", "Location", "Schedule",
                           "Slot"}
    for name, resource in served.items():
        codes = {i["code"] for i in resource["interaction"]}
        assert codes == ({"search-type"} if name == "Slot" else {"read", "search-type"})
        # Each resource route exists; every advertised parameter is one its search parses.
        adapter = app.url_map.bind("localhost")
        assert adapter.match(f"/fhir/R4/{name}", method="GET")[0] == f"fhir.{name}s"
        schema = SEARCH_SCHEMAS[name]
        parsed = {f.data_key or n for n, f in schema().fields.items()} - RESULT_PARAMETERS
        assert {p["name"] for p in resource["searchParam"]} == parsed, name
        assert all(p["definition"].startswith("http://hl7.org/fhir/SearchParameter/")
                   for p in resource["searchParam"])
    # A wrong key does not keep a client from reading it either.
    assert api.get("/fhir/R4/metadata", role=None, headers={
        "Authorization": "Bearer ck_staff_nobody_secret"}).status_code == 200


def test_unknown_and_unsupported_parameters_are_ignored_unless_strict(clinic, api):
    mine = clinic.book("consultation", clinic.at(14)).get_json()
    other = clinic.add_patient(first_name="Other")
    clinic.book("consultation", clinic.at(15), patient=other)

    lenient = fhir_get(api, "Appointment", patinet=f"Patient/{other['id']}",
                       status="booked", _sort="status", _summary="true")
    assert lenient["total"] == 2  # the misspelled filter was not applied ...
    self_url = lenient["link"][0]["url"]
    assert self_url == "http://localhost/fhir/R4/Appointment?status=booked"  # ... nor shown
    [outcome] = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome["resource"]["resourceType"] == "OperationOutcome"
    assert [i["expression"] for i in outcome["resource"]["issue"]] == [
        ["patinet"], ["_summary"], ["_sort"]]
    assert {i["severity"] for i in outcome["resource"]["issue"]} == {"warning"}
    # A clean search has no such entry, and its self link shows what it applied.
    clean = fhir_get(api, "Appointment", patient=f"Patient/{clinic.patient['id']}")
    assert [e["search"]["mode"] for e in clean["entry"]] == ["match"]
    assert clean["link"][0]["url"].endswith(f"?patient=Patient%2F{clinic.patient['id']}")
    assert [r["id"] for r in resources(clean)] == [mine["id"]]

    # Prefer: handling=strict refuses them (with other preferences beside it too).
    refused = fhir_get(api, "Appointment", expect=422, patinet="x",
                       headers={"Prefer": "return=minimal, handling=strict"})
    assert refused["issue"][0]["expression"] == ["patinet"]
    for params in ({"_sort": "status"}, {"_summary": "true"}):
        refused = fhir_get(api, "Appointment", expect=400, headers=STRICT, **params)
        coding = refused["issue"][0]["details"]["coding"][0]
        assert coding["code"] == "invalid_search_parameter"
    assert fhir_get(api, "Slot", expect=400, headers=STRICT, _summary="count")
    # An invalid value of a supported parameter is refused in both modes.
    fhir_get(api, "Appointment", expect=400, date="banana")
    fhir_get(api, "Practitioner", expect=422, active="maybe")
    # Every search answers this way, Slot included.
    ignored = fhir_get(api, "Practitioner", specialty="psychiatry")
    assert ignored["total"] == 1 and ignored["entry"][-1]["search"]["mode"] == "outcome"
    day = clinic.day.isoformat()
    slots = fhir_get(api, "Slot", start=f"ge{day}", _sort="-start", _count=2)
    assert len(resources(slots)) == 2
    assert slots["entry"][-1]["resource"]["issue"][0]["expression"] == ["_sort"]


def test_count_above_the_maximum_is_served_as_the_maximum(clinic, api):
    for hour in (13, 14, 15):
        clinic.book("consultation", clinic.at(hour))
    bundle = fhir_get(api, "Appointment", _count=5000)
    assert len(resources(bundle)) == 3
    assert bundle["link"][0]["url"].endswith("?_count=100")
    strict = fhir_get(api, "Appointment", _count=101, headers=STRICT)
    assert len(resources(strict)) == 3
    paged = fhir_get(api, "Appointment", _count=2, _sort="-date")
    next_url = next(link["url"] for link in paged["link"] if link["relation"] == "next")
    assert "_count=2" in next_url and "_sort=-date" in next_url and "_page=2" in next_url
    fhir_get(api, "Appointment", expect=422, _count=-1)
    fhir_get(api, "Slot", expect=422, _count="many")


def test_summary_count_answers_the_total_without_entries(clinic, api):
    for hour in (13, 14):
        clinic.book("consultation", clinic.at(hour))
    for params in ({"_summary": "count"}, {"_count": 0}):
        bundle = fhir_get(api, "Appointment", **params)
        assert bundle["total"] == 2 and "entry" not in bundle
    assert fhir_get(api, "Practitioner", _summary="count")["total"] == 1
    assert fhir_get(api, "Location", _summary="count")["total"] == 2
    assert fhir_get(api, "Patient", _summary="count", name="zzz")["total"] == 0
    assert len(resources(fhir_get(api, "Appointment", _summary="false"))) == 2


def test_appointments_sort_on_date_either_way(clinic, api):
    made = [clinic.book("consultation", clinic.at(hour)).get_json()["id"]
            for hour in (15, 13, 14)]
    by_hour = [made[1], made[2], made[0]]

    def ids(**params) -> list[str]:
        return [r["id"] for r in resources(fhir_get(api, "Appointment", **params))]

    assert ids() == by_hour == ids(_sort="date")
    assert ids(_sort="-date") == by_hour[::-1]
    assert ids(_sort="-date", _count=1, _page=2) == [by_hour[1]]


# Patient and Location: every reference an Appointment makes resolves here


def test_every_reference_of_an_appointment_resolves(clinic, api):
    video = clinic.book("consultation", clinic.at(14)).get_json()
    chair = clinic.book("iv-infusion", clinic.at(9)).get_json()
    for booking in (video, chair):
        appointment = fhir_get(api, f"Appointment/{booking['id']}")
        for participant in appointment["participant"]:
            reference = participant["actor"]["reference"]
            kind, _, record_id = reference.partition("/")
            assert kind in {"Patient", "Practitioner", "Location"} and "//" not in reference
            target = fhir_get(api, reference)
            assert (target["resourceType"], target["id"]) == (kind, record_id)
    patient = fhir_get(api, f"Patient/{clinic.patient['id']}")
    assert patient["name"] == [{"family": clinic.patient["last_name"],
                                "given": [clinic.patient["first_name"]]}]
    assert patient["birthDate"] == clinic.patient["birth_date"]
    assert {"system": "email", "value": clinic.patient["email"]} in patient["telecom"]
    assert patient["identifier"] == [{"system": "urn:ietf:rfc:3986",
                                      "value": f"urn:uuid:{clinic.patient['id']}"}]
    site = fhir_get(api, f"Location/{clinic.clinic['id']}")
    assert site["name"] == clinic.clinic["name"] and site["status"] == "active"
    assert site["address"]["city"] == "Phoenix" and site["address"]["state"] == "AZ"
    assert site["extension"] == [{"url": "http://hl7.org/fhir/StructureDefinition/tz-code",
                                  "valueCode": "America/Phoenix"}]
    virtual = fhir_get(api, f"Location/{clinic.virtual['id']}")
    assert "address" not in virtual
    # A Slot's location and a Schedule's actor resolve too.
    day = clinic.day.isoformat()
    [slot] = resources(fhir_get(api, "Slot", start=f"ge{day}", _count=1))
    fhir_get(api, slot["extension"][0]["valueReference"]["reference"])
    schedule = fhir_get(api, slot["schedule"]["reference"])
    fhir_get(api, schedule["actor"][0]["reference"])
    fhir_get(api, f"Location/{clinic.patient['id']}", expect=404)


def test_patients_and_locations_are_searchable(clinic, api):
    other = clinic.add_patient(first_name="Robin", last_name="Quill")

    def ids(path: str, role: str = "staff", **params) -> list[str]:
        return [r["id"] for r in resources(fhir_get(api, path, role=role, **params))]

    urn = f"urn:uuid:{other['id']}"
    assert ids("Patient", identifier=f"urn:ietf:rfc:3986|{urn}") == [other["id"]]
    assert ids("Patient", identifier=urn) == [other["id"]]
    assert ids("Patient", identifier=f"http://hospital.example/mrn|{urn}") == []
    assert ids("Patient", identifier="12345") == []
    assert ids("Patient", name="quil") == [other["id"]]
    assert ids("Patient", _id=f"{clinic.patient['id']},{other['id']}") == sorted(
        [clinic.patient["id"], other["id"]],
        key=lambda i: "Quill" if i == other["id"] else clinic.patient["last_name"])
    assert ids("Location", name="tele") == [clinic.virtual["id"]]
    assert ids("Location", identifier=f"urn:uuid:{clinic.clinic['id']}") == [
        clinic.clinic["id"]]
    fhir_get(api, "Patient", expect=400, _id="not-an-id")


def test_patients_follow_the_apis_access_rules(clinic, api):
    other = clinic.add_patient(first_name="Robin", last_name="Quill")
    other_doctor = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    clinic.book("consultation", clinic.at(14), patient=other, provider=other_doctor)
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    api.bind("doc", "provider", provider_id=other_doctor["id"])

    def ids(role: str, **params) -> list[str]:
        return [r["id"] for r in resources(fhir_get(api, "Patient", role=role, **params))]

    assert ids("me") == [clinic.patient["id"]]
    assert ids("me", _id=other["id"]) == [] and ids("me", name="Quill") == []
    assert ids("doc") == [other["id"]]
    assert set(ids("integration")) == {clinic.patient["id"], other["id"]}
    outcome = fhir_get(api, f"Patient/{other['id']}", role="me", expect=404)
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "patient_not_found"
    fhir_get(api, f"Patient/{clinic.patient['id']}", role="doc", expect=404)
    assert fhir_get(api, f"Patient/{other['id']}", role="doc")["id"] == other["id"]
    fhir_get(api, f"Patient/{other['id']}", role=None, expect=401)


def test_reads_answer_304_to_a_matching_if_none_match(clinic, api):
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    for path in (f"Appointment/{booking['id']}", f"Patient/{clinic.patient['id']}",
                 f"Location/{clinic.clinic['id']}", f"Practitioner/{clinic.doctor['id']}"):
        first = api.get(f"/fhir/R4/{path}")
        etag = first.headers["ETag"]
        assert etag == f'W/"{first.get_json()["meta"]["versionId"]}"'
        again = api.get(f"/fhir/R4/{path}", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.data == b"", path
        assert again.headers["ETag"] == etag
        assert api.get(f"/fhir/R4/{path}",
                       headers={"If-None-Match": 'W/"999"'}).status_code == 200
    api.post(f"/api/v1/bookings/{booking['id']}/cancel", json={"reason": "Ill"})
    changed = api.get(f"/fhir/R4/Appointment/{booking['id']}", headers={
        "If-None-Match": 'W/"1"'})
    assert changed.status_code == 200 and changed.get_json()["status"] == "cancelled"
