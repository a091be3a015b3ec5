"""Every route that can return or change patient data leaves exactly one audit row.

The tests walk ``app.url_map`` (every rule, every method). A route is audited unless the
list below says it cannot return or change patient data, and says why: a route added later
is audited by default, and moving it out of the audit (``trail.NOT_PATIENT_DATA``) fails
here until it is listed below too. Then every audited route is called, without a key and
with a patient's key on another patient's records, and must leave exactly one row; the
routes audited last (FHIR, calendar tokens and feeds, the changes feed, webhook deliveries,
slots) are also called successfully. Last, ``X-Request-Id`` is stored only when it is a
plain identifier.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from flask import Blueprint
from sqlalchemy import select
from werkzeug.routing import Rule

from service.app import create_app
from service.auth import SAFE_REQUEST_ID
from service.domain.audit import services as audit_services
from service.domain.audit.models import AuditEvent, AuditOutcome
from service.domain.calendar.models import CalendarFeedToken
from service.extensions import unit_of_work
from service.resources.audit import trail
from tests.api.test_audit import last_row_id, rows_after
from tests.api.test_consultations import reading_time
from tests.api.test_directory import assert_problem
from tests.api.test_waitlist import run_job
from tests.factories import Api
from tests.scenario import Clinic, build_clinic

# Routes that can neither return nor change patient data, by rule and method (HEAD goes
# with GET). OPTIONS, Flask's automatic answer (an Allow header), is never audited.
NOT_PATIENT_DATA: dict[str, set[str]] = {
    # Documentation: the Swagger UI page and its assets, the OpenAPI document, the problem
    # type pages (one per error code), the home page that points to them.
    "/": {"GET"},
    "/docs": {"GET"},
    "/docs/assets/<path:filename>": {"GET"},
    "/openapi.json": {"GET"},
    "/problems/<code>": {"GET"},
    # Liveness and readiness probes.
    "/healthz": {"GET"},
    "/readyz": {"GET"},
    # The service's own metrics (counts and durations by route template; admin key).
    "/metrics": {"GET"},
    # The clinic's directory: providers, their licenses, hours and time off.
    "/api/v1/providers": {"GET", "POST"},
    "/api/v1/providers/<uuid:provider_id>": {"GET", "PATCH"},
    "/api/v1/providers/<uuid:provider_id>/deactivate": {"POST"},
    "/api/v1/providers/<uuid:provider_id>/licenses": {"GET", "POST"},
    "/api/v1/providers/<uuid:provider_id>/licenses/<uuid:license_id>": {"GET", "PATCH"},
    "/api/v1/licenses/expiring": {"GET"},
    "/api/v1/providers/<uuid:provider_id>/availability": {"GET", "PUT"},
    "/api/v1/providers/<uuid:provider_id>/time-off": {"GET", "POST"},
    "/api/v1/providers/<uuid:provider_id>/time-off/<uuid:time_off_id>": {"GET", "DELETE"},
    # ... locations, service types and treatment protocols.
    "/api/v1/locations": {"GET", "POST"},
    "/api/v1/locations/<uuid:location_id>": {"GET", "PATCH"},
    "/api/v1/locations/<uuid:location_id>/deactivate": {"POST"},
    "/api/v1/service-types": {"GET", "POST"},
    "/api/v1/service-types/<uuid:service_type_id>": {"GET", "PATCH"},
    "/api/v1/service-types/<uuid:service_type_id>/deactivate": {"POST"},
    "/api/v1/protocols": {"GET"},
    # The on-call rota: clinic staff's names and work addresses.
    "/api/v1/on-call-contacts": {"GET", "POST"},
    "/api/v1/on-call-contacts/<uuid:contact_id>": {"GET", "PATCH"},
    "/api/v1/on-call-contacts/<uuid:contact_id>/deactivate": {"POST"},
    # FHIR Practitioner and Schedule: the same directory of providers.
    "/fhir/R4/Practitioner": {"GET"},
    "/fhir/R4/Practitioner/<uuid:practitioner_id>": {"GET"},
    "/fhir/R4/Schedule": {"GET"},
    "/fhir/R4/Schedule/<uuid:schedule_id>": {"GET"},
    # FHIR Location (the clinic's sites), and the CapabilityStatement (what the server
    # serves; no key needed).
    "/fhir/R4/Location": {"GET"},
    "/fhir/R4/Location/<uuid:location_id>": {"GET"},
    "/fhir/R4/metadata": {"GET"},
    # The staff day board's page and its static files: no data until the browser calls the
    # API with a key (those calls are audited like any other).
    "/board": {"GET"},
    "/board/static/<path:filename>": {"GET"},
    # Any other FHIR path or method: always an OperationOutcome 404 or 405.
    "/fhir/R4/<path:rest>": {"GET", "POST", "PUT", "PATCH", "DELETE"},
    # A provider's own calendar feed tokens: label and dates (their feed is audited).
    "/api/v1/providers/<uuid:provider_id>/calendar-tokens": {"GET", "POST"},
    "/api/v1/providers/<uuid:provider_id>/calendar-tokens/<uuid:token_id>": {"DELETE"},
    # Webhook subscriptions (target URL, events) and their delivery log (event types,
    # statuses and attempt times; the payload, which names a booking, is only on a
    # delivery's own page, which is audited).
    "/api/v1/webhooks": {"GET", "POST"},
    "/api/v1/webhooks/<uuid:webhook_id>": {"GET", "PATCH", "DELETE"},
    "/api/v1/webhooks/<uuid:webhook_id>/deliveries": {"GET"},
    # The event catalogue (types and schemas) and a secret rotation: no patient data.
    "/api/v1/webhooks/events": {"GET"},
    "/api/v1/webhooks/<uuid:webhook_id>/rotate-secret": {"POST"},
    # Connected calendars: a provider's busy intervals and their sources' freshness, never
    # a title, an attendee or a patient.
    "/api/v1/providers/<uuid:provider_id>/calendar-connections": {"GET", "POST"},
    "/api/v1/providers/<uuid:provider_id>/calendar-connections/<uuid:connection_id>": {
        "GET", "PATCH", "DELETE"},
    "/api/v1/providers/<uuid:provider_id>/calendar-connections/<uuid:connection_id>/busy": {
        "PUT"},
    "/api/v1/providers/<uuid:provider_id>/calendar-connections/<uuid:connection_id>/sync": {
        "POST"},
    "/api/v1/calendar-connections": {"GET"},
}

# Audited only when a patient is concerned (a patient_id asked for, or a patient's key):
# the free slots then leave out the patient's own visits and follow their eligibility.
ONLY_FOR_A_PATIENT: dict[str, set[str]] = {
    "/api/v1/slots": {"GET"},
    "/fhir/R4/Slot": {"GET"},
}

FEED = "/api/v1/calendars/<string:token>.ics"
HOOK = "https://ehr.example.com/hooks/clinic"


def routes(app) -> list[tuple[Rule, str]]:
    """Every (rule, method) of the app, OPTIONS aside."""
    return sorted(((rule, method) for rule in app.url_map.iter_rules()
                   for method in rule.methods - {"OPTIONS"}),
                  key=lambda item: (item[0].rule, item[1]))


def path_of(rule: Rule, ids: dict[str, Any] | None = None) -> str:
    """The rule's path with each parameter filled: ``ids`` where given, else a fresh uuid
    (or a word, for a non-uuid parameter)."""
    values = {}
    for name in rule.arguments:
        if ids and name in ids:
            values[name] = ids[name]
        elif f"<uuid:{name}>" in rule.rule:
            values[name] = uuid.uuid4()
        else:
            values[name] = "x"
    return rule.map.bind("localhost").build(rule.endpoint, values)


def calls(app, api, method: str, path: str, **kwargs: Any) -> tuple[Any, list[AuditEvent]]:
    before = last_row_id(app)
    response = api.request(method, path, **kwargs)
    assert response.status_code < 500, (method, path, response.get_data(as_text=True))
    return response, rows_after(app, before)


def one_row(app, api, method: str, path: str, **kwargs: Any) -> tuple[Any, AuditEvent]:
    response, rows = calls(app, api, method, path, **kwargs)
    assert len(rows) == 1, (method, path, response.status_code, rows)
    row = rows[0]
    assert row.request_id == response.headers["X-Request-Id"]
    assert row.method == method
    return response, row


def is_(row: AuditEvent, action: str, outcome: str, *, resource: str | None = None,
        patient: Any = ..., resource_id: Any = ...) -> None:
    assert (row.action.value, row.outcome.value) == (action, outcome), row.__dict__
    if resource is not None:
        assert row.resource_type == resource, row.__dict__
    if patient is not ...:
        assert row.patient_id == (uuid.UUID(str(patient)) if patient else None), row.__dict__
    if resource_id is not ...:
        assert row.resource_id == (str(resource_id) if resource_id else None), row.__dict__


# The map -----------------------------------------------------------------------------------


def test_every_route_is_audited_unless_listed_as_holding_no_patient_data(app):
    seen: set[tuple[str, str]] = set()
    unclassified = []
    for rule, method in routes(app):
        listed_method = "GET" if method == "HEAD" else method
        seen.add((rule.rule, listed_method))
        classified = trail.classify(rule.endpoint, method)
        if listed_method in NOT_PATIENT_DATA.get(rule.rule, ()):
            assert classified is None, (f"{method} {rule.rule} is listed as holding no "
                                        "patient data but the trail audits it")
        elif classified is None:
            unclassified.append(f"{method} {rule.rule} ({rule.endpoint})")
        conditional = rule.endpoint in trail.ONLY_FOR_A_PATIENT
        assert conditional == (listed_method in ONLY_FOR_A_PATIENT.get(rule.rule, ())), rule
    assert unclassified == [], ("routes that may return or change patient data but are not "
                                "audited", unclassified)
    listed = {(rule, method) for rule, methods in NOT_PATIENT_DATA.items()
              for method in methods}
    assert listed - seen == set(), "listed routes that no longer exist"
    assert set(trail.AUDITED) <= set(app.view_functions)
    assert trail.NOT_PATIENT_DATA <= set(app.view_functions)


def test_a_new_route_is_audited_by_default(database_url, api, clinic):
    """A route nobody classified yet (here: an export added to a fresh app) is recorded."""
    application = create_app({"DATABASE_URL": database_url, "TESTING": True})
    extra = Blueprint("reports", __name__, url_prefix="/api/v1")

    @extra.get("/patients/<uuid:patient_id>/export")
    def patient_export(patient_id: uuid.UUID):
        return {"patient_id": str(patient_id)}

    application.register_blueprint(extra)
    try:
        other = Api(app=application, client=application.test_client(), tokens=api.tokens)
        me = clinic.patient["id"]
        path = f"/api/v1/patients/{me}/export"
        _, row = one_row(application, other, "GET", path)
        is_(row, "read", "success", resource="reports", patient=me, resource_id=me)
        _, row = one_row(application, other, "GET", path, role=None)
        is_(row, "denied", "unauthenticated", resource="reports", patient=me)
        assert trail.classify("reports.patient_export", "GET") == ("reports", trail.READ)
    finally:
        application.extensions["clinic.database"].dispose()


def test_classify_defaults_to_audited():
    assert trail.classify("reports.PatientExport", "GET") == ("reports", trail.READ)
    assert trail.classify("reports.PatientExport", "POST") == ("reports", trail.CREATE)
    assert trail.classify("reports.PatientExport", "HEAD") == ("reports", trail.READ)
    # a method added later to an audited route takes the action its method implies
    assert trail.classify("bookings.BookingById", "DELETE") == ("booking", trail.DELETE)
    assert trail.classify("providers.providers_collection", "GET") is None
    assert trail.classify("bookings.BookingById", "OPTIONS") is None


def test_every_audited_route_leaves_one_denied_row_without_a_key(app, api):
    for rule, method in routes(app):
        path = path_of(rule)
        classified = trail.classify(rule.endpoint, method)
        response, rows = calls(app, api, method, path, role=None)
        if classified is None or rule.endpoint in trail.ONLY_FOR_A_PATIENT:
            assert rows == [], (method, path, rows)
            continue
        assert len(rows) == 1, (method, path, response.status_code, rows)
        [row] = rows
        assert (row.resource_type, row.method, row.key_id, row.role) == (
            classified[0], method, None, None), row.__dict__
        assert row.request_id == response.headers["X-Request-Id"]
        if rule.rule == FEED:  # the token in the path is the credential: an unknown one
            assert response.status_code == 404
            is_(row, "read", "not_found", patient=None, resource_id=None)
        else:
            assert response.status_code == 401, (method, path)
            is_(row, "denied", "unauthenticated")
    # The conditional ones, once a patient is named:
    other = uuid.uuid4()
    _, row = one_row(app, api, "GET", f"/api/v1/slots?patient_id={other}", role=None)
    is_(row, "denied", "unauthenticated", resource="slot", patient=other)


# A patient asking for another patient's records ----------------------------------------


def _vitals(phase: str, **extra: Any) -> dict[str, Any]:
    return {"phase": phase, "systolic": 128, "diastolic": 82, "heart_rate": 72, "spo2": 98,
            "taken_at": reading_time(phase, extra.get("minutes_after_dose")), **extra}


def _ok(response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json() if response.is_json else {}


@pytest.fixture
def clinic(api) -> Clinic:
    scenario = build_clinic(api)
    api.bind("doc", "provider", provider_id=scenario.doctor["id"])
    api.bind("me", "patient", patient_id=scenario.patient["id"])
    return scenario


@pytest.fixture
def others(clinic: Clinic, api) -> dict[str, Any]:
    """Another patient's records, one of each kind a path can name, and a webhook that
    received their bookings' events."""
    hook = _ok(api.post("/api/v1/webhooks", role="integration", json={
        "url": HOOK, "events": ["booking.created", "series.created"]}), 201)
    other = clinic.add_cleared_patient(first_name="Other", rems_enrolled=True)
    session = _ok(clinic.book("esketamine", clinic.at(9), patient=other), 201)
    s = f"/api/v1/bookings/{session['id']}"
    _ok(api.post(f"{s}/check-in"))
    _ok(api.post(f"{s}/vitals", json=_vitals("pre")), 201)
    effect = _ok(api.post(f"{s}/side-effects", json={"kind": "nausea", "severity": "mild"}),
                 201)
    _ok(api.post(f"{s}/vitals", json=_vitals("during", minutes_after_dose=40)), 201)
    _ok(api.post(f"{s}/vitals", json=_vitals("discharge", ride_home_confirmed=True)), 201)
    _ok(api.post(f"{s}/complete", role="doc"))
    [task] = _ok(api.get("/api/v1/tasks"))
    series = _ok(api.post("/api/v1/series", json={
        "patient_id": other["id"], "provider_id": clinic.doctor["id"],
        "service_type_id": clinic.services["iv-infusion"]["id"],
        "location_id": clinic.clinic["id"], "protocol": "iv-induction",
        "first_start": clinic.at(9, day=clinic.day + timedelta(days=1)).isoformat(),
        "ride_home_confirmed": True}), 201)
    reminders = _ok(api.get(f"{s}/reminders"))
    _ok(api.post(f"/api/v1/patients/{other['id']}/assessments",
                 json={"instrument": "PHQ-9", "answers": [0, 0, 0, 0, 0, 0, 0, 0, 1]}), 201)
    [alert] = _ok(api.get("/api/v1/alerts"))
    token = _ok(api.post(f"/api/v1/patients/{other['id']}/calendar-tokens",
                         json={"label": "phone"}), 201)
    deliveries = _ok(api.get(f"/api/v1/webhooks/{hook['id']}/deliveries", role="integration",
                             query_string={"event_type": "booking.created"}))
    # A waitlist entry of theirs, and an offer of a freed slot to them.
    run_job(api.app)
    entry = _ok(api.post("/api/v1/waitlist", json={
        "patient_id": other["id"], "service_type_id": clinic.services["consultation"]["id"],
        "earliest_date": clinic.day.isoformat(), "latest_date": clinic.day.isoformat(),
        "patient_state": "AZ"}), 201)
    freed = _ok(clinic.book("consultation", clinic.at(16),
                            patient=clinic.add_patient(first_name="Freed")), 201)
    _ok(api.post(f"/api/v1/bookings/{freed['id']}/cancel", json={"reason": "x"}))
    assert run_job(api.app).offered == 1
    [offer] = _ok(api.get("/api/v1/waitlist/offers"))
    return {"patient": other, "session": session, "series": series, "token": token,
            "hook": hook, "ids": {
                "patient_id": other["id"], "booking_id": session["id"],
                "appointment_id": session["id"], "side_effect_id": effect["id"],
                "series_id": series["id"], "reminder_id": reminders[0]["id"],
                "alert_id": alert["id"], "task_id": task["id"], "token_id": token["id"],
                "webhook_id": hook["id"], "delivery_id": deliveries[-1]["id"],
                "entry_id": entry["id"], "offer_id": offer["id"]}}


