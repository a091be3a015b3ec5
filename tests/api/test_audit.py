"""The audit trail through HTTP: exactly one row per request that reads or writes patient
data (refusals included), written with the change, and readable by admins only."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from service.domain.audit import services as audit_services
from service.domain.audit.models import AuditEvent, AuditOutcome
from service.extensions import unit_of_work
from service.resources.audit import trail
from tests.api.test_consultations import reading_time
from tests.api.test_directory import assert_problem
from tests.api.test_waitlist import run_job
from tests.scenario import PHOENIX, Clinic, build_clinic

ANY = object()


def rows_after(app, after: int) -> list[AuditEvent]:
    with app.app_context(), unit_of_work() as uow:
        return list(uow.session.scalars(select(AuditEvent).where(AuditEvent.id > after)
                                        .order_by(AuditEvent.id)))


def last_row_id(app) -> int:
    with app.app_context(), unit_of_work() as uow:
        return uow.session.scalar(select(func.coalesce(func.max(AuditEvent.id), 0)))


class Walk:
    """Sends requests, and checks that each one leaves exactly one audit row."""

    def __init__(self, app, clinic: Clinic) -> None:
        self.app, self.clinic, self.api = app, clinic, clinic.api
        self.adapter = app.url_map.bind("localhost")
        self.walked: set[tuple[str, str]] = set()

    def __call__(self, method: str, path: str, *, role: str | None = "staff",
                 patient: Any = ANY, denied: str | None = None, **kwargs: Any):
        before = last_row_id(self.app)
        response = self.api.request(method, path.split("?")[0], role=role, **kwargs,
                                    **({"query_string": path.split("?")[1]}
                                       if "?" in path else {}))
        assert response.status_code < 500, (method, path, response.get_json())
        rows = rows_after(self.app, before)
        assert len(rows) == 1, (method, path, response.status_code, rows)
        row = rows[0]
        endpoint, _ = self.adapter.match(path.split("?")[0], method=method)
        resource, actions = trail.AUDITED[endpoint]
        assert row.resource_type == resource, (endpoint, row.resource_type)
        assert row.method == method
        assert row.request_id == response.headers["X-Request-Id"]
        if denied:
            assert (row.action.value, row.outcome.value) == ("denied", denied), (path, row)
        else:
            assert row.action is actions[method], (endpoint, row.action)
            assert row.outcome is not AuditOutcome.ERROR
            self.walked.add((endpoint, method))
        if patient is not ANY:
            assert row.patient_id == (uuid.UUID(patient) if patient else None), (path, row)
        if role is not None:
            assert row.key_id is not None and row.role is not None
        return response


@pytest.fixture
def clinic(api):
    scenario = build_clinic(api)
    api.bind("doc", "provider", provider_id=scenario.doctor["id"])
    api.bind("me", "patient", patient_id=scenario.patient["id"])
    return scenario


def _vitals(phase: str, **extra: Any) -> dict[str, Any]:
    return {"phase": phase, "systolic": 128, "diastolic": 82, "heart_rate": 72, "spo2": 98,
            "taken_at": reading_time(phase, extra.get("minutes_after_dose")), **extra}


def test_every_patient_data_endpoint_writes_exactly_one_audit_row_per_request(app, clinic,
                                                                            api):
    walk = Walk(app, clinic)
    me = clinic.patient["id"]
    consult = clinic.book("consultation", clinic.at(13)).get_json()
    session = clinic.book("esketamine", clinic.at(9)).get_json()
    assert api.post(f"/api/v1/bookings/{session['id']}/check-in").status_code == 200
    c, s = f"/api/v1/bookings/{consult['id']}", f"/api/v1/bookings/{session['id']}"

    # Patients
    walk("GET", "/api/v1/patients", patient=None)
    created = walk("POST", "/api/v1/patients", json={
        "first_name": "Audit", "last_name": "Walk", "birth_date": "1980-02-02",
        "timezone": "America/Phoenix"}).get_json()
    walk("GET", f"/api/v1/patients/{me}", role="me", patient=me)
    walk("PATCH", f"/api/v1/patients/{created['id']}", json={"phone": "+16025550177"},
         headers={"If-Match": '"v1"'}, patient=created["id"])
    walk("POST", f"/api/v1/patients/{created['id']}/deactivate", patient=created["id"])

    # Bookings
    walk("GET", "/api/v1/bookings", role="doc", patient=None)
    second = walk("POST", "/api/v1/bookings", patient=me, json={
        "patient_id": me, "provider_id": clinic.doctor["id"],
        "service_type_id": clinic.services["consultation"]["id"],
        "location_id": clinic.virtual["id"], "start": clinic.at(15).isoformat(),
        "patient_state": "AZ"}).get_json()
    b2 = f"/api/v1/bookings/{second['id']}"
    walk("GET", b2, role="me", patient=me)
    walk("GET", f"{b2}/instructions", role="me", patient=me)
    walk("POST", f"{b2}/reschedule", json={"start": clinic.at(15, 30).isoformat()},
         headers={"If-Match": '"v1"'}, patient=me)
    walk("POST", f"{b2}/confirm", patient=me)  # 409: already booked; still one row
    walk("POST", f"{b2}/cancel", json={"reason": "Patient request"}, patient=me)
    walk("POST", f"{b2}/no-show", patient=me)
    walk("POST", f"{c}/check-in", patient=me)  # 409: no telehealth consent yet
    walk("POST", f"{b2}/attention/resolve", role="doc", json={"reason": "Looked at it"},
         patient=me)  # 409: nothing to resolve; still one row

    # Reminders
    reminders = walk("GET", f"{c}/reminders", role="me", patient=me).get_json()
    walk("GET", "/api/v1/reminders", patient=None)
    walk("POST", f"/api/v1/reminders/{reminders[0]['id']}/retry", patient=me)
    walk("POST", "/api/v1/inbound/sms", role="integration",
         data={"From": "+16025550123", "Body": "HELLO"})

    # Series
    series_body = {"patient_id": me, "provider_id": clinic.doctor["id"],
                   "service_type_id": clinic.services["iv-infusion"]["id"],
                   "location_id": clinic.clinic["id"], "protocol": "iv-induction",
                   "first_start": clinic.at(9, day=clinic.day + timedelta(days=1)).isoformat(),
                   "ride_home_confirmed": True}
    walk("POST", "/api/v1/series/preview", json=series_body, patient=me)
    series = walk("POST", "/api/v1/series", json=series_body, patient=me).get_json()
    walk("GET", "/api/v1/series", role="me", patient=me)
    walk("GET", f"/api/v1/series/{series['id']}", patient=me)
    walk("POST", f"/api/v1/series/{series['id']}/occurrences", patient=me,
         json={"start": clinic.at(10, day=clinic.day + timedelta(days=30)).isoformat(),
               "ride_home_confirmed": True})
    walk("POST", f"/api/v1/series/{series['id']}/cancel", json={"reason": "Moved"},
         patient=me)

    # Consultation: screening, clearance, evaluations, telehealth
    walk("POST", f"{c}/screening", json={"pregnancy": False}, patient=me)
    walk("GET", f"{c}/screening", role="doc", patient=me)
    walk("PATCH", f"{c}/screening", json={"medical_history": "Reviewed."},
         headers={"If-Match": '"v1"'}, patient=me)
    decisions = f"/api/v1/patients/{me}/clearance-decisions"
    walk("POST", decisions, role="doc", json={"decision": "cleared"}, patient=me)
    walk("GET", decisions, patient=me)
    evaluations = f"/api/v1/patients/{me}/in-person-evaluations"
    walk("POST", evaluations, role="doc", patient=me, json={
        "provider_id": clinic.doctor["id"],
        "evaluated_on": datetime.now(PHOENIX).date().isoformat()})
    walk("GET", evaluations, patient=me)
    walk("GET", f"{c}/telehealth", role="me", patient=me)
    walk("POST", f"{c}/telehealth/consent", role="me", patient=me)
    walk("POST", f"{c}/telehealth/prescribing", role="doc",
         json={"controlled_substance": False}, patient=me)
    walk("POST", f"{c}/telehealth/check-in", json={"patient_state": "AZ"}, patient=me)

    # The session: vitals, hold, side effects, completion, tasks
    walk("POST", f"{s}/vitals", json=_vitals("pre", systolic=175), patient=me)
    walk("GET", f"{s}/vitals", role="me", patient=me)
    walk("GET", f"{s}/holds", patient=me)
    walk("POST", f"{s}/holds/override", role="doc", json={"reason": "Repeat 150/90"},
         patient=me)
    effect = walk("POST", f"{s}/side-effects", json={"kind": "nausea", "severity": "mild"},
                  patient=me).get_json()
    walk("GET", f"{s}/side-effects", role="doc", patient=me)
    walk("PATCH", f"{s}/side-effects/{effect['id']}", json={"resolved": True},
         headers={"If-Match": '"v1"'}, patient=me)
    walk("POST", f"{s}/vitals", json=_vitals("during", minutes_after_dose=40), patient=me)
    walk("POST", f"{s}/vitals", json=_vitals("discharge", ride_home_confirmed=True),
         patient=me)
    walk("POST", f"{s}/complete", role="doc", patient=me)
    tasks = walk("GET", "/api/v1/tasks", role="doc", patient=None).get_json()
    walk("POST", f"/api/v1/tasks/{tasks[0]['id']}/complete", patient=me)

    # Assessments and alerts
    assessments = f"/api/v1/patients/{me}/assessments"
    walk("POST", assessments, role="me", patient=me,
         json={"instrument": "PHQ-9", "answers": [1, 1, 1, 1, 1, 1, 1, 1, 1]})
    walk("GET", f"{assessments}?instrument=PHQ-9", role="doc", patient=me)
    alerts = walk("GET", "/api/v1/alerts", patient=None).get_json()
    walk("POST", f"/api/v1/alerts/{alerts[0]['id']}/acknowledge", role="doc", patient=me)

    # The waitlist: an entry, a freed slot offered to it, declined, then withdrawn
    run_job(app)
    entry = walk("POST", "/api/v1/waitlist", role="me", patient=me, json={
        "service_type_id": clinic.services["consultation"]["id"],
        "earliest_date": clinic.day.isoformat(), "latest_date": clinic.day.isoformat(),
        "patient_state": "AZ"}).get_json()
    walk("GET", "/api/v1/waitlist", patient=None)
    walk("GET", f"/api/v1/waitlist/{entry['id']}", role="me", patient=me)
    walk("POST", f"/api/v1/waitlist/{entry['id']}/move", json={"position": 1},
         headers={"If-Match": f'"v{entry["version"]}"'}, patient=me)
    other = clinic.add_patient(first_name="Freed")
    freed = clinic.book("consultation", clinic.at(16), patient=other).get_json()
    assert api.post(f"/api/v1/bookings/{freed['id']}/cancel",
                    json={"reason": "x"}).status_code == 200
    assert run_job(app).offered == 1
    [offer] = walk("GET", "/api/v1/waitlist/offers", role="me", patient=me).get_json()
    walk("GET", f"/api/v1/waitlist/offers/{offer['id']}", patient=me)
    walk("POST", f"/api/v1/waitlist/offers/{offer['id']}/decline", role="me", patient=me)
    walk("POST", f"/api/v1/waitlist/offers/{offer['id']}/accept", patient=me)  # 409
    walk("DELETE", f"/api/v1/waitlist/{entry['id']}", role="me", patient=me)

    # The trail itself (who looked at whose trail)
    walk("GET", f"/api/v1/audit?patient_id={me}", role="admin", patient=me)

    # (the FHIR facade, calendar tokens and feeds, the changes feed, webhook deliveries,
    # slots and API keys are walked in test_audit_coverage.py)
    elsewhere = {"fhir", "calendar", "sync", "webhooks", "slots", "access"}
    expected = {(endpoint, method) for endpoint, (_, actions) in trail.AUDITED.items()
                for method in actions if endpoint.split(".")[0] not in elsewhere}
    assert expected - walk.walked == set()


def test_a_refused_request_leaves_one_denied_row(app, clinic, api):
    walk = Walk(app, clinic)
    other = clinic.add_cleared_patient(first_name="Other")
    theirs = clinic.book("iv-infusion", clinic.at(9), patient=other).get_json()
    mine = clinic.book("consultation", clinic.at(14)).get_json()
    # 403: the role may not; 404: someone else's record (recorded as denied, with whose).
    walk("GET", f"/api/v1/bookings/{mine['id']}/side-effects", role="me", denied="forbidden",
         patient=clinic.patient["id"])
    walk("GET", f"/api/v1/bookings/{theirs['id']}/vitals", role="me", denied="not_visible",
         patient=other["id"])
    walk("GET", f"/api/v1/patients/{other['id']}/assessments", role="me",
         denied="not_visible", patient=other["id"])
    walk("POST", "/api/v1/bookings", role="me", denied="not_visible", patient=other["id"],
         json={"patient_id": other["id"], "provider_id": clinic.doctor["id"],
               "service_type_id": clinic.services["consultation"]["id"],
               "location_id": clinic.virtual["id"], "start": clinic.at(16).isoformat(),
               "patient_state": "AZ"})
    walk("GET", f"/api/v1/patients/{clinic.patient['id']}", role=None,
         denied="unauthenticated")
    # A record that does not exist at all is "not found", not a denial.
    before = last_row_id(app)
    assert_problem(api.get(f"/api/v1/bookings/{uuid.uuid4()}/vitals"), 404,
                   "booking_not_found")
    [row] = rows_after(app, before)
    assert (row.action.value, row.outcome.value) == ("read", "not_found")


def test_a_rolled_back_change_leaves_a_failed_row_not_a_success_one(app, clinic, api):
    assert clinic.book("consultation", clinic.at(14)).status_code == 201
    other = clinic.add_patient(first_name="Other")
    before = last_row_id(app)
    assert_problem(clinic.book("consultation", clinic.at(14), patient=other), 409,
                   "slot_unavailable")
    [row] = rows_after(app, before)
    assert (row.action.value, row.outcome.value) == ("create", "failed")
    assert row.patient_id == uuid.UUID(other["id"])


def test_the_row_of_a_change_commits_with_it(app, clinic, api, monkeypatch):
    original = audit_services.build_event

    def broken(session, context, outcome, **kwargs):
        if outcome is AuditOutcome.SUCCESS:
            raise RuntimeError("audit row cannot be built")
        return original(session, context, outcome, **kwargs)

    monkeypatch.setattr(audit_services, "build_event", broken)
    before = last_row_id(app)
    response = clinic.book("consultation", clinic.at(14))
    assert response.status_code == 500
    monkeypatch.setattr(audit_services, "build_event", original)
    assert [r.outcome.value for r in rows_after(app, before)] == ["error"]
    assert api.get("/api/v1/bookings").get_json() == []  # no row, no change


def test_an_answer_whose_row_cannot_be_written_is_withheld(app, clinic, api, monkeypatch):
    def unavailable(*args, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(audit_services, "write", unavailable)  # every path writes with it
    response = api.get(f"/api/v1/patients/{clinic.patient['id']}")
    assert_problem(response, 503, "service_unavailable")
    assert "Robin" not in response.get_data(as_text=True)


def test_a_replayed_post_is_one_replayed_row(app, clinic):
    key = {"Idempotency-Key": "audit-replay-1"}
    assert clinic.book("consultation", clinic.at(14), headers=key).status_code == 201
    before = last_row_id(app)
    again = clinic.book("consultation", clinic.at(14), headers=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    [row] = rows_after(app, before)
    assert (row.action.value, row.outcome.value) == ("create", "replayed")


def test_endpoints_without_patient_data_are_not_audited(app, clinic, api):
    before = last_row_id(app)
    api.get("/api/v1/providers")
    api.get("/api/v1/locations")
    api.get("/api/v1/protocols")
    assert rows_after(app, before) == []


def test_the_audit_table_names_only_existing_endpoints(app):
    assert set(trail.AUDITED) <= set(app.view_functions)


def test_audit_is_for_admins_filterable_by_patient_and_time_and_paginated(app, clinic, api):
    other = clinic.add_patient(first_name="Other")
    start = datetime.now().astimezone().isoformat()
    for _ in range(3):
        api.get(f"/api/v1/patients/{clinic.patient['id']}")
    api.get(f"/api/v1/patients/{other['id']}")
    assert_problem(api.get("/api/v1/audit"), 403, "forbidden")
    assert_problem(api.get("/api/v1/audit", role="doc"), 403, "forbidden")
    mine = api.get("/api/v1/audit", role="admin",
                   query_string={"patient_id": clinic.patient["id"], "since": start,
                                 "page_size": 2})
    assert mine.status_code == 200
    assert len(mine.get_json()) == 2 and '"total": 3' in mine.headers["X-Pagination"]
    row = mine.get_json()[0]
    assert set(row) == {"id", "occurred_at", "key_id", "role", "action", "resource_type",
                        "resource_id", "patient_id", "outcome", "method", "request_id",
                        "client_address"}
    assert (row["action"], row["resource_type"], row["resource_id"], row["outcome"]) == (
        "read", "patient", clinic.patient["id"], "success")
    future = (datetime.now().astimezone() + timedelta(hours=1)).isoformat()
    assert api.get("/api/v1/audit", role="admin", query_string={"since": future}
                   ).get_json() == []
    assert_problem(api.get("/api/v1/audit", role="admin", query_string={
        "since": future, "until": datetime.now().astimezone().isoformat()}), 422,
        "invalid_time_range")


def test_audit_rows_carry_no_clinical_values_or_names(app, clinic, api):
    booking = clinic.book("iv-infusion", clinic.at(9)).get_json()
    api.post(f"/api/v1/bookings/{booking['id']}/check-in")
    api.post(f"/api/v1/bookings/{booking['id']}/vitals", json=_vitals("pre", systolic=187))
    rows = api.get("/api/v1/audit", role="admin").get_json()
    assert rows
    identifiers = {"id", "key_id", "resource_id", "patient_id", "request_id", "occurred_at"}
    for row in rows:
        text_values = [str(v) for k, v in row.items() if k not in identifiers]
        # (ids and timestamps may contain "187" by chance; no other field may carry it)
        assert not any("187" in v for v in text_values), row
        assert not any(name in str(v) for v in row.values() for name in ("Robin", "Test"))


def test_audit_rows_are_append_only(app, clinic, api):
    api.get(f"/api/v1/patients/{clinic.patient['id']}")
    engine = app.extensions["clinic.database"].writer
    with pytest.raises(Exception, match="append-only"), engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET outcome = 'success'"))
