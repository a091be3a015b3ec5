"""A resource read by GET and sent back whole in a PATCH, one field changed, is accepted:
its read-only fields (``readOnly`` in the document) are ignored when they equal the current
values and refused with 422 ``read_only_field`` when they do not. Every PATCH endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_consultations import checked_in_session, consultation, screen
from tests.api.test_directory import assert_problem
from tests.api.test_webhooks import subscribe
from tests.factories import (
    clinic_payload,
    license_payload,
    patient_payload,
    provider_payload,
    service_type_payload,
)
from tests.scenario import Clinic, build_clinic

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def _patient(clinic: Clinic) -> tuple[str, str, Any]:
    created = clinic.api.create("/api/v1/patients", patient_payload(first_name="Echo"))
    return f"/api/v1/patients/{created['id']}", "phone", "+16025550100"


def _provider(clinic: Clinic) -> tuple[str, str, Any]:
    created = clinic.api.create("/api/v1/providers",
                                provider_payload(name="Dr. Echo", npi="1245319599"))
    return f"/api/v1/providers/{created['id']}", "name", "Dr. Echo Changed"


def _license(clinic: Clinic) -> tuple[str, str, Any]:
    base = f"/api/v1/providers/{clinic.doctor['id']}/licenses"
    created = clinic.api.create(base, license_payload(number="MD-ECHO-1"))
    return f"{base}/{created['id']}", "status", "suspended"


def _location(clinic: Clinic) -> tuple[str, str, Any]:
    created = clinic.api.create("/api/v1/locations", clinic_payload(name="Echo site"))
    return f"/api/v1/locations/{created['id']}", "chairs", 3


def _service_type(clinic: Clinic) -> tuple[str, str, Any]:
    created = clinic.api.create("/api/v1/service-types",
                                service_type_payload(code="echo-visit", name="Echo"))
    return f"/api/v1/service-types/{created['id']}", "duration_minutes", 45


def _webhook(clinic: Clinic) -> tuple[str, str, Any]:
    created = subscribe(clinic.api, role="admin").get_json()
    return f"/api/v1/webhooks/{created['id']}", "description", "EHR sync (changed)"


def _screening(clinic: Clinic) -> tuple[str, str, Any]:
    booking = consultation(clinic)
    assert screen(clinic, booking).status_code == 201
    return f"/api/v1/bookings/{booking['id']}/screening", "pregnancy", True


def _side_effect(clinic: Clinic) -> tuple[str, str, Any]:
    booking = checked_in_session(clinic)
    base = f"/api/v1/bookings/{booking['id']}/side-effects"
    created = clinic.api.post(base, json={"kind": "nausea", "severity": "mild"}).get_json()
    return f"{base}/{created['id']}", "severity", "moderate"


def _on_call_contact(clinic: Clinic) -> tuple[str, str, Any]:
    created = clinic.api.post("/api/v1/on-call-contacts", role="admin", json={
        "name": "Dr. Echo (on call)", "tier": 1, "phone": "+16025550111"}).get_json()
    return f"/api/v1/on-call-contacts/{created['id']}", "tier", 2


def _calendar_connection(clinic: Clinic) -> tuple[str, str, Any]:
    base = f"/api/v1/providers/{clinic.doctor['id']}/calendar-connections"
    response = clinic.api.post(base, json={"label": "Shifts", "kind": "push"})
    assert response.status_code == 201, response.get_json()
    return f"{base}/{response.get_json()['id']}", "label", "Hospital shifts"


RESOURCES: dict[str, Callable[[Clinic], tuple[str, str, Any]]] = {
    "patient": _patient, "provider": _provider, "license": _license, "location": _location,
    "service_type": _service_type, "webhook": _webhook, "screening": _screening,
    "side_effect": _side_effect, "on_call_contact": _on_call_contact,
    "calendar_connection": _calendar_connection,
}


def read(clinic: Clinic, path: str) -> tuple[dict[str, Any], str]:
    if "/side-effects/" in path:  # read from the session's list
        base, _, wanted = path.rpartition("/")
        response = clinic.api.get(base)
        body = next(e for e in response.get_json() if e["id"] == wanted)
        return body, f'"v{body["version"]}"'
    response = clinic.api.get(path, role="admin")
    assert response.status_code == 200, response.get_json()
    return response.get_json(), response.headers["ETag"]


@pytest.mark.parametrize("resource", sorted(RESOURCES))
def test_a_body_read_by_get_is_accepted_back_with_one_field_changed(clinic, resource):
    path, field, value = RESOURCES[resource](clinic)
    body, tag = read(clinic, path)
    assert body[field] != value
    response = clinic.api.patch(path, json={**body, field: value}, role="admin",
                                headers={"If-Match": tag})
    assert response.status_code == 200, response.get_json()
    changed = response.get_json()
    assert changed[field] == value
    assert changed["id"] == body["id"] and changed["version"] == body["version"] + 1


@pytest.mark.parametrize("resource", sorted(RESOURCES))
def test_changing_a_read_only_field_is_422_read_only_field(clinic, resource):
    path, field, value = RESOURCES[resource](clinic)
    body, tag = read(clinic, path)
    created = datetime.fromisoformat(body["created_at"]) - timedelta(days=1)
    response = clinic.api.patch(path, json={**body, field: value,
                                            "created_at": created.isoformat()},
                                role="admin", headers={"If-Match": tag})
    problem = assert_problem(response, 422, "read_only_field")
    assert problem["fields"] == ["created_at"]
    assert read(clinic, path)[0] == body  # nothing changed


def test_an_instant_sent_back_in_another_offset_is_the_same_value(clinic, api):
    path, field, value = _patient(clinic)
    body, tag = read(clinic, path)
    utc = datetime.fromisoformat(body["updated_at"]).astimezone().isoformat()
    response = api.patch(path, json={**body, "updated_at": utc, field: value},
                         headers={"If-Match": tag})
    assert response.status_code == 200, response.get_json()


def test_a_stale_version_in_the_body_is_412_like_the_if_match(clinic, api):
    path, field, value = _provider(clinic)
    body, tag = read(clinic, path)
    assert api.patch(path, json={field: "Dr. Between"}, headers={"If-Match": tag}
                     ).status_code == 200
    response = api.patch(path, json={**body, field: value}, headers={"If-Match": tag})
    assert_problem(response, 412, "precondition_failed")


def test_server_computed_fields_are_read_only_too(clinic, api):
    path, _, _ = _patient(clinic)
    body, tag = read(clinic, path)
    response = api.patch(path, json={**body, "cleared_for_treatment": True},
                         headers={"If-Match": tag})
    assert assert_problem(response, 422, "read_only_field")["fields"] == [
        "cleared_for_treatment"]


def test_read_only_fields_are_marked_in_every_patch_body_schema():
    document = json.loads(DOCUMENT.read_text())
    schemas = document["components"]["schemas"]
    patched = []
    for path, operations in document["paths"].items():
        if "patch" not in operations:
            continue
        ref = operations["patch"]["requestBody"]["content"]["application/json"]["schema"]
        body = schemas[ref["$ref"].rsplit("/", 1)[-1]]
        answer = operations["patch"]["responses"]["200"]["content"]["application/json"]
        shown = schemas[answer["schema"]["$ref"].rsplit("/", 1)[-1]]
        # Every member of the answer may be sent back; those not editable are readOnly.
        assert set(shown["properties"]) <= set(body["properties"]), path
        for name in ("id", "created_at", "updated_at", "version"):
            assert body["properties"][name]["readOnly"] is True, (path, name)
        assert "read_only_field" in operations["patch"]["description"], path
        patched.append(path)
    assert len(patched) == len(RESOURCES)