def test_a_patient_asking_for_another_patients_records_leaves_one_row_naming_them(
        app, api, clinic, others):
    other = others["patient"]["id"]
    outcomes: dict[str, int] = {}
    for rule, method in routes(app):
        classified = trail.classify(rule.endpoint, method)
        if method == "HEAD" or rule.rule == FEED or classified is None:
            continue  # HEAD: walked without a key above; the feed takes no key
        kwargs: dict[str, Any] = {}
        if method in ("POST", "PUT", "PATCH"):
            kwargs = {"json": {}, "headers": {"If-Match": '"v1"'}}
        path = path_of(rule, others["ids"])
        response, row = one_row(app, api, method, path, role="me", **kwargs)
        assert row.resource_type == classified[0]
        if not set(rule.arguments) & set(others["ids"]):
            continue  # a collection: the patient's own (or nobody's) records
        # The path names the other patient's records: never answered, always theirs.
        assert response.status_code >= 400, (method, path, response.get_json())
        assert row.patient_id == uuid.UUID(other), (method, path, row.__dict__)
        if response.status_code in (401, 403, 404):
            assert row.action.value == "denied", (method, path, row.__dict__)
            assert row.outcome in (AuditOutcome.FORBIDDEN, AuditOutcome.NOT_VISIBLE)
        else:  # the body was refused before the record was looked up (e.g. 422)
            is_(row, classified[1].value, "failed")
        outcomes[row.outcome.value] = outcomes.get(row.outcome.value, 0) + 1
    assert outcomes.get("not_visible", 0) >= 10 and outcomes.get("forbidden", 0) >= 5, outcomes


