"""HTTP caching and browsers: 304 to If-None-Match on single-resource reads, no-store on
every answer of the API and the FHIR facade, CORS for the allow-listed origins."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from flask import Flask

from service.app import create_app
from service.config import Settings
from tests.api.test_audit import last_row_id, rows_after
from tests.api.test_series import book_series
from tests.api.test_webhooks import subscribe
from tests.scenario import Clinic, build_clinic

PORTAL = "https://portal.example.com"
EXPOSED = {"ETag", "Location", "Link", "X-Pagination", "Retry-After", "Idempotent-Replayed"}


@pytest.fixture
def clinic(api) -> Clinic:
    return build_clinic(api)


# If-None-Match ---------------------------------------------------------------------------


def test_single_resource_reads_answer_304_to_their_etag(clinic, api):
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    screening = api.post(f"/api/v1/bookings/{booking['id']}/screening",
                         json={"hypersensitivity": False})
    assert screening.status_code == 201, screening.get_json()
    licenses = api.get(f"/api/v1/providers/{clinic.doctor['id']}/licenses").get_json()
    hook = subscribe(api).get_json()
    paths = [f"/api/v1/providers/{clinic.doctor['id']}",
             f"/api/v1/providers/{clinic.doctor['id']}/licenses/{licenses[0]['id']}",
             f"/api/v1/locations/{clinic.clinic['id']}",
             f"/api/v1/service-types/{clinic.services['consultation']['id']}",
             f"/api/v1/patients/{clinic.patient['id']}",
             f"/api/v1/bookings/{booking['id']}",
             f"/api/v1/bookings/{booking['id']}/screening",
             f"/api/v1/webhooks/{hook['id']}"]
    for path in paths:
        first = api.get(path, role="admin")
        etag = first.headers["ETag"]
        for sent in (etag, f"W/{etag}", f'"v999", {etag}', "*"):
            again = api.get(path, role="admin", headers={"If-None-Match": sent})
            assert again.status_code == 304, (path, sent)
            assert again.data == b"" and again.headers["ETag"] == etag
            assert again.headers["Cache-Control"] == "no-store"
        head = api.request("HEAD", path, role="admin", headers={"If-None-Match": etag})
        assert head.status_code == 304, path
        other = api.get(path, role="admin", headers={"If-None-Match": '"v999"'})
        assert other.status_code == 200 and other.get_json() == first.get_json(), path

    # A change moves the ETag: the old one gets the new body.
    path = f"/api/v1/patients/{clinic.patient['id']}"
    etag = api.get(path).headers["ETag"]
    assert api.patch(path, json={"phone": "+16025550111"},
                     headers={"If-Match": etag}).status_code == 200
    changed = api.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.get_json()["phone"] == "+16025550111"
    # Access rules come first: someone else's record is 404, whatever the ETag.
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    other = clinic.add_patient(first_name="Other")
    hidden = api.get(f"/api/v1/patients/{other['id']}", role="me",
                     headers={"If-None-Match": '"v1"'})
    assert hidden.status_code == 404


def test_a_304_on_patient_data_is_still_audited(app, clinic, api):
    path = f"/api/v1/patients/{clinic.patient['id']}"
    etag = api.get(path).headers["ETag"]
    before = last_row_id(app)
    assert api.get(path, headers={"If-None-Match": etag}).status_code == 304
    [row] = rows_after(app, before)
    assert (row.action.value, row.outcome.value, str(row.patient_id)) == (
        "read", "success", clinic.patient["id"])


def test_a_series_never_answers_304(clinic, api):
    """Its ETag names the series' own version; its body also shows the sessions and the
    progress, which change without it."""
    series = book_series(clinic, clinic.at(9)).get_json()
    path = f"/api/v1/series/{series['id']}"
    etag = api.get(path).headers["ETag"]
    assert api.get(path, headers={"If-None-Match": etag}).status_code == 200


def test_the_document_tells_clients_about_304(client):
    spec = client.get("/openapi.json").get_json()
    for path in ("/api/v1/bookings/{booking_id}", "/api/v1/patients/{patient_id}",
                 "/api/v1/api-keys/{key_id}", "/api/v1/bookings/{booking_id}/screening"):
        operation = spec["paths"][path]["get"]
        assert "304" in operation["responses"], path
        names = [p.get("name") for p in operation.get("parameters", [])]
        assert names.count("If-None-Match") == 1, (path, names)
        etag = operation["responses"]["200"]["headers"]["ETag"]
        assert "If-Match" in etag["description"], path  # the version tag, as documented
    assert "304" not in spec["paths"]["/api/v1/series/{series_id}"]["get"]["responses"]


# Cache-Control ---------------------------------------------------------------------------


def test_every_api_and_fhir_answer_is_no_store(clinic, api, client):
    for method, path, role in (
            ("GET", "/api/v1/providers", "staff"),
            ("GET", f"/api/v1/patients/{clinic.patient['id']}", "staff"),
            ("GET", "/api/v1/patients/00000000-0000-0000-0000-000000000000", "staff"),
            ("GET", "/api/v1/bookings", None),
            ("POST", "/api/v1/patients", "staff"),
            ("GET", "/fhir/R4/Appointment", "staff"),
            ("GET", f"/fhir/R4/Patient/{clinic.patient['id']}", "staff"),
            ("GET", "/fhir/R4/Encounter", "staff"),
            ("GET", "/api/v1/me", "staff")):
        response = api.request(method, path, role=role, **(
            {"json": {}} if method == "POST" else {}))
        assert response.headers["Cache-Control"] == "no-store", (method, path)
    # Public documents keep ordinary caching.
    for path in ("/openapi.json", "/docs", "/healthz", "/problems/not_found"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "no-store" not in response.headers.get("Cache-Control", ""), path
    assert client.get("/fhir/R4/metadata").headers["Cache-Control"] == (
        "public, max-age=3600")


# CORS ------------------------------------------------------------------------------------


@pytest.fixture
def cors_app(database_url, monkeypatch) -> Iterator[Flask]:
    monkeypatch.setenv("CORS_ORIGINS", f"{PORTAL}, https://admin.example.com")
    monkeypatch.setenv("CORS_MAX_AGE", "120")
    application = create_app({"DATABASE_URL": database_url, "TESTING": True})
    yield application
    application.extensions["clinic.database"].dispose()


def _preflight(client, path: str, origin: str = PORTAL, method: str = "POST"):
    return client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key, "
                                          "prefer"})


def test_preflights_are_answered_for_the_allow_list_and_cached(cors_app, api):
    client = cors_app.test_client()
    for path, method in (("/api/v1/bookings", "POST"), (f"/api/v1/patients/{uuid.uuid4()}",
                                                        "PATCH"),
                         ("/fhir/R4/Appointment", "GET"), ("/openapi.json", "GET")):
        response = _preflight(client, path, method=method)
        assert response.status_code == 200, path
        assert response.headers["Access-Control-Allow-Origin"] == PORTAL, path
        assert response.headers["Access-Control-Max-Age"] == "120", path
        allowed = {h.strip().lower() for h in
                   response.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type", "idempotency-key", "prefer"} <= allowed
        assert method in response.headers["Access-Control-Allow-Methods"]
    refused = _preflight(client, "/api/v1/bookings", origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_answers_expose_the_headers_a_front_end_reads(cors_app, api):
    client = cors_app.test_client()
    headers = {"Origin": PORTAL, **api.headers("staff")}
    for path in ("/api/v1/providers", "/fhir/R4/Practitioner", "/openapi.json",
                 "/fhir/R4/metadata"):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, path
        assert response.headers["Access-Control-Allow-Origin"] == PORTAL, path
        exposed = {h.strip() for h in
                   response.headers["Access-Control-Expose-Headers"].split(",")}
        assert EXPOSED <= exposed, (path, exposed)
        assert "Origin" in response.headers.get("Vary", ""), path
    other = client.get("/api/v1/providers", headers={**headers, "Origin": "https://x.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    # Without CORS_ORIGINS nothing is allowed.
    plain = api.client.get("/api/v1/providers", headers=headers)
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_cors_max_age_defaults_to_ten_minutes():
    assert Settings.from_env({}).cors_max_age == 600
    assert Settings.from_env({"CORS_MAX_AGE": "0"}).cors_max_age == 0
    with pytest.raises(ValueError, match="CORS_MAX_AGE"):
        Settings.from_env({"CORS_MAX_AGE": "-1"})
