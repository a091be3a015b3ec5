"""Test helpers: an authenticated HTTP client and valid example payloads."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient

from service.domain.access import services as keys
from service.domain.access.actor import Role
from service.extensions import unit_of_work

# Valid (check-digit correct) fictional NPIs.
NPIS = ["1234567893", "1245319599", "1003000126", "1730287459", "1679576722", "1497758544"]


@dataclass
class Api:
    app: Flask
    client: FlaskClient
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, role: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return headers

    def request(self, method: str, path: str, *, role: str | None = "staff",
                headers: dict[str, str] | None = None, **kwargs: Any):
        return self.client.open(path, method=method, headers=self.headers(role, headers),
                                **kwargs)

    def get(self, path: str, **kwargs: Any):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any):
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any):
        return self.request("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any):
        return self.request("PUT", path, **kwargs)

    def bind(self, name: str, role: Role, *, provider_id: Any = None,
             patient_id: Any = None) -> str:
        """Create a provider- or patient-bound key, usable as ``role=name``."""
        with self.app.app_context():
            issued = keys.issue_key(
                unit_of_work(), role=role, label=f"test {name}",
                provider_id=uuid.UUID(str(provider_id)) if provider_id else None,
                patient_id=uuid.UUID(str(patient_id)) if patient_id else None)
        self.tokens[name] = issued.key
        return issued.key

    def create(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.post(path, json=payload, role="staff")
        assert response.status_code == 201, response.get_json()
        return response.get_json()


CLINIC_ZONE = ZoneInfo("America/Phoenix")  # the service's default CLINIC_TIMEZONE


def clinic_today() -> date:
    """Today as the clinic counts it: the service decides dates in the clinic's zone, so a test
    that used the host's date would fail for part of every day (in UTC, 00:00-07:00)."""
    return datetime.now(CLINIC_ZONE).date()


def provider_payload(**overrides: Any) -> dict[str, Any]:
    return {"name": "Dr. Test Provider", "credential": "MD", "npi": NPIS[0],
            "timezone": "America/Phoenix", "is_prescriber": True,
            "is_rems_prescriber": True, **overrides}


def license_payload(**overrides: Any) -> dict[str, Any]:
    today = clinic_today()
    return {"jurisdiction": "US-AZ", "kind": "license", "board": "Arizona Medical Board",
            "number": "MD-1", "issued_on": (today - timedelta(days=365)).isoformat(),
            "expires_on": (today + timedelta(days=365)).isoformat(), **overrides}


def clinic_payload(**overrides: Any) -> dict[str, Any]:
    return {"name": "Phoenix clinic", "kind": "clinic", "timezone": "America/Phoenix",
            "address_line1": "1 Main St", "city": "Phoenix", "state": "AZ",
            "postal_code": "85004", "chairs": 2, "rems_certified": True, **overrides}


def virtual_payload(**overrides: Any) -> dict[str, Any]:
    return {"name": "Telehealth", "kind": "virtual", "timezone": "America/Phoenix",
            **overrides}


def service_type_payload(**overrides: Any) -> dict[str, Any]:
    return {"code": "consultation", "name": "Telehealth consultation",
            "modality": "telehealth", "duration_minutes": 60, **overrides}


def patient_payload(**overrides: Any) -> dict[str, Any]:
    return {"first_name": "Casey", "last_name": "Test", "birth_date": "1990-01-01",
            "email": "casey@example.com", "phone": "+16025550199",
            "timezone": "America/Phoenix", "home_state": "AZ", **overrides}