# The routes audited last, called successfully ----------------------------------------------


def test_fhir_appointments_are_audited_read_and_refused(app, api, clinic, others):
    me, other = clinic.patient["id"], others["patient"]["id"]
    mine = _ok(clinic.book("consultation", clinic.at(14)), 201)
    theirs = others["session"]["id"]

    response, row = one_row(app, api, "GET", f"/fhir/R4/Appointment?patient=Patient/{me}",
                            role="me")
    assert response.get_json()["total"] == 1
    is_(row, "read", "success", resource="appointment", patient=me, resource_id=None)
    _, row = one_row(app, api, "GET", f"/fhir/R4/Appointment/{mine['id']}", role="me")
    is_(row, "read", "success", resource="appointment", patient=me, resource_id=mine["id"])
    _, row = one_row(app, api, "HEAD", f"/fhir/R4/Appointment/{theirs}", role="doc")
    is_(row, "read", "success", patient=other, resource_id=theirs)

    # Someone else's appointment: a 404 OperationOutcome, recorded as denied, with whose.
    response, row = one_row(app, api, "GET", f"/fhir/R4/Appointment/{theirs}", role="me")
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"
    is_(row, "denied", "not_visible", patient=other, resource_id=theirs)
    # ... asking for their appointments answers none, and the row says whose were asked for
    response, row = one_row(app, api, "GET", f"/fhir/R4/Appointment?patient={other}",
                            role="me")
    assert response.get_json()["total"] == 0
    is_(row, "read", "success", patient=other)
    # ... no key at all; an appointment that does not exist (not a denial)
    response, row = one_row(app, api, "GET", f"/fhir/R4/Appointment/{theirs}", role=None)
    is_(row, "denied", "unauthenticated", patient=other, resource_id=theirs)
    response, row = one_row(app, api, "GET", f"/fhir/R4/Appointment/{uuid.uuid4()}")
    is_(row, "read", "not_found", patient=None)
    response, row = one_row(app, api, "GET", "/fhir/R4/Appointment?date=banana", role="me")
    assert response.status_code == 400
    is_(row, "read", "failed", patient=me)

    # FHIR Slot: a patient's search leaves out their own visits (audited); staff's does not.
    _, row = one_row(app, api, "GET", "/fhir/R4/Slot", role="me")
    is_(row, "read", "success", resource="slot", patient=me)
    response, rows = calls(app, api, "GET", "/fhir/R4/Slot")
    assert response.status_code == 200 and rows == []


