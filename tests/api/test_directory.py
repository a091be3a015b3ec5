"""The provider directory through HTTP: CRUD, ETags, pagination, roles, bad input."""

from __future__ import annotations

from datetime import timedelta

from tests.factories import (
    NPIS,
    clinic_payload,
    clinic_today,
    license_payload,
    patient_payload,
    provider_payload,
    service_type_payload,
    virtual_payload,
)

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"/problems/{code}"
    assert body["title"]
    return body


def test_create_get_list_provider(api):
    created = api.create("/api/v1/providers", provider_payload())
    assert created["credential"] == "MD" and created["active"] is True
    response = api.get(f"/api/v1/providers/{created['id']}")
    assert response.status_code == 200
    assert response.headers["ETag"] == '"v1"'
    listed = api.get("/api/v1/providers?credential=MD", role="patient" if False else "staff")
    assert [p["id"] for p in listed.get_json()] == [created["id"]]
    assert '"total": 1' in listed.headers["X-Pagination"]


def test_lists_link_their_first_prev_next_and_last_pages(api):
    """RFC 8288 ``Link`` beside ``X-Pagination``, every other query parameter kept."""
    for npi in NPIS[:5]:
        api.create("/api/v1/providers", provider_payload(npi=npi, name=f"Dr. {npi}"))
    middle = api.get("/api/v1/providers?credential=MD&page_size=2&page=2")
    assert middle.status_code == 200 and len(middle.get_json()) == 2
    assert middle.headers["Link"] == ", ".join((
        '</api/v1/providers?credential=MD&page_size=2&page=1>; rel="first"',
        '</api/v1/providers?credential=MD&page_size=2&page=1>; rel="prev"',
        '</api/v1/providers?credential=MD&page_size=2&page=3>; rel="next"',
        '</api/v1/providers?credential=MD&page_size=2&page=3>; rel="last"'))
    first = api.get("/api/v1/providers?page_size=5").headers["Link"]
    assert first == ('</api/v1/providers?page_size=5&page=1>; rel="first", '
                     '</api/v1/providers?page_size=5&page=1>; rel="last"')
    empty = api.get("/api/v1/providers?credential=NP").headers["Link"]
    assert 'rel="next"' not in empty and 'page=1>; rel="last"' in empty


def test_post_answers_location_and_etag(api):
    response = api.post("/api/v1/providers", json=provider_payload())
    assert response.status_code == 201
    assert response.headers["Location"].endswith(response.get_json()["id"])
    assert response.headers["ETag"] == '"v1"'


def test_patch_requires_if_match(api):
    created = api.create("/api/v1/providers", provider_payload())
    response = api.patch(f"/api/v1/providers/{created['id']}", json={"name": "Dr. New"})
    assert_problem(response, 428, "precondition_required")


def test_patch_with_stale_etag_is_412(api):
    created = api.create("/api/v1/providers", provider_payload())
    path = f"/api/v1/providers/{created['id']}"
    first = api.patch(path, json={"name": "Dr. One"}, headers={"If-Match": '"v1"'})
    assert first.status_code == 200 and first.headers["ETag"] == '"v2"'
    stale = api.patch(path, json={"name": "Dr. Two"}, headers={"If-Match": '"v1"'})
    assert_problem(stale, 412, "precondition_failed")
    assert api.get(path).get_json()["name"] == "Dr. One"


def test_unknown_field_is_422(api):
    response = api.post("/api/v1/providers", json={**provider_payload(), "favourite": "x"})
    body = assert_problem(response, 422, "validation_failed")
    assert any(e["field"] == "favourite" for e in body["errors"])


def test_invalid_timezone_is_422_invalid_timezone(api):
    response = api.post("/api/v1/providers", json=provider_payload(timezone="Mars/Olympus"))
    body = assert_problem(response, 422, "invalid_timezone")
    assert body["errors"][0]["field"] == "timezone"


