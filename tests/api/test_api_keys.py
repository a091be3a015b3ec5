"""API keys through the API (/api/v1/api-keys), the calling key (/api/v1/me), expiry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from service.domain.access.models import ApiKey
from service.domain.idempotency.models import IdempotencyRecord
from service.extensions import unit_of_work
from tests.api.test_directory import assert_problem
from tests.scenario import build_clinic

KEYS = "/api/v1/api-keys"


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def test_an_admin_issues_a_key_shown_once_that_works_at_once(api, clinic, client):
    me = clinic.patient["id"]
    response = api.post(KEYS, role="admin", json={
        "role": "patient", "patient_id": me, "label": "Patient portal",
        "expires_at": later(days=30)})
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    key = created["key"]
    assert key.startswith(f"ck_patient_{created['public_id']}_") and len(key) > 50
    assert created["prefix"] == f"ck_patient_{created['public_id']}"
    assert response.headers["Location"] == f"{KEYS}/{created['id']}"
    assert (created["role"], created["patient_id"], created["provider_id"]) == (
        "patient", me, None)
    assert created["state"] == "active" and created["revoked_at"] is None

    # The key acts for its patient at once.
    assert client.get(f"/api/v1/patients/{me}", headers=bearer(key)).status_code == 200
    other = clinic.add_patient(first_name="Other")
    assert client.get(f"/api/v1/patients/{other['id']}",
                      headers=bearer(key)).status_code == 404

    # Never shown again: not in the list, not in one key's page, not even its hash.
    listed = api.get(KEYS, role="admin")
    assert listed.status_code == 200 and "X-Pagination" in listed.headers
    one = api.get(f"{KEYS}/{created['id']}", role="admin")
    secret = key.removeprefix(created["prefix"] + "_")  # urlsafe: may itself hold "_"
    for text in (listed.get_data(as_text=True), one.get_data(as_text=True)):
        assert key not in text and secret not in text
        assert "secret" not in text and "hash" not in text
    assert "key" not in one.get_json()
    assert one.get_json()["expires_at"] == created["expires_at"]


def test_me_tells_the_calling_keys_role_and_binding(api, clinic, client):
    me = clinic.patient["id"]
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    patient_key = api.post(KEYS, json={"role": "patient", "patient_id": me, "label": "app",
                                       "expires_at": expires.isoformat()}).get_json()
    answer = client.get("/api/v1/me", headers=bearer(patient_key["key"])).get_json()
    assert answer["key_id"] == patient_key["id"]
    assert (answer["role"], answer["patient_id"], answer["provider_id"]) == ("patient", me,
                                                                             None)
    assert answer["public_id"] == patient_key["public_id"] and answer["label"] == "app"
    assert datetime.fromisoformat(answer["expires_at"]) == expires
    assert "key" not in answer and patient_key["key"] not in str(answer)

    provider_key = api.post(KEYS, role="admin", json={
        "role": "provider", "provider_id": clinic.doctor["id"], "label": "Dr. Stone"}
    ).get_json()
    answer = client.get("/api/v1/me", headers=bearer(provider_key["key"])).get_json()
    assert (answer["role"], answer["provider_id"], answer["patient_id"],
            answer["expires_at"]) == ("provider", clinic.doctor["id"], None, None)
    staff = api.get("/api/v1/me").get_json()
    assert staff["role"] == "staff" and staff["patient_id"] is None
    assert_problem(api.get("/api/v1/me", role=None), 401, "unauthenticated")


def test_bindings_are_required_for_and_only_for_their_roles(api, clinic):
    me, doctor = clinic.patient["id"], clinic.doctor["id"]
    for body in ({"role": "patient"}, {"role": "provider"},
                 {"role": "staff", "patient_id": me}, {"role": "integration",
                                                       "provider_id": doctor},
                 {"role": "patient", "patient_id": me, "provider_id": doctor},
                 {"role": "provider", "patient_id": me}):
        response = api.post(KEYS, role="admin", json={"label": "x", **body})
        assert_problem(response, 422, "key_binding")
    assert_problem(api.post(KEYS, role="admin", json={
        "role": "patient", "patient_id": str(uuid.uuid4()), "label": "x"}), 404,
        "patient_not_found")
    assert_problem(api.post(KEYS, role="admin", json={
        "role": "provider", "provider_id": str(uuid.uuid4()), "label": "x"}), 404,
        "provider_not_found")
    assert_problem(api.post(KEYS, role="admin", json={"role": "root", "label": "x"}), 422,
                   "validation_failed")
    assert_problem(api.post(KEYS, role="admin", json={"role": "staff"}), 422,
                   "validation_failed")
    assert_problem(api.post(KEYS, role="admin", json={"role": "staff", "label": "x",
                                                      "key": "ck_staff_mine_secret"}),
                   422, "validation_failed")
    assert_problem(api.post(KEYS, role="admin", json={
        "role": "staff", "label": "x", "expires_at": later(minutes=-1)}), 422,
        "invalid_key_expiry")
    assert_problem(api.post(KEYS, role="admin", json={
        "role": "staff", "label": "x", "expires_at": "2030-01-01T00:00:00"}), 422,
        "naive_datetime")
    with api.app.app_context(), unit_of_work() as uow:
        labels = list(uow.session.scalars(select(ApiKey.label)))
    assert "x" not in labels  # nothing was written


def test_staff_manage_patient_keys_only(api, clinic):
    me = clinic.patient["id"]
    mine = api.post(KEYS, json={"role": "patient", "patient_id": me, "label": "portal"})
    assert mine.status_code == 201
    for body in ({"role": "staff"}, {"role": "admin"}, {"role": "integration"},
                 {"role": "provider", "provider_id": clinic.doctor["id"]}):
        refused = api.post(KEYS, json={"label": "x", **body})
        assert_problem(refused, 403, "key_role_not_allowed")
        assert refused.get_json()["allowed_roles"] == ["patient"]
    integration = api.post(KEYS, role="admin", json={"role": "integration",
                                                     "label": "EHR"}).get_json()
    listed = api.get(KEYS).get_json()
    assert {k["role"] for k in listed} == {"patient"}
    assert [k["id"] for k in listed] == [mine.get_json()["id"]]
    assert {k["role"] for k in api.get(KEYS, role="admin").get_json()} == {
        "admin", "staff", "integration", "patient"}
    assert_problem(api.get(f"{KEYS}/{integration['id']}"), 404, "api_key_not_found")
    assert_problem(api.request("DELETE", f"{KEYS}/{integration['id']}"), 404,
                   "api_key_not_found")
    # Patients, providers and integrations manage no keys at all.
    api.bind("me", "patient", patient_id=me)
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    for role in ("me", "doc", "integration"):
        assert_problem(api.get(KEYS, role=role), 403, "forbidden")
        assert_problem(api.post(KEYS, role=role, json={
            "role": "patient", "patient_id": me, "label": "x"}), 403, "forbidden")


def test_list_filters_and_pages(api, clinic):
    me = clinic.patient["id"]
    other = clinic.add_patient(first_name="Other")
    for patient, label in ((me, "a"), (me, "b"), (other["id"], "c")):
        assert api.post(KEYS, json={"role": "patient", "patient_id": patient,
                                    "label": label}).status_code == 201
    labels = [k["label"] for k in api.get(KEYS, query_string={"patient_id": me}).get_json()]
    assert labels == ["a", "b"]
    page = api.get(KEYS, role="admin", query_string={"role": "patient", "page_size": 2})
    assert [k["label"] for k in page.get_json()] == ["a", "b"]
    assert '"total": 3' in page.headers["X-Pagination"]
    assert [k["role"] for k in api.get(KEYS, role="admin",
                                       query_string={"role": "staff"}).get_json()] == ["staff"]


def test_a_revoked_key_is_refused_and_listed_only_on_request(api, clinic, client):
    me = clinic.patient["id"]
    created = api.post(KEYS, json={"role": "patient", "patient_id": me,
                                   "label": "lost phone"}).get_json()
    path = f"{KEYS}/{created['id']}"
    assert client.get("/api/v1/me", headers=bearer(created["key"])).status_code == 200
    response = api.request("DELETE", path)
    assert response.status_code == 204 and response.data == b""
    assert_problem(client.get("/api/v1/me", headers=bearer(created["key"])), 401,
                   "revoked_api_key")
    again = api.request("DELETE", path)  # revoking twice changes nothing
    assert again.status_code == 204
    read = api.get(path).get_json()
    assert read["state"] == "revoked" and read["revoked_at"] is not None
    assert created["id"] not in [k["id"] for k in api.get(KEYS).get_json()]
    assert created["id"] in [k["id"] for k in api.get(
        KEYS, query_string={"include_revoked": "true"}).get_json()]
    assert_problem(api.request("DELETE", f"{KEYS}/{uuid.uuid4()}"), 404, "api_key_not_found")


def test_an_expired_key_answers_401_with_its_own_code(api, app, clinic, client):
    created = api.post(KEYS, json={"role": "patient", "patient_id": clinic.patient["id"],
                                   "label": "one day", "expires_at": later(days=1)}
                       ).get_json()
    headers = bearer(created["key"])
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    with app.app_context(), unit_of_work() as uow:  # a day passes
        uow.session.execute(update(ApiKey).where(ApiKey.id == uuid.UUID(created["id"]))
                            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        uow.commit()
    response = client.get("/api/v1/me", headers=headers)
    assert_problem(response, 401, "api_key_expired")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    fhir = client.get("/fhir/R4/Appointment", headers=headers)
    assert fhir.status_code == 401
    assert fhir.get_json()["issue"][0]["details"]["coding"][0]["code"] == "api_key_expired"
    listed = {k["id"]: k for k in api.get(KEYS).get_json()}
    assert listed[created["id"]]["state"] == "expired"  # still listed: revoke or let be


def test_a_replayed_creation_never_shows_or_stores_the_key(api, app, clinic):
    body = {"role": "patient", "patient_id": clinic.patient["id"], "label": "portal"}
    headers = {"Idempotency-Key": "create-portal-key"}
    first = api.post(KEYS, json=body, headers=headers)
    assert first.status_code == 201
    key = first.get_json()["key"]
    replay = api.post(KEYS, json=body, headers=headers)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json()["key"] is None
    assert replay.get_json()["id"] == first.get_json()["id"]
    with app.app_context(), unit_of_work() as uow:
        stored = list(uow.session.scalars(select(IdempotencyRecord.response_body)))
        assert stored and not any(key in (text or "") for text in stored)
        assert uow.session.scalar(select(ApiKey).where(
            ApiKey.label == "portal")).secret_hash not in str(stored)


def test_single_key_reads_answer_304_to_their_etag(api, clinic):
    created = api.post(KEYS, json={"role": "patient", "patient_id": clinic.patient["id"],
                                   "label": "portal"})
    etag = created.headers["ETag"]
    path = f"{KEYS}/{created.get_json()['id']}"
    assert api.get(path, headers={"If-None-Match": etag}).status_code == 304
    api.request("DELETE", path)
    assert api.get(path, headers={"If-None-Match": etag}).status_code == 200


def test_the_cli_sets_and_shows_an_expiry(app, client):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["keys", "create", "--role", "integration", "--label",
                                  "EHR", "--expires-at", "2099-01-01T00:00:00-07:00"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    me = client.get("/api/v1/me", headers=bearer(key)).get_json()
    assert datetime.fromisoformat(me["expires_at"]) == datetime(2099, 1, 1, 7, tzinfo=UTC)
    assert "2099-01-01" in runner.invoke(args=["keys", "list"]).output
    for value, message in (("tomorrow", "RFC 3339"), ("2099-01-01T00:00:00", "naive_datetime"),
                           ("2001-01-01T00:00:00+00:00", "invalid_key_expiry")):
        refused = runner.invoke(args=["keys", "create", "--role", "staff", "--label", "x",
                                      "--expires-at", value])
        assert refused.exit_code != 0 and message in refused.output, refused.output