def test_fhir_patients_are_audited_read_and_refused(app, api, clinic, others):
    me, other = clinic.patient["id"], others["patient"]["id"]
    response, row = one_row(app, api, "GET", f"/fhir/R4/Patient/{me}", role="me")
    assert response.get_json()["id"] == me
    is_(row, "read", "success", resource="patient", patient=me, resource_id=me)
    _, row = one_row(app, api, "GET", f"/fhir/R4/Patient/{other}", role="doc")
    is_(row, "read", "success", patient=other, resource_id=other)
    response, row = one_row(app, api, "GET", f"/fhir/R4/Patient/{other}", role="me")
    assert response.status_code == 404
    is_(row, "denied", "not_visible", resource="patient", patient=other, resource_id=other)
    response, row = one_row(app, api, "GET", "/fhir/R4/Patient", role="me")
    assert response.get_json()["total"] == 1
    is_(row, "read", "success", resource="patient", patient=me, resource_id=None)
    _, row = one_row(app, api, "GET", "/fhir/R4/Patient?name=Other")
    is_(row, "read", "success", resource="patient", patient=None)
    _, row = one_row(app, api, "GET", f"/fhir/R4/Patient/{me}", role=None)
    is_(row, "denied", "unauthenticated", patient=me)
    # Location and the CapabilityStatement hold no patient data.
    _, rows = calls(app, api, "GET", f"/fhir/R4/Location/{clinic.clinic['id']}")
    assert rows == []
    _, rows = calls(app, api, "GET", "/fhir/R4/metadata", role=None)
    assert rows == []