def test_invalid_npi_is_422(api):
    response = api.post("/api/v1/providers", json=provider_payload(npi="1234567890"))
    assert_problem(response, 422, "invalid_npi")


def test_duplicate_npi_is_409(api):
    api.create("/api/v1/providers", provider_payload())
    response = api.post("/api/v1/providers", json=provider_payload(name="Other"))
    assert_problem(response, 409, "duplicate_npi")


def test_malformed_json_is_400(api):
    response = api.post("/api/v1/providers", data="{not json",
                        headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "malformed_json")


def test_missing_key_is_401(api):
    response = api.get("/api/v1/providers", role=None)
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_is_401(api, app):
    from service.domain.access import services as keys
    from service.extensions import unit_of_work

    token = api.tokens["staff"]
    with app.app_context():
        keys.revoke_key(unit_of_work(), public_id=token.split("_")[2])
    assert_problem(api.get("/api/v1/providers"), 401, "revoked_api_key")


def test_forged_key_is_401(api):
    token = api.tokens["staff"]
    api.tokens["forged"] = token[:-4] + "AAAA"
    assert_problem(api.get("/api/v1/providers", role="forged"), 401, "invalid_api_key")


def test_wrong_role_is_403(api):
    response = api.post("/api/v1/providers", json=provider_payload(), role="integration")
    assert_problem(response, 403, "forbidden")


def test_page_size_over_cap_is_422(api):
    response = api.get("/api/v1/providers?page_size=101")
    assert_problem(response, 422, "validation_failed")


def test_pagination_pages_through_all(api):
    for index, npi in enumerate(NPIS[:5]):
        api.create("/api/v1/providers", provider_payload(name=f"Dr. {index}", npi=npi))
    first = api.get("/api/v1/providers?page=1&page_size=2").get_json()
    third = api.get("/api/v1/providers?page=3&page_size=2").get_json()
    assert len(first) == 2 and len(third) == 1


def test_unknown_route_and_method_are_problems(api):
    assert_problem(api.get("/api/v1/nothing-here"), 404, "not_found")
    response = api.request("DELETE", "/api/v1/providers")
    assert_problem(response, 405, "method_not_allowed")


def test_unknown_provider_is_404(api):
    response = api.get("/api/v1/providers/00000000-0000-0000-0000-000000000000")
    assert_problem(response, 404, "provider_not_found")


def test_deactivate_provider(api):
    created = api.create("/api/v1/providers", provider_payload())
    response = api.post(f"/api/v1/providers/{created['id']}/deactivate")
    assert response.status_code == 200 and response.get_json()["active"] is False
    active = api.get("/api/v1/providers?active=true").get_json()
    assert active == []


def test_rems_prescriber_must_prescribe(api):
    response = api.post("/api/v1/providers",
                        json=provider_payload(is_prescriber=False, is_rems_prescriber=True))
    assert_problem(response, 422, "rems_requires_prescriber")


# Licenses --------------------------------------------------------------------------------


def test_license_lifecycle(api):
    provider = api.create("/api/v1/providers", provider_payload())
    base = f"/api/v1/providers/{provider['id']}/licenses"
    record = api.create(base, license_payload())
    assert record["status"] == "active" and record["provider_id"] == provider["id"]
    path = f"{base}/{record['id']}"
    response = api.patch(path, json={"status": "suspended"}, headers={"If-Match": '"v1"'})
    assert response.status_code == 200 and response.get_json()["status"] == "suspended"
    assert [r["id"] for r in api.get(base).get_json()] == [record["id"]]


def test_license_expiring_before_issue_is_422(api):
    provider = api.create("/api/v1/providers", provider_payload())
    response = api.post(f"/api/v1/providers/{provider['id']}/licenses",
                        json=license_payload(issued_on="2026-05-01", expires_on="2026-04-01"))
    assert_problem(response, 422, "invalid_date_range")


