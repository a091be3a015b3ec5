"""Fuzz every operation with Schemathesis, over the service's own OpenAPI document.

In-process through WSGI (no server), with a staff API key, against the suite's database
(SQLite or PostgreSQL, as ``TEST_DATABASE`` says). Every operation is one pytest item; before
it runs, a small clinic is built through the API (``seeded``) so that half of the
schema-valid cases name real records in their path (``flatmap_case``); after it, the suite's
fixture empties the tables as for any test.

Each case goes through every default check Schemathesis runs in-process: no server error;
body, headers, status code and content type as documented; schema-valid input accepted and
schema-invalid input refused; a missing required header refused; an undocumented method
answered 405 with a true ``Allow``; authentication enforced. Three expectations are widened,
each for the reason given in ``CONFIG``. Three checks of ours are added (``CHECKS``): the
headers the service sends are documented, ``X-Pagination`` is the JSON its documentation
says, and schema-valid input is never refused by the parser itself.

Bounded and reproducible: Hypothesis is derandomized, with ``MAX_EXAMPLES`` random cases per
operation on top of the coverage phase's deterministic ones. The terminal summary gets one
line: operations and cases sent.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from service.domain.access import services as keys
from service.domain.access.actor import Role
from service.extensions import unit_of_work
from tests.factories import Api
from tests.scenario import build_clinic

ROOT = Path(__file__).resolve().parents[2]
SPEC = json.loads((ROOT / "openapi" / "openapi.json").read_text())
BACKEND = os.environ.get("TEST_DATABASE", "sqlite")

# Random (fuzzing-phase) cases per operation. With the coverage phase's cases: about 9,000
# cases for the 102 operations, ~1 min 45 s of CPU on SQLite and ~2 min on PostgreSQL
# (measured on the 2-core dev machine; the wall time is that when the machine is idle).
MAX_EXAMPLES = 25

# A staff key the `seeded` fixture issues in each test's (emptied) database: fixed, so that
# Schemathesis applies it itself (and leaves it out of the cases that test its absence).
STAFF_KEY = "ck_staff_fuzzstaff000_FUZZ-TEST-KEY-NOT-A-SECRET"

CONFIG = schemathesis.Config.from_dict({
    "base-url": "http://localhost",
    "auth": {"openapi": {"bearerAuth": {"bearer": STAFF_KEY}}},
    "checks": {
        # RFC 6585: a request without the If-Match an update needs is 428 Precondition
        # Required, which is the right refusal of a missing If-Match.
        "missing_required_header": {
            "expected-statuses": ["400", "401", "403", "406", "415", "422", "428"]},
        # Schema-valid input can still break a rule JSON Schema cannot state; the API then
        # answers with a specific code: 422 (an IANA zone name, an NPI check digit, an end
        # before its start, a time in the past, a reused Idempotency-Key, ...), 400
        # invalid_search_parameter (FHIR's date and reference grammar), 410 (an unknown or
        # expired sync token, as 404 for an unknown id) or 412 (a well-formed If-Match that
        # is not the record's current ETag). Generic refusals of schema-valid input still
        # fail: see valid_input_is_parsed.
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409", "410",
                                  "412", "422", "429", "5xx"]},
        # An If-Match that is not an entity tag of ours is refused as a failed precondition.
        "negative_data_rejection": {
            "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "412",
                                  "415", "422", "428", "429", "5xx"]},
    },
})

schema = schemathesis.openapi.from_dict(SPEC, config=CONFIG)

# Path parameter -> id of a seeded record, filled by the `seeded` fixture for each operation.
SEEDED: dict[str, str] = {}


@schema.hook
def flatmap_case(context: Any, case: Any) -> Any:
    """Half of the schema-valid cases name the seeded records instead of random ids (the
    schema-invalid ones keep their invalid path parameters)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not case.path_parameters:
        return st.just(case)
    real = {name: _seeded_id(case.operation.path, name) for name in case.path_parameters}
    real = {name: value for name, value in real.items() if value is not None}
    if not real:
        return st.just(case)
    return st.booleans().map(lambda use: _naming(case, real) if use else case)


def _naming(case: Any, real: dict[str, str]) -> Any:
    case.path_parameters = {**case.path_parameters, **real}
    return case


def _seeded_id(path: str, name: str) -> str | None:
    if name == "token_id":  # both owners have calendar tokens
        name = "patient_token_id" if path.startswith("/api/v1/patients/") else "token_id"
    return SEEDED.get(name)


# Headers the service sends on some answers: each must be documented on the answer.
DOCUMENTED_HEADERS = ("ETag", "Location", "Retry-After", "Idempotent-Replayed", "X-Pagination",
                      "WWW-Authenticate", "Allow")


def _response_definition(case: Any, status: int) -> dict[str, Any] | None:
    operation = SPEC["paths"][case.operation.path].get(case.method.lower())
    if operation is None:  # a method the path does not have (answered 405)
        return None
    responses = operation["responses"]
    definition = responses.get(str(status), responses.get("default"))
    while definition is not None and "$ref" in definition:
        definition = _resolve(definition["$ref"])
    return definition


def _resolve(ref: str) -> dict[str, Any]:
    node: Any = SPEC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def documented_headers(ctx: Any, response: Any, case: Any) -> None:
    """Every header of ``DOCUMENTED_HEADERS`` that an answer carries is documented on it."""
    definition = _response_definition(case, response.status_code)
    if definition is None:
        return
    documented = {name.lower() for name in definition.get("headers", {})}
    sent = [name for name in DOCUMENTED_HEADERS
            if name.lower() in response.headers and name.lower() not in documented]
    if sent:
        raise AssertionError(f"{response.status_code} answer sends undocumented header(s) "
                             f"{', '.join(sent)}")