def test_api_keys_and_me_are_audited(app, api, clinic):
    me = clinic.patient["id"]
    response, row = one_row(app, api, "POST", "/api/v1/api-keys", json={
        "role": "patient", "patient_id": me, "label": "portal"},
        headers={"Idempotency-Key": "portal-key-1"})
    created = _ok(response, 201)
    is_(row, "create", "success", resource="api_key", patient=me, resource_id=created["id"])
    assert created["key"] not in str(row.__dict__)
    response, row = one_row(app, api, "POST", "/api/v1/api-keys", json={
        "role": "patient", "patient_id": me, "label": "portal"},
        headers={"Idempotency-Key": "portal-key-1"})
    assert response.headers["Idempotent-Replayed"] == "true"
    is_(row, "create", "replayed", resource="api_key", patient=me)
    _, row = one_row(app, api, "POST", "/api/v1/api-keys", json={"role": "staff",
                                                                 "label": "desk"})
    is_(row, "denied", "forbidden", resource="api_key", patient=None)
    _, row = one_row(app, api, "GET", "/api/v1/api-keys")
    is_(row, "read", "success", resource="api_key", patient=None, resource_id=None)
    _, row = one_row(app, api, "GET", f"/api/v1/api-keys?patient_id={me}")
    is_(row, "read", "success", patient=me)
    _, row = one_row(app, api, "GET", f"/api/v1/api-keys/{created['id']}")
    is_(row, "read", "success", patient=me, resource_id=created["id"])
    _, row = one_row(app, api, "GET", "/api/v1/me", role="me")
    is_(row, "read", "success", resource="api_key", patient=me)
    _, row = one_row(app, api, "GET", "/api/v1/me", role="integration")
    is_(row, "read", "success", resource="api_key", patient=None)
    _, row = one_row(app, api, "DELETE", f"/api/v1/api-keys/{created['id']}")
    is_(row, "delete", "success", patient=me, resource_id=created["id"])
    # Staff asking for an admin's key: not theirs to see.
    admin = _ok(api.post("/api/v1/api-keys", role="admin",
                         json={"role": "admin", "label": "ops"}), 201)
    response, row = one_row(app, api, "GET", f"/api/v1/api-keys/{admin['id']}")
    assert response.status_code == 404
    is_(row, "denied", "not_visible", resource="api_key", patient=None,
        resource_id=admin["id"])