def test_license_patch_cannot_reverse_dates(api):
    provider = api.create("/api/v1/providers", provider_payload())
    base = f"/api/v1/providers/{provider['id']}/licenses"
    record = api.create(base, license_payload())
    response = api.patch(f"{base}/{record['id']}", json={"expires_on": "2000-01-01"},
                         headers={"If-Match": '"v1"'})
    assert_problem(response, 422, "invalid_date_range")


def test_duplicate_license_number_same_board_is_409(api):
    first = api.create("/api/v1/providers", provider_payload())
    second = api.create("/api/v1/providers", provider_payload(npi=NPIS[1], name="Other"))
    api.create(f"/api/v1/providers/{first['id']}/licenses", license_payload())
    response = api.post(f"/api/v1/providers/{second['id']}/licenses", json=license_payload())
    assert_problem(response, 409, "duplicate_license")
    other_board = api.post(f"/api/v1/providers/{second['id']}/licenses",
                           json=license_payload(board="Arizona Board of Osteopathic Examiners"))
    assert other_board.status_code == 201


def test_license_of_other_provider_is_404(api):
    first = api.create("/api/v1/providers", provider_payload())
    second = api.create("/api/v1/providers", provider_payload(npi=NPIS[1], name="Other"))
    record = api.create(f"/api/v1/providers/{first['id']}/licenses", license_payload())
    response = api.get(f"/api/v1/providers/{second['id']}/licenses/{record['id']}")
    assert_problem(response, 404, "license_not_found")


def test_licenses_expiring_within_60_days(api):
    provider = api.create("/api/v1/providers", provider_payload())
    base = f"/api/v1/providers/{provider['id']}/licenses"
    today = clinic_today()
    soon = api.create(base, license_payload(number="SOON",
                                            expires_on=(today + timedelta(days=30)).isoformat()))
    api.create(base, license_payload(number="LATER",
                                     expires_on=(today + timedelta(days=200)).isoformat()))
    api.create(base, license_payload(number="PAST", issued_on="2020-01-01",
                                     expires_on=(today - timedelta(days=1)).isoformat()))
    listed = api.get("/api/v1/licenses/expiring?within_days=60").get_json()
    assert [r["id"] for r in listed] == [soon["id"]]
    assert_problem(api.get("/api/v1/licenses/expiring?within_days=9999"), 422,
                   "validation_failed")


# Locations and service types -------------------------------------------------------------


def test_locations(api):
    clinic = api.create("/api/v1/locations", clinic_payload())
    virtual = api.create("/api/v1/locations", virtual_payload())
    assert clinic["chairs"] == 2 and virtual["chairs"] == 0
    listed = api.get("/api/v1/locations?kind=virtual").get_json()
    assert [loc["id"] for loc in listed] == [virtual["id"]]


def test_clinic_needs_address(api):
    response = api.post("/api/v1/locations", json=clinic_payload(address_line1=None))
    assert_problem(response, 422, "address_required")


def test_location_invalid_timezone(api):
    response = api.post("/api/v1/locations", json=clinic_payload(timezone="Arizona/Phoenix"))
    assert_problem(response, 422, "invalid_timezone")


def test_service_types(api):
    created = api.create("/api/v1/service-types", service_type_payload())
    assert created["reminder_plan"]["hours_before"] == [72, 24, 2]
    duplicate = api.post("/api/v1/service-types", json=service_type_payload())
    assert_problem(duplicate, 409, "duplicate_code")
    esketamine = service_type_payload(code="esketamine", modality="in-person",
                                      duration_minutes=15, recovery_minutes=60,
                                      needs_chair=True, requires_rems=True)
    assert_problem(api.post("/api/v1/service-types", json=esketamine), 422,
                   "rems_monitoring_too_short")
    esketamine["recovery_minutes"] = 120
    assert api.post("/api/v1/service-types", json=esketamine).status_code == 201


