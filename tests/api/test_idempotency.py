"""Idempotency-Key on POST (IETF draft-ietf-httpapi-idempotency-key-header), through HTTP."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, text, update

from service.config import Settings
from service.db import utcnow
from service.domain.access import services as keys
from service.domain.audit.models import AuditEvent
from service.domain.bookings.models import Booking
from service.domain.idempotency import services as idempotency
from service.domain.idempotency.models import IdempotencyRecord
from service.extensions import unit_of_work
from service.resources.idempotency import request_hash
from tests.api.test_directory import PROBLEM, assert_problem
from tests.factories import NPIS, license_payload, provider_payload
from tests.scenario import build_clinic

PROVIDERS = "/api/v1/providers"



def post(api, payload, key, *, role="staff", path=PROVIDERS):
    return api.post(path, data=json.dumps(payload), role=role,
                    headers={"Content-Type": "application/json", "Idempotency-Key": key})


def provider_count(api) -> int:
    return len(api.get(f"{PROVIDERS}?page_size=100").get_json())


def claim(app, api, *, key, fingerprint, now):
    """A not-completed claim on a key for the staff API key, as an earlier version of the
    service (which claimed a key before running its request) left it while running."""
    with app.app_context():
        actor = keys.authenticate(unit_of_work(read_only=True), api.tokens["staff"])
        with unit_of_work() as uow:
            uow.session.add(IdempotencyRecord(
                api_key_id=actor.key_id, idempotency_key=key, method="POST", path=PROVIDERS,
                request_hash=fingerprint, completed=False, created_at=now,
                expires_at=now + idempotency.RETENTION))
            uow.commit()


def test_replay_returns_the_first_answer_and_creates_nothing(api):
    first = post(api, provider_payload(), "create-provider-1")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers

    again = post(api, provider_payload(), "create-provider-1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.mimetype == "application/json"
    assert provider_count(api) == 1


def test_quoted_structured_field_key_is_the_same_key(api):
    first = post(api, provider_payload(), "abc-123")
    again = post(api, provider_payload(), '"abc-123"')
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]


def test_without_the_header_nothing_is_recorded(api):
    assert api.post(PROVIDERS, json=provider_payload()).status_code == 201
    assert_problem(api.post(PROVIDERS, json=provider_payload()), 409, "duplicate_npi")


def test_same_key_with_another_body_is_422(api):
    post(api, provider_payload(), "k-1")
    response = post(api, provider_payload(npi=NPIS[1], name="Other"), "k-1")
    assert_problem(response, 422, "idempotency_key_reused")
    assert provider_count(api) == 1


def test_same_key_on_another_path_is_422(api):
    provider = post(api, provider_payload(), "k-path").get_json()
    response = post(api, provider_payload(), "k-path",
                    path=f"{PROVIDERS}/{provider['id']}/licenses")
    assert_problem(response, 422, "idempotency_key_reused")


def test_keys_are_scoped_to_the_api_key(api):
    first = post(api, provider_payload(), "shared-key", role="staff")
    other = post(api, provider_payload(npi=NPIS[1], name="Other"), "shared-key", role="admin")
    assert other.status_code == 201
    assert "Idempotent-Replayed" not in other.headers
    assert other.get_json()["id"] != first.get_json()["id"]
    assert provider_count(api) == 2


def test_key_in_progress_is_409(api, app):
    body = json.dumps(provider_payload())
    with app.test_request_context(PROVIDERS, method="POST", data=body,
                                  content_type="application/json"):
        fingerprint = request_hash()
    claim(app, api, key="busy", fingerprint=fingerprint, now=utcnow())

    response = api.post(PROVIDERS, data=body, headers={"Content-Type": "application/json",
                                                       "Idempotency-Key": "busy"})
    assert_problem(response, 409, "idempotency_key_in_progress")
    lease = app.config["SETTINGS"].idempotency_lease_seconds
    assert lease - 5 <= int(response.headers["Retry-After"]) <= lease
    assert provider_count(api) == 0


def lease(app) -> timedelta:
    return timedelta(seconds=app.config["SETTINGS"].idempotency_lease_seconds)


def test_in_progress_key_older_than_the_lease_is_taken_over(api, app):
    body = json.dumps(provider_payload())
    with app.test_request_context(PROVIDERS, method="POST", data=body,
                                  content_type="application/json"):
        fingerprint = request_hash()
    claim(app, api, key="orphan", fingerprint=fingerprint,
          now=utcnow() - lease(app) - timedelta(seconds=1))
    response = api.post(PROVIDERS, data=body, headers={"Content-Type": "application/json",
                                                       "Idempotency-Key": "orphan"})
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers


def test_expired_record_is_ignored(api, app):
    post(api, provider_payload(), "old-key")
    with app.app_context():
        with unit_of_work() as uow:
            uow.session.execute(update(IdempotencyRecord).values(
                expires_at=utcnow() - timedelta(seconds=1)))
            uow.commit()
    # Another body under the expired key is a new request, not a reuse.
    response = post(api, provider_payload(npi=NPIS[1], name="Other"), "old-key")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert provider_count(api) == 2


def test_purge_expired_deletes_only_expired_records(api, app):
    post(api, provider_payload(), "keep")
    post(api, provider_payload(npi=NPIS[1], name="Other"), "drop")
    with app.app_context():
        with unit_of_work() as uow:
            uow.session.execute(
                update(IdempotencyRecord).where(IdempotencyRecord.idempotency_key == "drop")
                .values(expires_at=utcnow() - timedelta(seconds=1)))
            uow.commit()
        assert idempotency.purge_expired(unit_of_work(), now=utcnow()) == 1
    assert post(api, provider_payload(), "keep").headers["Idempotent-Replayed"] == "true"


def test_failed_4xx_first_answer_is_replayed(api):
    bad = {**provider_payload(), "favourite": "x"}
    first = post(api, bad, "bad-body")
    first_body = assert_problem(first, 422, "validation_failed")
    again = post(api, bad, "bad-body")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.mimetype == PROBLEM
    assert assert_problem(again, 422, "validation_failed") == first_body
    # The key stays bound to that request: a corrected body needs a new key.
    assert_problem(post(api, provider_payload(), "bad-body"), 422, "idempotency_key_reused")


def test_5xx_gives_the_key_up(api, monkeypatch):
    import service.resources.common as common

    def broken(**_kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(common, "unit_of_work", broken)
    assert_problem(post(api, provider_payload(), "retry-me"), 500, "internal_error")
    monkeypatch.undo()
    retried = post(api, provider_payload(), "retry-me")
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers


def test_license_post_is_idempotent(api):
    provider = api.create(PROVIDERS, provider_payload())
    path = f"{PROVIDERS}/{provider['id']}/licenses"
    first = post(api, license_payload(), "license-1", path=path)
    again = post(api, license_payload(), "license-1", path=path)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert len(api.get(path).get_json()) == 1


def test_deactivate_post_is_idempotent(api):
    provider = api.create(PROVIDERS, provider_payload())
    path = f"{PROVIDERS}/{provider['id']}/deactivate"
    first = post(api, {}, "deactivate-1", path=path)
    again = post(api, {}, "deactivate-1", path=path)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()


def test_invalid_keys_are_400(api):
    for key in ("x" * 256, "", "caf\u00e9", "tab\there", '""'):
        response = post(api, provider_payload(), key)
        assert_problem(response, 400, "invalid_idempotency_key")
    assert provider_count(api) == 0
    assert post(api, provider_payload(), "x" * 255).status_code == 201


def test_concurrent_requests_with_one_key_create_one_provider(api, app):
    payload = json.dumps(provider_payload())
    headers = {"Authorization": f"Bearer {api.tokens['staff']}",
               "Content-Type": "application/json", "Idempotency-Key": "race"}
    barrier = threading.Barrier(8)
    answers: list = [None] * 8

    def send(index: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(PROVIDERS, data=payload, headers=headers)
        answers[index] = (response.status_code, response.get_json(), dict(response.headers))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(answer is not None for answer in answers)

    created = [a for a in answers if a[0] == 201 and "Idempotent-Replayed" not in a[2]]
    assert len(created) == 1, answers
    winner = created[0][1]["id"]
    for status, body, response_headers in answers:
        if status == 201:
            assert body["id"] == winner
        else:
            assert status == 409 and body["code"] == "idempotency_key_in_progress", body
            assert response_headers["Content-Type"] == PROBLEM
    assert provider_count(api) == 1


def test_every_post_operation_documents_the_idempotency_key(client):
    spec = client.get("/openapi.json").get_json()
    checked, undocumented = 0, []
    for path, operations in spec["paths"].items():
        if not path.startswith("/api/") or path.startswith("/api/v1/_"):
            continue
        if "post" not in operations:
            continue
        operation = operations["post"]
        header = [p for p in operation.get("parameters", [])
                  if p.get("in") == "header" and p.get("name") == "Idempotency-Key"]
        if len(header) != 1:
            undocumented.append(path)
            continue
        assert header[0]["required"] is False
        assert header[0]["schema"]["maxLength"] == 255
        assert {"409", "422"} <= set(operation["responses"]), path
        checked += 1
    assert not undocumented, f"put @idempotent outermost on POST {undocumented}"
    assert checked >= 10


def test_a_crashed_requests_key_is_free_once_its_worker_must_be_dead(api, app):
    """A worker killed mid-request leaves its claim in progress; the lease (the worker
    timeout plus a margin) frees it, and until then the 409 says when to retry."""
    body = json.dumps(provider_payload())
    with app.test_request_context(PROVIDERS, method="POST", data=body,
                                  content_type="application/json"):
        fingerprint = request_hash()
    settings = app.config["SETTINGS"]
    assert settings.idempotency_lease_seconds > settings.worker_timeout_seconds
    with app.app_context():
        actor = keys.authenticate(unit_of_work(read_only=True), api.tokens["staff"])
        started = utcnow() - lease(app) + timedelta(seconds=12)  # died 12 s before the lease
        with unit_of_work() as uow:  # the row exactly as the dead request left it
            uow.session.add(IdempotencyRecord(
                api_key_id=actor.key_id, idempotency_key="crashed", method="POST",
                path=PROVIDERS, request_hash=fingerprint, completed=False,
                created_at=started, expires_at=started + idempotency.RETENTION))
            uow.commit()
    headers = {"Content-Type": "application/json", "Idempotency-Key": "crashed"}

    early = api.post(PROVIDERS, data=body, headers=headers)
    assert_problem(early, 409, "idempotency_key_in_progress")
    assert 10 <= int(early.headers["Retry-After"]) <= 12
    assert provider_count(api) == 0

    with app.app_context(), unit_of_work() as uow:  # the lease has now run out
        uow.session.execute(update(IdempotencyRecord).values(
            created_at=started - timedelta(seconds=13)))
        uow.commit()
    taken_over = api.post(PROVIDERS, data=body, headers=headers)
    assert taken_over.status_code == 201
    assert "Idempotent-Replayed" not in taken_over.headers
    replay = api.post(PROVIDERS, data=body, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json()["id"] == taken_over.get_json()["id"]
    assert provider_count(api) == 1


def test_the_lease_follows_the_worker_timeout():
    assert Settings.from_env({}).idempotency_lease_seconds == 35
    assert Settings.from_env({"GUNICORN_TIMEOUT": "60"}).idempotency_lease_seconds == 65
    assert Settings.from_env({"IDEMPOTENCY_LEASE_SECONDS": "40"}).idempotency_lease_seconds == 40
    with pytest.raises(ValueError, match="IDEMPOTENCY_LEASE_SECONDS"):
        Settings.from_env({"GUNICORN_TIMEOUT": "60", "IDEMPOTENCY_LEASE_SECONDS": "45"})


# A booking with an Idempotency-Key: the change and its stored answer in one transaction.

BOOKINGS = "/api/v1/bookings"
KEYED_BOOKING_MOST_STATEMENTS_ON_POSTGRESQL = 8  # issue 14


def _bookings_and_records(app) -> tuple[int, list[IdempotencyRecord]]:
    database = app.extensions["clinic.database"]
    with database.read_sessions() as session:
        return (session.scalar(select(func.count()).select_from(Booking)) or 0,
                list(session.scalars(select(IdempotencyRecord))))


def test_a_keyed_booking_commits_with_its_answer_in_few_statements(app, api):
    clinic = build_clinic(api)
    assert clinic.book("consultation", clinic.at(14)).status_code == 201  # warm
    database = app.extensions["clinic.database"]
    statements: list[tuple[int, str]] = []

    def count(conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append((id(conn.connection.dbapi_connection), statement))

    event.listen(database.writer, "before_cursor_execute", count)
    try:
        response = clinic.book("consultation", clinic.at(13),
                               headers={"Idempotency-Key": "booking-13"})
    finally:
        event.remove(database.writer, "before_cursor_execute", count)
    assert response.status_code == 201, response.get_json()
    statements = [s for s in statements if "FROM api_keys" not in s[1]]  # no key cache here
    if database.dialect == "postgresql":
        assert len(statements) <= KEYED_BOOKING_MOST_STATEMENTS_ON_POSTGRESQL, [
            s[1][:40] for s in statements]
        # One transaction: the stored answer is its last statement but the audit row's.
        assert [s for s in statements if "idempotency_records" in s[1]] == [statements[-2]]
        assert len({connection for connection, _ in statements}) == 1
    booked, records = _bookings_and_records(app)
    assert booked == 2
    [record] = records
    assert record.completed and record.response_status == 201
    assert json.loads(record.response_body or "")["id"] == response.get_json()["id"]
    with database.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.resource_id == response.get_json()["id"])) == 1


def test_a_keyed_booking_is_made_once_and_replayed(app, api):
    clinic = build_clinic(api)
    key = {"Idempotency-Key": "book-once"}
    first = clinic.book("consultation", clinic.at(13), headers=key)
    assert first.status_code == 201, first.get_json()
    again = clinic.book("consultation", clinic.at(13), headers=key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert (again.headers["Location"], again.headers["ETag"]) == (
        first.headers["Location"], first.headers["ETag"])
    # Another start under the same key: refused as a reuse, and nothing more is booked
    # (the other slot is free: its booking was made, then rolled back).
    other = clinic.book("consultation", clinic.at(15), headers=key)
    assert_problem(other, 422, "idempotency_key_reused")
    assert _bookings_and_records(app)[0] == 1
    assert clinic.book("consultation", clinic.at(15)).status_code == 201


def test_a_keyed_booking_conflict_is_stored_and_replayed(app, api):
    clinic = build_clinic(api)
    assert clinic.book("consultation", clinic.at(13)).status_code == 201
    key = {"Idempotency-Key": "taken-slot"}
    other = clinic.add_patient(first_name="Other")
    first = clinic.book("consultation", clinic.at(13), headers=key, patient=other)
    body = assert_problem(first, 409, first.get_json()["code"])
    again = clinic.book("consultation", clinic.at(13), headers=key, patient=other)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == body
    assert _bookings_and_records(app)[0] == 1


def test_concurrent_keyed_bookings_book_once(app, api):
    clinic = build_clinic(api)
    body = {"patient_id": clinic.patient["id"], "provider_id": clinic.doctor["id"],
            "service_type_id": clinic.services["consultation"]["id"],
            "location_id": clinic.virtual["id"], "start": clinic.at(13).isoformat(),
            "patient_state": "AZ"}
    headers = {"Authorization": f"Bearer {api.tokens['staff']}",
               "Idempotency-Key": "booking-race"}
    barrier = threading.Barrier(6)
    answers: list = [None] * 6

    def send(index: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(BOOKINGS, json=body, headers=headers)
        answers[index] = (response.status_code, response.get_json(), dict(response.headers))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(answer is not None for answer in answers)
    made = [a for a in answers if a[0] == 201 and "Idempotent-Replayed" not in a[2]]
    assert len(made) == 1, answers
    for status, answer, _headers in answers:
        if status == 201:
            assert answer["id"] == made[0][1]["id"]
        else:
            assert status == 409 and answer["code"] == "idempotency_key_in_progress", answer
    assert _bookings_and_records(app)[0] == 1


def test_a_keyed_booking_whose_answer_cannot_be_stored_is_not_made(app, api):
    """The answer's INSERT waits on a lock until the lock timeout: the change is rolled
    back with it and the client gets a 503, never a 201 for a booking that is not there;
    the retry with the same key books it."""
    database = app.extensions["clinic.database"]
    if database.dialect != "postgresql":
        pytest.skip("PostgreSQL's lock_timeout (SQLite takes its write lock at BEGIN)")
    clinic = build_clinic(api)
    key = {"Idempotency-Key": "locked-out"}
    with database.writer.connect() as blocker:
        blocker.execute(text("LOCK TABLE idempotency_records IN SHARE MODE"))
        refused = clinic.book("consultation", clinic.at(13), headers=key)
        blocker.rollback()
    assert_problem(refused, 503, "database_unavailable")
    assert _bookings_and_records(app) == (0, [])
    made = clinic.book("consultation", clinic.at(13), headers=key)
    assert made.status_code == 201, made.get_json()
    assert "Idempotent-Replayed" not in made.headers
    assert _bookings_and_records(app)[0] == 1