def test_slot_searches_are_audited_when_they_concern_a_patient(app, api, clinic):
    me = clinic.patient["id"]
    query = {"service_type": clinic.services["consultation"]["id"],
             "start": clinic.day.isoformat(), "end": clinic.day.isoformat()}
    response, rows = calls(app, api, "GET", "/api/v1/slots", query_string=query)
    assert response.status_code == 200 and rows == []
    _, row = one_row(app, api, "GET", "/api/v1/slots",
                     query_string={**query, "patient_id": me})
    is_(row, "read", "success", resource="slot", patient=me)
    _, row = one_row(app, api, "GET", "/api/v1/slots", query_string=query, role="me")
    is_(row, "read", "success", resource="slot", patient=me)
    other = clinic.add_patient(first_name="Other")
    _, row = one_row(app, api, "GET", "/api/v1/slots",
                     query_string={**query, "patient_id": other["id"]}, role="doc")
    is_(row, "denied", "not_visible", patient=other["id"])


def test_patient_calendar_tokens_and_feeds_are_audited(app, api, clinic, others):
    me, other = clinic.patient["id"], others["patient"]["id"]
    base = f"/api/v1/patients/{me}/calendar-tokens"
    assert clinic.book("consultation", clinic.at(14)).status_code == 201

    response, row = one_row(app, api, "POST", base, role="me", json={"label": "phone"})
    token = response.get_json()
    is_(row, "create", "success", resource="calendar_token", patient=me,
        resource_id=token["id"])
    _, row = one_row(app, api, "GET", base, role="me")
    is_(row, "read", "success", resource="calendar_token", patient=me)

    # The feed: no API key; the row names the token's record and its patient, never the
    # token itself.
    feed = f"/api/v1/calendars/{token['token']}.ics"
    response, row = one_row(app, api, "GET", feed, role=None)
    assert b"BEGIN:VCALENDAR" in response.data
    is_(row, "read", "success", resource="calendar_feed", patient=me, resource_id=token["id"])
    assert (row.key_id, row.role) == (None, None)
    assert not any(token["token"] in str(value) for value in row.__dict__.values())
    response, row = one_row(app, api, "GET", feed, role=None,
                            headers={"If-None-Match": response.headers["ETag"]})
    assert response.status_code == 304
    is_(row, "read", "success", patient=me)

    _, row = one_row(app, api, "DELETE", f"{base}/{token['id']}", role="me")
    is_(row, "delete", "success", resource="calendar_token", patient=me,
        resource_id=token["id"])
    # A revoked token: someone still holding the URL is refused, and the row says whose.
    response, row = one_row(app, api, "GET", feed, role=None)
    assert_problem(response, 404, "calendar_feed_not_found")
    is_(row, "denied", "not_visible", resource="calendar_feed", patient=me,
        resource_id=token["id"])
    _, row = one_row(app, api, "GET", "/api/v1/calendars/cf_unknown.ics", role=None)
    is_(row, "read", "not_found", patient=None, resource_id=None)

    # Someone else's tokens.
    theirs = f"/api/v1/patients/{other}/calendar-tokens"
    _, row = one_row(app, api, "POST", theirs, role="me", json={"label": "mine now"})
    is_(row, "denied", "not_visible", resource="calendar_token", patient=other)
    _, row = one_row(app, api, "GET", theirs, role="me")
    is_(row, "denied", "not_visible", patient=other)
    _, row = one_row(app, api, "DELETE", f"{theirs}/{others['token']['id']}", role="me")
    is_(row, "denied", "not_visible", patient=other, resource_id=others["token"]["id"])

    # A provider's tokens are not patient data; their feed (bookings by id) is audited.
    doctor = f"/api/v1/providers/{clinic.doctor['id']}/calendar-tokens"
    response, rows = calls(app, api, "POST", doctor, json={"label": "office"})
    assert response.status_code == 201 and rows == []
    provider_token = response.get_json()
    _, row = one_row(app, api, "GET", f"/api/v1/calendars/{provider_token['token']}.ics",
                     role=None)
    is_(row, "read", "success", resource="calendar_feed", patient=None,
        resource_id=provider_token["id"])