def test_service_type_patch(api):
    created = api.create("/api/v1/service-types", service_type_payload())
    path = f"/api/v1/service-types/{created['id']}"
    response = api.patch(path, json={"duration_minutes": 45}, headers={"If-Match": '"v1"'})
    assert response.status_code == 200 and response.get_json()["duration_minutes"] == 45
    chair = api.patch(path, json={"needs_chair": True}, headers={"If-Match": '"v2"'})
    assert_problem(chair, 422, "telehealth_chair")


# Patients ---------------------------------------------------------------------------------


def test_patient_sees_only_themselves(api):
    me = api.create("/api/v1/patients", patient_payload())
    other = api.create("/api/v1/patients", patient_payload(first_name="Other"))
    api.bind("me", "patient", patient_id=me["id"])
    assert api.get(f"/api/v1/patients/{me['id']}", role="me").status_code == 200
    assert_problem(api.get(f"/api/v1/patients/{other['id']}", role="me"), 404,
                   "patient_not_found")
    assert [p["id"] for p in api.get("/api/v1/patients", role="me").get_json()] == [me["id"]]


def test_patient_updates_own_contact_but_not_clearance(api):
    me = api.create("/api/v1/patients", patient_payload())
    api.bind("me", "patient", patient_id=me["id"])
    path = f"/api/v1/patients/{me['id']}"
    ok = api.patch(path, json={"phone": "+16025550100"}, headers={"If-Match": '"v1"'},
                   role="me")
    assert ok.status_code == 200
    refused = api.patch(path, json={"rems_enrolled": True},
                        headers={"If-Match": '"v2"'}, role="me")
    assert_problem(refused, 403, "field_not_editable")
    # Clearance is a provider's decision (/patients/{id}/clearance-decisions): the read-out
    # cannot be written by anyone, staff included.
    for role in ("me", "staff"):
        flag = api.patch(path, json={"cleared_for_treatment": True},
                         headers={"If-Match": '"v2"'}, role=role)
        assert_problem(flag, 422, "read_only_field")


def test_provider_without_visits_sees_no_patient(api):
    provider = api.create("/api/v1/providers", provider_payload())
    patient = api.create("/api/v1/patients", patient_payload())
    api.bind("doc", "provider", provider_id=provider["id"])
    assert_problem(api.get(f"/api/v1/patients/{patient['id']}", role="doc"), 404,
                   "patient_not_found")


def test_a_birth_date_in_the_future_or_before_1900_has_its_own_code(api):
    """A rule, not a malformed date: it has a code (it was a generic field error, which the
    fuzz test reads as the document not stating what the parser wants)."""
    tomorrow = (clinic_today() + timedelta(days=1)).isoformat()
    # Before 1900 is outside every date the service reads (out_of_range, shared by all).
    for birth_date, code in ((tomorrow, "invalid_birth_date"), ("1899-12-31", "out_of_range")):
        response = api.post("/api/v1/patients", json=patient_payload(birth_date=birth_date))
        problem = assert_problem(response, 422, code)
        assert problem["errors"][0]["field"] == "birth_date"


def test_patient_cannot_register_patients(api):
    me = api.create("/api/v1/patients", patient_payload())
    api.bind("me", "patient", patient_id=me["id"])
    response = api.post("/api/v1/patients", json=patient_payload(), role="me")
    assert_problem(response, 403, "forbidden")


def test_patient_phone_must_be_e164(api):
    response = api.post("/api/v1/patients", json=patient_payload(phone="602-555-0199"))
    assert_problem(response, 422, "invalid_phone")


def test_sms_opt_out_is_recorded(api):
    me = api.create("/api/v1/patients", patient_payload(sms_consent=True))
    response = api.patch(f"/api/v1/patients/{me['id']}", json={"sms_consent": False},
                         headers={"If-Match": '"v1"'})
    assert response.get_json()["sms_opted_out_at"] is not None
