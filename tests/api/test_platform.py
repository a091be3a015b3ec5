"""The platform around the resources: OpenAPI, Swagger UI offline, probes, errors, CORS."""

from __future__ import annotations

import json
import re
from pathlib import Path

from openapi_spec_validator import validate

from service.app import create_app
from service.errors import CODES

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_document_in_repo_matches_the_code(client):
    served = client.get("/openapi.json").get_json()
    stored = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    assert served == stored, "openapi/openapi.json drifted: run `make openapi`"


def test_openapi_document_is_valid(client):
    validate(client.get("/openapi.json").get_json())


def test_every_api_operation_documents_auth_errors(client):
    spec = client.get("/openapi.json").get_json()
    for path, operations in spec["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            assert operation.get("summary"), (method, path)


def test_the_document_says_what_is_sent(client):
    """Problem is open and names its extension members; X-Pagination is a JSON object in a
    header (documented with ``content``); the shared error answers are on every operation;
    FHIR answers are FHIR resources."""
    spec = client.get("/openapi.json").get_json()
    problem = spec["components"]["schemas"]["Problem"]
    assert problem["additionalProperties"] is True
    assert {"errors", "alternatives", "current_version", "allowed_roles"} <= set(
        problem["properties"])
    pagination = spec["components"]["headers"]["PAGINATION"]
    assert list(pagination["content"]) == ["application/json"] and "schema" not in pagination
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path.startswith(("/api/", "/fhir/")) and method != "parameters":
                assert "503" in operation["responses"], (method, path)
                if "requestBody" in operation:
                    assert {"400", "413", "415", "422"} <= set(operation["responses"])
    slots = spec["paths"]["/fhir/R4/Slot"]["get"]["responses"]
    assert slots["200"]["content"]["application/fhir+json"]["schema"] == {
        "$ref": "#/components/schemas/FhirSlotBundle"}
    assert slots["401"]["content"]["application/fhir+json"]["schema"] == {
        "$ref": "#/components/schemas/FhirOperationOutcome"}


OPERATION_ID = re.compile(r"[a-z]+(?:[A-Z0-9][a-z0-9]*)*")


def test_every_operation_has_a_unique_camel_case_operation_id(client):
    spec = client.get("/openapi.json").get_json()
    ids = {(method, path): operation.get("operationId")
           for path, operations in spec["paths"].items()
           for method, operation in operations.items() if method != "parameters"}
    assert all(isinstance(i, str) and OPERATION_ID.fullmatch(i) for i in ids.values()), [
        key for key, i in ids.items() if not (i and OPERATION_ID.fullmatch(i))]
    assert len(set(ids.values())) == len(ids), "operationIds must be unique"
    # The names clients call (never rename one).
    assert {ids[("get", "/api/v1/slots")], ids[("post", "/api/v1/bookings")],
            ids[("get", "/api/v1/bookings/{booking_id}")],
            ids[("post", "/api/v1/bookings/{booking_id}/confirm")],
            ids[("post", "/api/v1/bookings/{booking_id}/cancel")],
            ids[("get", "/api/v1/providers")], ids[("get", "/api/v1/me")],
            ids[("post", "/api/v1/api-keys")], ids[("get", "/fhir/R4/metadata")],
            ids[("get", "/api/v1/providers/{provider_id}/licenses")],
            ids[("get", "/fhir/R4/Patient/{patient_id}")]} == {
        "searchSlots", "createBooking", "getBooking", "confirmBooking", "cancelBooking",
        "listProviders", "getMe", "createApiKey", "readFhirCapabilities",
        "listProviderLicenses", "readFhirPatient"}


def test_answers_say_which_members_are_always_there_and_type_instants(client):
    """Response schemas mark what is always present ``required`` (request schemas stay as
    loose as they are: only read-only members, which OpenAPI applies to answers only); slots,
    alternatives and series sessions carry instants as ``date-time``."""
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    booking = schemas["Booking"]
    assert set(booking["required"]) == set(booking["properties"])
    assert {"id", "created_at", "version"} <= set(schemas["Patient"]["required"])
    for name, schema in schemas.items():
        for member in schema.get("required", []):
            prop = schema["properties"][member]
            if name in ("BookingCreate", "PatientUpdate"):
                assert prop.get("readOnly") or member in (
                    "patient_id", "provider_id", "service_type_id", "location_id", "start")
    assert set(schemas["SyncedBooking"]["required"]) == {
        "id", "status", "deleted", "cancelled_at", "updated_at", "version"}
    for name in ("Slot", "Alternative", "Session", "Rebook", "OccurrenceReport",
                 "ProblemAlternative"):
        for member in ("start", "end"):
            assert schemas[name]["properties"][member]["format"] == "date-time", name
    alternatives = schemas["Problem"]["properties"]["alternatives"]
    assert alternatives["items"] == {"$ref": "#/components/schemas/ProblemAlternative"}


def test_swagger_ui_is_served_locally(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in html
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        response = client.get(f"/docs/assets/{asset}")
        assert response.status_code == 200 and len(response.data) > 1000, asset


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["migrations"] == "at head"


def test_readyz_is_503_when_schema_is_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    app = create_app()
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "service_unavailable"


def test_problem_types_are_documented(client):
    for code, (status, _) in CODES.items():
        body = client.get(f"/problems/{code}").get_json()
        assert body["status"] == status
    assert client.get("/problems/nonsense").status_code == 404


def test_a_body_over_1_mib_is_413_with_its_own_code(api):
    """It was 413 with code bad_request, which /problems/bad_request says is a 400."""
    body = b"{" + b" " * (1024 * 1024) + b"}"
    response = api.post("/api/v1/locations", data=body,
                        headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "payload_too_large"


def test_internal_error_body_hides_details(app, api):
    view = app.view_functions["providers.providers_collection"]

    def broken(*args, **kwargs):
        raise RuntimeError("secret patient detail")

    app.view_functions["providers.providers_collection"] = broken
    try:
        response = api.get("/api/v1/providers")
    finally:
        app.view_functions["providers.providers_collection"] = view
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True)
    assert body["request_id"] == response.headers["X-Request-Id"]


def test_cors_allows_only_configured_origins(monkeypatch, database_url):
    monkeypatch.setenv("CORS_ORIGINS", "https://book.example.com")
    app = create_app({"DATABASE_URL": database_url})
    client = app.test_client()
    allowed = client.options("/api/v1/providers", headers={
        "Origin": "https://book.example.com", "Access-Control-Request-Method": "GET"})
    assert allowed.headers.get("Access-Control-Allow-Origin") == "https://book.example.com"
    other = client.options("/api/v1/providers", headers={
        "Origin": "https://evil.example.com", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in other.headers
    app.extensions["clinic.database"].dispose()


def test_no_cors_by_default(client):
    response = client.options("/api/v1/providers", headers={
        "Origin": "https://book.example.com", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_every_error_code_used_in_the_code_is_in_the_table():
    """Clients branch on codes: each one raised anywhere must be listed (and documented)."""
    import re

    used: set[str] = set()
    for path in (ROOT / "service").rglob("*.py"):
        if path.name == "demo.py":  # service type codes, not error codes
            continue
        text = path.read_text()
        used |= set(re.findall(r'\bcode="([a-z_]+)"', text))
        used |= set(re.findall(r'CodedMessage\([^)]*?"([a-z_]+)"\)', text, re.S))
        used |= set(re.findall(r'coded_error\([^)]*?"([a-z_]+)"\)', text, re.S))
    missing = sorted(used - set(CODES))
    assert not missing, f"add to service/errors.py CODES: {missing}"
