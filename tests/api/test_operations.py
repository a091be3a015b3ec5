"""Metrics (``GET /metrics``) and structured logs: what an operator sees, and no PHI in it."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.config import Settings
from service.domain.access import services as keys
from service.domain.access.actor import Role
from service.domain.consultations.models import Alert, AlertKind
from service.extensions import unit_of_work
from service.logs import JsonFormatter
from service.metrics import POOL_WAITS, instrument_database
from tests.scenario import build_clinic


def scrape(api) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], str]:
    response = api.get("/metrics", role="admin")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = response.get_data(as_text=True)
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, text


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_an_admin_key(api):
    assert api.get("/metrics", role=None).status_code == 401
    refused = api.get("/metrics", role="staff")
    assert refused.status_code == 403
    assert refused.get_json()["code"] == "forbidden"
    assert api.get("/metrics", role="admin").status_code == 200


def test_requests_bookings_slot_searches_and_outboxes_are_counted_without_phi(api):
    clinic = build_clinic(api)
    before, _ = scrape(api)
    slots = clinic.slots("consultation")
    start = clinic.at(13, 0)
    assert any(slot["start"] == start.isoformat() for slot in slots) or slots
    first = clinic.book("consultation", start, headers={"Idempotency-Key": "ops-1"})
    assert first.status_code == 201, first.get_json()
    replay = clinic.book("consultation", start, headers={"Idempotency-Key": "ops-1"})
    assert replay.headers.get("Idempotent-Replayed") == "true"
    other = clinic.add_cleared_patient(first_name="Sam")
    taken = clinic.book("consultation", start, patient=other)
    assert taken.status_code == 409
    code = taken.get_json()["code"]
    with api.app.app_context():
        uow = unit_of_work()
        with uow:
            uow.session.add(Alert(patient_id=uuid.UUID(other["id"]),
                                  kind=AlertKind.VITALS_OUT_OF_RANGE, urgent=True))
            uow.commit()
    after, text = scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("clinic_booking_requests_total", outcome="created", code="") == 1
    assert delta("clinic_booking_requests_total", outcome="replayed", code="") == 1
    assert delta("clinic_booking_requests_total", outcome="conflict", code=code) == 1
    assert delta("clinic_slot_search_duration_seconds_count", api="rest") == 1
    assert delta("clinic_http_requests_total", route="/api/v1/bookings", method="POST",
                 status="201") >= 2  # the booking and its replay
    assert delta("clinic_http_request_duration_seconds_count", route="/api/v1/slots",
                 method="GET") == 1
    # Patients are created through a route template, never their own path.
    assert delta("clinic_http_requests_total", route="/api/v1/patients/<uuid:patient_id>",
                 method="GET", status="200") >= 0
    assert value(after, "clinic_outbox_depth", outbox="reminders") >= 1  # the confirmation
    assert value(after, "clinic_outbox_oldest_due_age_seconds", outbox="reminders") >= 0
    assert value(after, "clinic_outbox_depth", outbox="webhooks") == 0
    assert value(after, "clinic_alerts_open", kind="vitals_out_of_range", urgent="true") == 1
    assert value(after, "clinic_metrics_database_up") == 1
    assert ("clinic_db_pool_connections_in_use", (("engine", "writer"),)) in after
    # No identifier, name or contact detail of a patient anywhere in the exposition.
    for patient in (clinic.patient, other):
        for field in ("id", "first_name", "last_name", "email", "phone"):
            if patient.get(field):
                assert str(patient[field]) not in text, field
    assert first.get_json()["id"] not in text


def test_pool_waits_are_counted_when_the_pool_is_exhausted(app):
    database = app.extensions["clinic.database"]
    instrument_database(database)  # idempotent: the app did it already
    pool = database.writer.pool
    held = [database.writer.connect() for _ in range(pool.size() + pool._max_overflow)]
    try:
        before = POOL_WAITS.labels("writer")._value.get()
        with pytest.raises(Exception):  # noqa: B017 - the pool's timeout error
            database.writer.connect().close()
        assert POOL_WAITS.labels("writer")._value.get() == before + 1
    finally:
        for connection in held:
            connection.close()


def test_json_logs_one_line_per_request_with_no_phi(app, monkeypatch, caplog):
    monkeypatch.setenv("LOG_FORMAT", "json")
    json_app = create_app({"DATABASE_URL": app.config["DATABASE_URL"], "TESTING": True,
                           "RATELIMIT_ENABLED": False})
    assert json_app.config["SETTINGS"].log_format == "json"
    with json_app.app_context():
        token = keys.issue_key(unit_of_work(), role=Role.STAFF, label="json logs").key
    client = json_app.test_client()
    with caplog.at_level(logging.INFO, logger="service.requests"):
        answer = client.get("/api/v1/providers?name=Zebulon", headers={
            "Authorization": f"Bearer {token}", "X-Request-Id": "trace-42"})
        client.get("/api/v1/nothing-here")
    assert answer.status_code == 200
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "service.requests"]
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["request_id"] == "trace-42"
    assert first["route"] == "/api/v1/providers" and first["method"] == "GET"
    assert first["status"] == 200 and first["duration_ms"] >= 0
    assert first["role"] == "staff" and first["key"] == token.split("_")[2]
    assert token.split("_", 3)[3] not in lines[0]  # never the secret
    assert "Zebulon" not in lines[0]  # never the query
    assert second["status"] == 401 and second["route"] == "<unmatched>"
    assert second["code"] == "unauthenticated"
    json_app.extensions["clinic.database"].dispose()


def test_log_format_is_text_or_json():
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})


def test_scheduler_job_lines_carry_the_job():
    record = logging.LogRecord("service.domain.outbox", logging.INFO, __file__, 1,
                               "reminders: sent 2", None, None)
    record.job, record.outcome = "reminders", {"sent": 2}
    line = json.loads(JsonFormatter().format(record))
    assert line["job"] == "reminders" and line["outcome"] == {"sent": 2}
    assert line["message"] == "reminders: sent 2"
