"""The API-key lookup cached per worker (API_KEY_CACHE_SECONDS): a revocation made by this
process is refused at once, one made behind its back within the bound, an expiry on every
use (issue 14)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from service.domain.access import services as keys
from service.domain.access.models import ApiKey
from service.extensions import unit_of_work
from tests.api.test_api_keys import KEYS, bearer
from tests.api.test_directory import assert_problem
from tests.scenario import build_clinic

BOUND = 0.6


@pytest.fixture
def clinic(api):
    return build_clinic(api)


@pytest.fixture
def cached(app) -> Iterator[None]:
    settings = app.config["SETTINGS"]
    app.config["SETTINGS"] = dataclasses.replace(settings, api_key_cache_seconds=BOUND)
    keys.forget_key()
    yield
    app.config["SETTINGS"] = settings
    keys.forget_key()


def patient_key(api, clinic, **extra) -> dict:
    return api.post(KEYS, json={"role": "patient", "patient_id": clinic.patient["id"],
                                "label": "phone", **extra}).get_json()


def rewrite(app, key_id: str, **values) -> None:
    """A change made behind this process's back (another worker, the command line)."""
    with app.app_context(), unit_of_work() as uow:
        uow.session.execute(update(ApiKey).where(ApiKey.id == uuid.UUID(key_id)).values(**values))
        uow.commit()


def test_a_revocation_through_this_process_is_refused_at_once(api, clinic, client, cached):
    created = patient_key(api, clinic)
    headers = bearer(created["key"])
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert api.request("DELETE", f"{KEYS}/{created['id']}").status_code == 204
    assert_problem(client.get("/api/v1/me", headers=headers), 401, "revoked_api_key")


def test_a_revocation_elsewhere_takes_effect_within_the_bound(api, app, clinic, client, cached):
    created = patient_key(api, clinic)
    headers = bearer(created["key"])
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    rewrite(app, created["id"], revoked_at=datetime.now(UTC))
    revoked_at = time.monotonic()
    while client.get("/api/v1/me", headers=headers).status_code == 200:
        assert time.monotonic() - revoked_at <= BOUND + 0.5
        time.sleep(0.05)
    assert_problem(client.get("/api/v1/me", headers=headers), 401, "revoked_api_key")


def test_an_expiry_is_checked_on_every_use(api, app, clinic, client, cached):
    soon = datetime.now(UTC) + timedelta(seconds=1)
    created = patient_key(api, clinic, expires_at=(datetime.now(UTC) + timedelta(days=1)
                                                   ).isoformat())
    rewrite(app, created["id"], expires_at=soon)
    headers = bearer(created["key"])
    assert client.get("/api/v1/me", headers=headers).status_code == 200  # looked up, cached
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)
    assert_problem(client.get("/api/v1/me", headers=headers), 401, "api_key_expired")


def test_a_wrong_secret_is_never_served_from_the_cache(api, clinic, client, cached):
    created = patient_key(api, clinic)
    assert client.get("/api/v1/me", headers=bearer(created["key"])).status_code == 200
    forged = created["key"][:-4] + ("aaaa" if not created["key"].endswith("aaaa") else "bbbb")
    assert_problem(client.get("/api/v1/me", headers=bearer(forged)), 401, "invalid_api_key")