def test_the_changes_feed_is_audited(app, api, clinic):
    me = clinic.patient["id"]
    assert clinic.book("consultation", clinic.at(14)).status_code == 201
    response, row = one_row(app, api, "GET", "/api/v1/sync/bookings")
    assert response.get_json()["items"][0]["patient_id"] == me
    is_(row, "read", "success", resource="booking_sync", patient=None, resource_id=None)
    token = response.get_json()["next_sync_token"]
    _, row = one_row(app, api, "GET", "/api/v1/sync/bookings",
                     query_string={"sync_token": token})
    is_(row, "read", "success", resource="booking_sync")
    _, row = one_row(app, api, "GET", f"/api/v1/sync/bookings?patient_id={me}")
    is_(row, "read", "success", patient=me)
    _, row = one_row(app, api, "GET", "/api/v1/sync/bookings", role="me")
    is_(row, "read", "success", patient=me)
    _, row = one_row(app, api, "GET", "/api/v1/sync/bookings", role=None)
    is_(row, "denied", "unauthenticated")


def test_a_webhook_deliverys_payload_is_audited_with_its_patient(app, api, others):
    other = others["patient"]["id"]
    hook = f"/api/v1/webhooks/{others['hook']['id']}"
    response, rows = calls(app, api, "GET", f"{hook}/deliveries", role="integration")
    assert response.status_code == 200 and rows == []  # the log shows no payload
    by_type = {d["event_type"]: d for d in response.get_json()}
    for event_type in ("booking.created", "series.created"):
        delivery = by_type[event_type]["id"]
        response, row = one_row(app, api, "GET", f"{hook}/deliveries/{delivery}",
                                role="integration")
        assert response.get_json()["payload"]["type"] == event_type
        is_(row, "read", "success", resource="webhook_delivery", patient=other,
            resource_id=delivery)
    response, row = one_row(app, api, "POST", f"{hook}/deliveries/{delivery}/redeliver",
                            role="integration")
    is_(row, "create", "success", resource="webhook_delivery", patient=other,
        resource_id=_ok(response, 201)["id"])