def pagination_header_is_documented_json(ctx: Any, response: Any, case: Any) -> None:
    """``X-Pagination`` is JSON matching the schema its documentation gives (Schemathesis
    does not validate a header documented with ``content``)."""
    values = response.headers.get("x-pagination")
    if not values:
        return
    definition = _response_definition(case, response.status_code) or {}
    header = definition.get("headers", {}).get("X-Pagination")
    if header is None:
        return  # documented_headers reports it
    while "$ref" in header:
        header = _resolve(header["$ref"])
    media = header["content"]["application/json"]["schema"]
    validator = jsonschema.Draft4Validator({**media, "components": SPEC["components"]})
    try:
        validator.validate(json.loads(values[0]))
    except (ValueError, jsonschema.ValidationError) as exc:
        raise AssertionError(f"X-Pagination {values[0]!r} does not match its documentation: "
                             f"{exc}") from None


# Codes of the generic refusals: the parser (webargs/marshmallow, the JSON decoder) or
# werkzeug refused the input, not a rule of the clinic.
GENERIC_CODES = frozenset({"bad_request", "malformed_json", "validation_failed"})


def valid_input_is_parsed(ctx: Any, response: Any, case: Any) -> None:
    """A schema-valid input refused generically (400 bad_request or malformed_json, a 422
    field error without a specific code) means the document does not state what the
    parser wants. Refusals with a specific code are rules: see CONFIG."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if response.status_code not in (400, 422):
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        return
    invalid = [e for e in body.get("errors") or () if e.get("code") == "invalid"]
    if body.get("code") in GENERIC_CODES - {"validation_failed"} or invalid:
        raise AssertionError(f"schema-valid input refused by the parser: {body.get('code')} "
                             f"{invalid}")


CHECKS = [documented_headers, pagination_header_is_documented_json, valid_input_is_parsed]


SENT: Counter[str] = Counter()


@pytest.fixture
def seeded(request: pytest.FixtureRequest, app: Any, api: Api) -> dict[str, str]:
    """A small clinic, when the operation has path parameters to point at it."""
    SEEDED.clear()
    with app.app_context():
        keys.issue_key(unit_of_work(), role=Role.STAFF, label="fuzz staff", key=STAFF_KEY)
    if "{" not in request.node.name:
        return SEEDED
    clinic = build_clinic(api)
    doctor, patient = clinic.doctor, clinic.patient
    hook = api.post("/api/v1/webhooks", role="integration",
                    json={"url": "https://ehr.example.com/hooks/clinic",
                          "events": ["booking.created", "booking.cancelled"]})
    assert hook.status_code == 201, hook.get_json()
    booking = clinic.book("consultation", clinic.at(14))
    assert booking.status_code == 201, booking.get_json()
    booking_id = booking.get_json()["id"]
    screening = api.post(f"/api/v1/bookings/{booking_id}/screening", json={})
    start = clinic.at(8, day=clinic.day + timedelta(days=30))
    time_off = api.create(f"/api/v1/providers/{doctor['id']}/time-off", {
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=4)).isoformat()})
    doctor_token = api.create(f"/api/v1/providers/{doctor['id']}/calendar-tokens",
                              {"label": "fuzz"})
    patient_token = api.create(f"/api/v1/patients/{patient['id']}/calendar-tokens",
                               {"label": "fuzz"})
    webhook_id = hook.get_json()["id"]
    deliveries = api.get(f"/api/v1/webhooks/{webhook_id}/deliveries").get_json()
    reminders = api.get(f"/api/v1/bookings/{booking_id}/reminders").get_json()
    license_id = api.get(f"/api/v1/providers/{doctor['id']}/licenses").get_json()[0]["id"]
    SEEDED.update({
        "provider_id": doctor["id"], "practitioner_id": doctor["id"],
        "schedule_id": doctor["id"], "license_id": license_id,
        "location_id": clinic.clinic["id"],
        "service_type_id": clinic.services["consultation"]["id"],
        "patient_id": patient["id"], "booking_id": booking_id, "appointment_id": booking_id,
        "time_off_id": time_off["id"], "token_id": doctor_token["id"],
        "patient_token_id": patient_token["id"], "token": doctor_token["token"],
        "webhook_id": webhook_id,
    })
    if deliveries:
        SEEDED["delivery_id"] = deliveries[0]["id"]
    if reminders:
        SEEDED["reminder_id"] = reminders[0]["id"]
    assert screening.status_code == 201, screening.get_json()
    return SEEDED


@schema.parametrize()
@settings(derandomize=True, deadline=None, database=None, max_examples=MAX_EXAMPLES,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_every_operation_answers_as_documented(case, app, seeded):
    SENT[case.operation.label] += 1
    case.operation.schema.app = app  # the suite's app (its database); set per test
    case.call_and_validate(app=app, additional_checks=CHECKS)


class _Summary:
    """Adds one line to pytest's terminal summary: operations and cases sent."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if SENT:
            terminalreporter.write_line(
                f"fuzz ({BACKEND}): {len(SENT)} operations, {sum(SENT.values())} cases "
                "sent")


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> None:
    if not request.config.pluginmanager.has_plugin("fuzz-summary"):
        request.config.pluginmanager.register(_Summary(), "fuzz-summary")