def test_an_unwritable_row_withholds_a_feed(app, api, clinic, monkeypatch):
    token = _ok(api.post(f"/api/v1/patients/{clinic.patient['id']}/calendar-tokens",
                         json={"label": "phone"}), 201)

    def unavailable(*args, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(audit_services, "write", unavailable)  # every path writes with it
    response = api.get(f"/api/v1/calendars/{token['token']}.ics", role=None)
    assert_problem(response, 503, "service_unavailable")
    assert b"VCALENDAR" not in response.data


def test_a_token_and_its_row_commit_together(app, api, clinic, monkeypatch):
    original = audit_services.build_event

    def broken(session, context, outcome, **kwargs):
        if outcome is AuditOutcome.SUCCESS:
            raise RuntimeError("audit row cannot be built")
        return original(session, context, outcome, **kwargs)

    monkeypatch.setattr(audit_services, "build_event", broken)
    base = f"/api/v1/patients/{clinic.patient['id']}/calendar-tokens"
    before = last_row_id(app)
    assert api.post(base, json={"label": "phone"}).status_code == 500
    monkeypatch.setattr(audit_services, "build_event", original)
    assert [r.outcome.value for r in rows_after(app, before)] == ["error"]
    with app.app_context(), unit_of_work() as uow:
        assert uow.session.scalars(select(CalendarFeedToken)).all() == []


# X-Request-Id ------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", ["req-42", "0", "a.b_c-D", "a" * 64,
                                  "5f0c6f43-8a1e-4c1b-9a57-0c1c2d3e4f50"])
def test_a_plain_request_id_is_kept(app, api, clinic, sent):
    response, row = one_row(app, api, "GET", f"/api/v1/patients/{clinic.patient['id']}",
                            headers={"X-Request-Id": sent})
    assert response.headers["X-Request-Id"] == sent
    assert row.request_id == sent


@pytest.mark.parametrize("sent", ["Jordan Rivera", "jordan.rivera@example.com", "a" * 65,
                                  "id:1", "a/b", "<script>", "Jos\u00e9", "naïve", "x;y",
                                  " padded", ""])
def test_any_other_request_id_is_replaced_by_a_fresh_one(app, api, clinic, sent):
    response, row = one_row(app, api, "GET", f"/api/v1/patients/{clinic.patient['id']}",
                            headers={"X-Request-Id": sent})
    used = response.headers["X-Request-Id"]
    assert used != sent and re.fullmatch(r"[0-9a-f]{32}", used)
    assert row.request_id == used
    # ... on a route without patient data too, and in an error's body
    response = api.get(f"/api/v1/providers/{uuid.uuid4()}", headers={"X-Request-Id": sent})
    body = response.get_json()
    assert response.headers["X-Request-Id"] == body["request_id"] != sent


def test_the_request_id_pattern_is_anchored_at_both_ends():
    assert SAFE_REQUEST_ID.fullmatch("abc")
    for unsafe in ("abc\n", "abc\nINFO forged line", "\nabc", "a b"):
        assert SAFE_REQUEST_ID.fullmatch(unsafe) is None
