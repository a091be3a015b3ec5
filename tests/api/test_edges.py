"""Edges of the input: nothing a client sends gives a 500 or is silently misread, and every
refusal is a problem+json with a stable code that writes nothing.

Most cases walk the app's URL map, so a new endpoint gets them without a new test: every
JSON write operation gets a deeply nested, a NUL, a lone-surrogate and a non-JSON body,
every PATCH an empty one, every list a huge page, every query NUL and broken UTF-8, every
date or time argument a year far outside 1900-2200, every integer 1.5, every state field
"XX". The rules live in ``service/parsing.py`` and ``service/resources/fields.py``.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import marshmallow as ma
import pytest
from flask import g
from gunicorn.config import Config as GunicornConfig
from sqlalchemy import func, select

from service.access_log import AccessLogger, redact
from service.app import create_app
from service.errors import CODES
from service.extensions import MAX_PAGE, Blueprint
from service.models import Base
from service.parsing import MAX_JSON_DEPTH, Integer
from service.rendering import rendering_zone
from service.resources.bookings.schemas import BookingQueryArgsSchema
from service.resources.fields import JURISDICTION, STATE, Date, Instant, ZoneQueryArgsSchema
from service.resources.slots.schemas import DateOrInstant
from tests.api.test_directory import assert_problem
from tests.factories import clinic_payload, patient_payload
from tests.scenario import build_clinic

PROBLEM = "application/problem+json"
FHIR_JSON = "application/fhir+json"
# Rows every request may add by design: the audit trail (append-only, one row per request
# about patient data) and stored Idempotency-Key answers. Everything else must not move.
BOOKKEEPING = {"audit_events", "idempotency_records"}


# The operations of the URL map ---------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    rule: str
    body: type[ma.Schema] | None = None  # a JSON body schema
    form: type[ma.Schema] | None = None
    query: type[ma.Schema] | None = None
    paginated: bool = False

    @property
    def path(self) -> str:
        """The rule with fresh ids: every case here is refused before any record is read."""
        path = re.sub(r"<uuid:\w+>", lambda _: str(uuid.uuid4()), self.rule)
        return path.replace("<string:token>", "cal_unknown")

    @property
    def fhir(self) -> bool:
        return self.rule.startswith("/fhir/")

    def __str__(self) -> str:
        return f"{self.method} {self.rule}"


def _operations() -> list[Operation]:
    app = create_app({"DATABASE_URL": "sqlite://"})
    try:
        found = []
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
            view_class = getattr(app.view_functions[rule.endpoint], "view_class", None)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                view = getattr(view_class, method.lower(), None)
                if view is None:
                    continue
                doc = getattr(view, "_apidoc", {})
                schemas = {p["in"]: p["schema"]
                           for p in doc.get("arguments", {}).get("parameters", [])
                           if isinstance(p.get("schema"), type)}
                found.append(Operation(method, rule.rule, body=schemas.get("json"),
                                       form=schemas.get("form"), query=schemas.get("query"),
                                       paginated="pagination" in doc))
        return found
    finally:
        app.extensions["clinic.database"].dispose()


OPERATIONS = _operations()
JSON_WRITES = [op for op in OPERATIONS if op.body is not None]
PATCHES = [op for op in JSON_WRITES if op.method == "PATCH"]
LISTS = [op for op in OPERATIONS if op.paginated]
QUERIES = [op for op in OPERATIONS if op.query is not None or op.paginated]


def _input_fields(schema: ma.Schema, prefix: str = "") -> Iterator[tuple[str, ma.fields.Field]]:
    """(data key path, field) of every field a client may send, nested ones included."""
    for name, value in schema.fields.items():
        if value.dump_only:
            continue
        key = f"{prefix}{value.data_key or name}"
        yield key, value
        inner = value
        if isinstance(inner, ma.fields.List):
            inner = inner.inner
        if isinstance(inner, ma.fields.Nested):
            yield from _input_fields(inner.schema, f"{key}.")


def _top_fields(operations: list[Operation], location: str,
                match: Callable[[ma.fields.Field], bool],
                ) -> list[tuple[Operation, str, ma.fields.Field]]:
    """(operation, name, field) of each top-level field in ``location`` that ``match``es."""
    cases = []
    for op in operations:
        schema = getattr(op, location)
        if schema is None:
            continue
        for key, value in _input_fields(schema()):
            if "." not in key and match(value):
                cases.append((op, key, value))
    return cases


def _kind(*kinds: type) -> Callable[[ma.fields.Field], bool]:
    return lambda value: isinstance(value, kinds)


def _ids(cases: list[Any]) -> list[str]:
    return [" ".join(str(part) for part in case[:2]) if isinstance(case, tuple) else str(case)
            for case in cases]


def _string_field(op: Operation) -> str:
    """A string field of the operation's body (a member name when it has none)."""
    for key, value in _input_fields(op.body()):  # type: ignore[misc]
        if "." not in key and isinstance(value, ma.fields.String):
            return key
    return "note"


# Assertions ----------------------------------------------------------------------------


def row_counts(app) -> dict[str, int]:
    tables = [t for t in Base.metadata.sorted_tables if t.name not in BOOKKEEPING]
    query = select(*[select(func.count()).select_from(t).scalar_subquery().label(t.name)
                     for t in tables])
    with app.extensions["clinic.database"].writer.connect() as connection:
        return dict(connection.execute(query).one()._mapping)


@contextmanager
def writes_nothing(app) -> Iterator[None]:
    before = row_counts(app)
    yield
    assert row_counts(app) == before


def refused(response, status: int, code: str, *, fhir: bool = False,
            field: str | None = None) -> dict:
    """The answer is a refusal with ``code`` (an OperationOutcome on the FHIR facade); with
    ``field``, one of its errors names that field with that code."""
    if fhir:
        assert response.status_code == status, response.get_data(as_text=True)
        assert response.mimetype == FHIR_JSON
        outcome = response.get_json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == code
        return outcome
    if field is None:
        return assert_problem(response, status, code)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    expected = "invalid" if code == "validation_failed" else code  # an uncoded message
    assert {"field": field, "code": expected} in [
        {"field": e["field"], "code": e["code"]} for e in body["errors"]], body
    assert body["code"] in (code, "validation_failed")  # mixed with other refusals
    return body


def post_raw(api, op: Operation, data: bytes | str, content_type: str | None = None,
             role: str | None = "staff"):
    headers = {"Content-Type": content_type} if content_type else {}
    return api.request(op.method, op.path, data=data, headers=headers, role=role)


# Bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("op", JSON_WRITES, ids=_ids(JSON_WRITES))
def test_deep_json_is_400_never_a_recursion_error(api, app, op):
    thousands = "[" * 5000 + "]" * 5000
    just_too_deep = '{"a": ' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1)
    with writes_nothing(app):
        for body in (thousands, just_too_deep):
            refused(post_raw(api, op, body, "application/json"), 400, "json_too_deep")
        # Without a key: the key is asked for first (the audit trail's look at the body
        # before authentication is a 500 no more).
        refused(post_raw(api, op, thousands, "application/json", role=None), 401,
                "unauthenticated")


@pytest.mark.parametrize("op", JSON_WRITES, ids=_ids(JSON_WRITES))
def test_nul_and_lone_surrogates_are_422_in_any_string(api, app, op):
    name = _string_field(op)
    with writes_nothing(app):
        for text in ("a\u0000b", "\ud800", "x\udfff"):
            body = json.dumps({name: text})  # ASCII: a lone surrogate travels as \ud800
            refused(post_raw(api, op, body, "application/json"), 422, "invalid_characters",
                    field=name)
        # In a member name, or deep inside, just as well.
        refused(post_raw(api, op, json.dumps({"a\u0000": 1}), "application/json"), 422,
                "invalid_characters", field="a\\u0000")
        refused(post_raw(api, op, json.dumps({name: [{"x": "\u0000"}]}), "application/json"),
                422, "invalid_characters", field=f"{name}.0.x")


@pytest.mark.parametrize("op", JSON_WRITES, ids=_ids(JSON_WRITES))
def test_a_body_that_is_not_json_is_415_not_read_as_empty(api, app, op):
    with writes_nothing(app):
        for content_type in ("text/plain", "application/x-www-form-urlencoded",
                             "application/xml", None):
            refused(post_raw(api, op, "reason=x", content_type), 415,
                    "unsupported_media_type")


@pytest.mark.parametrize("op", PATCHES, ids=_ids(PATCHES))
def test_an_empty_patch_is_422(api, app, op):
    with writes_nothing(app):
        refused(api.patch(op.path, headers={"If-Match": '"v1"'}), 422, "empty_update")
        refused(api.patch(op.path, json={}, headers={"If-Match": '"v1"'}), 422,
                "empty_update")


def test_other_bodies_are_refused_with_their_own_codes(api, app):
    location = ('{"name": "Tempe", "kind": "clinic", "timezone": "America/Phoenix", '
                '"address_line1": "1 Mill Ave", "city": "Tempe", "state": "AZ", '
                '"postal_code": "85281", "chairs": %s}')

    def post(data: str | bytes, content_type: str = "application/json"):
        return api.post("/api/v1/locations", data=data,
                        headers={"Content-Type": content_type})

    with writes_nothing(app):
        for body in ("[]", '"x"', "null", "1"):
            refused(post(body), 422, "validation_failed")
        for constant in ("NaN", "Infinity", "-Infinity"):
            refused(post(location % constant), 400, "malformed_json")
        for number in ("1e309", "-1e309", "9" * 5000):
            refused(post(location % number), 422, "out_of_range")
        refused(post(location % "2" + "x"), 400, "malformed_json")
        refused(post('{"name": "a", "name": "b"}'), 400, "malformed_json")
        refused(post("\u00e9".encode("latin-1"), "application/json; charset=latin-1"),
                400, "malformed_json")
        refused(post(b'{"name": "' + b"x" * (1024 * 1024) + b'"}'), 413,
                "payload_too_large")
        refused(post(location.replace("Tempe", "x" * 100_000, 1) % 1), 422,
                "validation_failed", field="name")
    assert post(location % 2).status_code == 201


# Numbers -------------------------------------------------------------------------------


BODY_INTEGERS = _top_fields(JSON_WRITES, "body", _kind(Integer))
QUERY_INTEGERS = _top_fields(QUERIES, "query", _kind(Integer))


@pytest.mark.parametrize("case", BODY_INTEGERS, ids=_ids(BODY_INTEGERS))
def test_every_integer_in_a_body_is_a_whole_number(api, app, case):
    op, name, _ = case
    with writes_nothing(app):
        for value in (1.5, 2.0, True, 2**31, -(2**31) - 1, "1_0"):
            refused(api.request(op.method, op.path, json={name: value}), 422,
                    "validation_failed", field=name)


@pytest.mark.parametrize("case", QUERY_INTEGERS, ids=_ids(QUERY_INTEGERS))
def test_every_integer_in_a_query_is_a_whole_number(api, app, case):
    op, name, _ = case
    with writes_nothing(app):
        huge = ("9223372036854775807", "9" * 40)
        clamped = op.fhir and name == "_count"  # FHIR: a _count above the maximum is clamped
        for value in ("1.5", "1e3", "1_0", " 1", "\u0661", *huge):
            response = api.request(op.method, op.path, query_string={name: value})
            if clamped and value == huge[0]:
                assert response.status_code == 200, response.get_data(as_text=True)
                assert "_count=100" in response.get_json()["link"][0]["url"]
            elif op.fhir:
                refused(response, 422, "validation_failed", fhir=True)
            else:
                refused(response, 422, "validation_failed", field=name)


def test_integers_inside_lists_are_whole_numbers_too(api, app):
    with writes_nothing(app):
        refused(api.post(f"/api/v1/patients/{uuid.uuid4()}/assessments",
                         json={"instrument": "gad7", "answers": [1, 1.5, 0, 0, 0, 0, 0]}),
                422, "validation_failed", field="answers.1")
        refused(api.post("/api/v1/service-types", json={
            "code": "x1", "name": "X", "modality": "telehealth", "duration_minutes": 30,
            "reminder_plan": {"hours_before": [24.5]}}),
            422, "validation_failed", field="reminder_plan.hours_before.0")


def test_a_fractional_chair_count_is_refused_not_truncated(api, app):
    location = api.create("/api/v1/locations", clinic_payload(chairs=2))
    with writes_nothing(app):
        for chairs in (1.5, 2.0, True, "1.5"):
            refused(api.post("/api/v1/locations", json=clinic_payload(chairs=chairs)), 422,
                    "validation_failed", field="chairs")
            refused(api.patch(f"/api/v1/locations/{location['id']}", json={"chairs": chairs},
                              headers={"If-Match": '"v1"'}),
                    422, "validation_failed", field="chairs")
    assert api.get(f"/api/v1/locations/{location['id']}").get_json() == location


@pytest.mark.parametrize("op", LISTS, ids=_ids(LISTS))
def test_every_list_refuses_a_page_past_the_last_one(api, app, op):
    with writes_nothing(app):
        for query in ({"page": "9223372036854775807"}, {"page": str(MAX_PAGE + 1)},
                      {"page": "0"}, {"page": "1.5"}, {"page_size": "9223372036854775807"},
                      {"page_size": "0"}):
            refused(api.request(op.method, op.path, query_string=query), 422,
                    "validation_failed", field=next(iter(query)))
        refused(api.request(op.method, f"{op.path}?page=1&page=2"), 422,
                "duplicate_parameter", field="page")


def test_the_last_page_is_an_empty_page(api):
    response = api.get("/api/v1/providers", query_string={"page": MAX_PAGE, "page_size": 100})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == []


def test_fhir_paging_and_other_integer_arguments_are_bounded(api, app):
    with writes_nothing(app):
        refused(api.get("/fhir/R4/Practitioner", query_string={"_page": 2**63 - 1}), 422,
                "validation_failed", fhir=True)
        # FHIR serves a _count above its maximum as the maximum (issue 11), never a 500.
        clamped = api.get("/fhir/R4/Practitioner", query_string={"_count": 2**63 - 1})
        assert clamped.status_code == 200
        assert "_count=100" in clamped.get_json()["link"][0]["url"]
        for path, name in (("/api/v1/licenses/expiring", "within_days"),
                           ("/api/v1/slots", "limit"), ("/api/v1/sync/bookings", "page_size")):
            refused(api.get(path, query_string={name: 2**63 - 1}), 422, "validation_failed",
                    field=name)


# Text in the query and in forms ----------------------------------------------------------


@pytest.mark.parametrize("op", QUERIES, ids=_ids(QUERIES))
def test_nul_and_broken_utf8_in_a_query_are_422(api, app, op):
    keys = [key for key, _ in _input_fields(op.query())] if op.query else []
    name = keys[0] if keys else "page"
    with writes_nothing(app):
        for raw in ("a%00b", "%ED%A0%80", "%FF", "%C3"):  # NUL, an encoded surrogate, junk
            response = api.request(op.method, f"{op.path}?{name}={raw}")
            refused(response, 422, "invalid_characters", fhir=op.fhir)
        refused(api.request(op.method, f"{op.path}?x%00=1"), 422, "invalid_characters",
                fhir=op.fhir)


def test_a_repeated_single_valued_parameter_is_422(api, app):
    refused(api.get("/api/v1/patients?name=a&name=b"), 422, "duplicate_parameter",
            field="name")
    refused(api.get("/fhir/R4/Practitioner?name=a&name=b"), 422, "duplicate_parameter",
            fhir=True)
    # Repeatable ones stay repeatable.
    assert api.get("/api/v1/bookings?status=booked&status=pending").status_code == 200


def test_the_sms_webhook_takes_its_form_and_refuses_the_rest(api, app):
    path = "/api/v1/inbound/sms"
    answer = api.post(path, data={"From": "+16025550111", "Body": "STOP"}, role="integration")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"received": True, "action": "opt_out"}
    with writes_nothing(app):
        refused(api.post(path, data={"From": "+16025550111", "Body": "ST\u0000OP"},
                         role="integration"), 422, "invalid_characters", field="Body")
        refused(api.post(path, data="From=%2B16025550111&Body=%ED%A0%80",
                         headers={"Content-Type": "application/x-www-form-urlencoded"},
                         role="integration"), 422, "invalid_characters")
        refused(api.post(path, data="From=%2B1602555011&From=%2B1602555012&Body=STOP",
                         headers={"Content-Type": "application/x-www-form-urlencoded"},
                         role="integration"), 422, "duplicate_parameter", field="From")
        refused(api.post(path, json={"From": "+16025550111", "Body": "STOP"},
                         role="integration"), 415, "unsupported_media_type")


def test_nul_in_names_and_searches_on_postgresql_and_sqlite_alike(api, app):
    with writes_nothing(app):
        refused(api.post("/api/v1/patients", json=patient_payload(first_name="Ca\u0000sey")),
                422, "invalid_characters", field="first_name")
        refused(api.get("/api/v1/providers?name=%00"), 422, "invalid_characters",
                field="name")
        refused(api.get("/fhir/R4/Practitioner?name=%00"), 422, "invalid_characters",
                fhir=True)
        # A key is looked up by its public id: NUL in it is a bad key, not a database error.
        refused(api.get("/api/v1/providers", role=None,
                        headers={"Authorization": "Bearer ck_staff_ab\u0000cd_secret"}),
                401, "invalid_api_key")


# Dates and times -------------------------------------------------------------------------


CALENDAR_KINDS = (Date, Instant, DateOrInstant)
DATE_CASES = (_top_fields(JSON_WRITES, "body", _kind(*CALENDAR_KINDS))
              + _top_fields(QUERIES, "query", _kind(*CALENDAR_KINDS)))
FAR_DATES = ("9999-12-31", "9999-12-30", "0001-01-01", "1899-12-31", "2201-01-01")
FAR_INSTANTS = ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00",
                "1899-12-31T23:59:59Z", "2201-01-01T00:00:00+00:00")


@pytest.mark.parametrize("case", DATE_CASES, ids=_ids(DATE_CASES))
def test_every_date_and_time_is_in_the_years_1900_to_2200(api, app, case):
    op, name, kind = case
    values = {Date: FAR_DATES, Instant: FAR_INSTANTS}.get(type(kind),
                                                          FAR_DATES + FAR_INSTANTS)
    with writes_nothing(app):
        for value in values:
            if op.body is not None:
                response = api.request(op.method, op.path, json={name: value})
            else:
                response = api.request(op.method, op.path, query_string={name: value})
            refused(response, 422, "out_of_range", field=name)


def test_named_calendar_edges(api, app):
    clinic = build_clinic(api)
    service_type = clinic.services["consultation"]["id"]
    with writes_nothing(app):
        refused(api.get("/api/v1/bookings",
                        query_string={"starts_from": "9999-12-31T23:59:59-12:00"}),
                422, "out_of_range", field="starts_from")
        refused(api.get("/api/v1/slots", query_string={
            "service_type": service_type, "start": "9999-12-30", "end": "9999-12-31"}),
            422, "out_of_range")
        refused(api.put(f"/api/v1/providers/{clinic.doctor['id']}/availability", json={
            "weekly": [], "overrides": [{"location_id": clinic.clinic["id"],
                                         "day": "9999-12-31", "hours": []}]}),
            422, "out_of_range", field="overrides.0.day")
        for date in ("ge9999-12-31T23:59:59-12:00", "lt0001-01-01", "eq9999"):
            refused(api.get("/fhir/R4/Appointment", query_string={"date": date}), 400,
                    "invalid_search_parameter", fhir=True)
    # The edges of the supported years themselves are fine.
    assert api.get("/api/v1/bookings", query_string={
        "starts_from": "2200-12-31T23:59:59-12:00"}).status_code == 200
    assert api.get("/fhir/R4/Appointment", query_string={
        "date": "ge2200-12-31T23:59:59-12:00"}).status_code == 200


# States --------------------------------------------------------------------------------


def _a_state(value: ma.fields.Field) -> bool:
    return any(v in (STATE, JURISDICTION) for v in value.validators)


STATE_CASES = (_top_fields(JSON_WRITES, "body", _a_state)
               + _top_fields(QUERIES, "query", _a_state))


@pytest.mark.parametrize("case", STATE_CASES, ids=_ids(STATE_CASES))
def test_every_state_field_refuses_an_unknown_code(api, app, case):
    op, name, value = case
    unknown = ("US-XX", "US-az", "AZ") if JURISDICTION in value.validators else (
        "XX", "az", "ZZ", "US-AZ")
    with writes_nothing(app):
        for code in unknown:
            if op.body is not None:
                response = api.request(op.method, op.path, json={name: code})
            else:
                response = api.request(op.method, op.path, query_string={name: code})
            refused(response, 422, "unknown_state", field=name)


def test_an_unknown_patient_state_is_an_invalid_value_not_a_coverage_conflict(api, app):
    clinic = build_clinic(api)
    with writes_nothing(app):
        refused(clinic.book("consultation", clinic.at(13), patient_state="XX"), 422,
                "unknown_state")
    assert clinic.book("consultation", clinic.at(13), patient_state="AZ").status_code == 201


# If-Match ------------------------------------------------------------------------------


def test_if_match_compares_strongly(api, app):
    patient = api.create("/api/v1/patients", patient_payload())
    path = f"/api/v1/patients/{patient['id']}"
    with writes_nothing(app):
        for header in ('W/"v1"', 'W/"v1", W/"v2"', '"v2"', '"abc"', "v1", '"v1", "v2"'):
            refused(api.patch(path, json={"first_name": "Weak"}, headers={"If-Match": header}),
                    412, "precondition_failed")
    assert api.get(path).get_json() == patient
    changed = api.patch(path, json={"first_name": "Strong"},
                        headers={"If-Match": 'W/"v9", "other", "v1"'})
    assert changed.status_code == 200, changed.get_json()
    assert changed.headers["ETag"] == '"v2"'
    # "*": the condition holds whatever the current version (RFC 9110, 13.1.1).
    anything = api.patch(path, json={"first_name": "Star"}, headers={"If-Match": "*"})
    assert anything.status_code == 200, anything.get_json()
    assert anything.get_json()["first_name"] == "Star"
    refused(api.patch(path, json={"first_name": "None"}), 428, "precondition_required")


def test_a_reschedule_with_a_weak_etag_is_412(api, app):
    clinic = build_clinic(api)
    booking = clinic.book("consultation", clinic.at(13)).get_json()
    path = f"/api/v1/bookings/{booking['id']}/reschedule"
    with writes_nothing(app):
        refused(api.post(path, json={"start": clinic.at(14).isoformat()},
                         headers={"If-Match": f'W/"v{booking["version"]}"'}),
                412, "precondition_failed")
    after = api.get(f"/api/v1/bookings/{booking['id']}").get_json()
    assert (after["version"], datetime.fromisoformat(after["start"])) == (
        booking["version"], datetime.fromisoformat(booking["start"]))


# What must keep working ----------------------------------------------------------------


def test_actions_without_a_body_still_work_without_one(api):
    clinic = build_clinic(api)
    booking = clinic.book("consultation", clinic.at(13), hold=True).get_json()
    confirmed = api.post(f"/api/v1/bookings/{booking['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.get_json()
    token = api.post(f"/api/v1/providers/{clinic.doctor['id']}/calendar-tokens")
    assert token.status_code == 201, token.get_json()  # a body with defaults only: optional
    with_type = api.post(f"/api/v1/providers/{clinic.doctor['id']}/calendar-tokens",
                         data="", headers={"Content-Type": "application/json"})
    assert with_type.status_code == 201, with_type.get_json()


def test_a_query_schema_without_a_query_answers_what_loading_nothing_gives(app):
    """``RequestParser.parse`` answers a request without a query string from the schema's
    own ``without_query`` (not its subclasses'): the same arguments and the same rendering
    zone as loading an empty query would leave."""
    parser = Blueprint.ARGUMENTS_PARSER
    for query in ("", "?timezone=Europe/Paris"):
        with app.test_request_context(f"/api/v1/bookings/x{query}"):
            g.render_zone = "America/Denver"
            loaded = ZoneQueryArgsSchema().load({} if not query else
                                                {"timezone": "Europe/Paris"})
            zone = rendering_zone()
            g.render_zone = "America/Denver"
            assert parser.parse(ZoneQueryArgsSchema, location="query") == loaded == {}
            assert rendering_zone() == zone == (None if not query else "Europe/Paris")
    assert "without_query" not in BookingQueryArgsSchema.__dict__  # a subclass loads
    with app.test_request_context("/api/v1/bookings"):
        assert parser.parse(BookingQueryArgsSchema, location="query") == (
            BookingQueryArgsSchema().load({}))


def test_a_path_id_that_is_not_a_uuid_is_404(api):
    refused(api.get("/api/v1/patients/not-a-uuid"), 404, "not_found")
    refused(api.patch("/api/v1/patients/123", json={"first_name": "x"}), 404, "not_found")


def test_the_walk_found_the_operations_it_tests():
    """A guard on the guards: the walk of the URL map sees the operations it should."""
    assert len(JSON_WRITES) >= 30 and len(PATCHES) >= 8 and len(LISTS) >= 20
    assert len(DATE_CASES) >= 15 and len(STATE_CASES) >= 8 and len(BODY_INTEGERS) >= 10
    assert any(op.form is not None for op in OPERATIONS)  # the SMS webhook


def test_every_code_the_input_rules_raise_is_in_the_table():
    source = (ROOT / "service" / "parsing.py").read_text()
    raised = set(re.findall(r'InputError\(\s*\d{3},\s*"([a-z_]+)"', source))
    assert raised >= {"json_too_deep", "invalid_characters", "out_of_range",
                      "malformed_json", "duplicate_parameter"}
    assert raised - set(CODES) == set()


STRICT_TYPES = {ma.fields.Integer: "service.parsing.Integer",
                ma.fields.Float: "a bounded field", ma.fields.Decimal: "a bounded field",
                ma.fields.Number: "service.parsing.Integer",
                ma.fields.Date: "service.resources.fields.Date",
                ma.fields.DateTime: "service.resources.fields.Instant",
                ma.fields.AwareDateTime: "service.resources.fields.Instant",
                ma.fields.NaiveDateTime: "service.resources.fields.Instant"}
BOUNDED = (ma.validate.Length, ma.validate.OneOf, ma.validate.Regexp)


def test_every_input_field_uses_the_shared_strict_types():
    """So that a new endpoint cannot bring back a truncated 1.5, year 9999 or an unbounded
    string: input integers, dates and times use the shared fields, and every plain string
    has a bound."""
    offenders = []
    for op in OPERATIONS:
        for location in ("body", "form", "query"):
            schema = getattr(op, location)
            if schema is None:
                continue
            for key, value in _input_fields(schema()):
                inner = value.inner if isinstance(value, ma.fields.List) else value
                if type(inner) in STRICT_TYPES:
                    offenders.append(f"{op} {key}: use {STRICT_TYPES[type(inner)]}")
                if type(inner) in (ma.fields.String, ma.fields.Email) and not any(
                        isinstance(v, BOUNDED) for v in inner.validators):
                    offenders.append(f"{op} {key}: give the string a length")
    assert offenders == []


# The access log ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
_ENVIRON = dict(os.environ)
GUNICORN_CONF = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
os.environ.clear()  # the file sets a gunicorn server's variables (metrics dir, drain flag)
os.environ.update(_ENVIRON)
EVERY_URL_ATOM = '%(r)s|%(U)s|%(q)s|%({raw_uri}e)s|%({path_info}e)s'


def access_line(raw_uri: str, log_format: str = GUNICORN_CONF["access_log_format"]) -> str:
    """The access-log line gunicorn writes for a GET of ``raw_uri`` (as sent)."""
    path, _, query = raw_uri.partition("?")
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": raw_uri, "SERVER_PROTOCOL": "HTTP/1.1",
               "PATH_INFO": unquote(path, encoding="latin-1"), "QUERY_STRING": query,
               "REMOTE_ADDR": "203.0.113.9"}
    response = SimpleNamespace(status="404 NOT FOUND", sent=12, headers=[])
    request = SimpleNamespace(headers=[("USER-AGENT", "test")])
    config = GunicornConfig()
    config.set("access_log_format", log_format)
    logger = AccessLogger(config)
    atoms = logger.atoms(response, request, environ, timedelta(milliseconds=3))
    return log_format % logger.atoms_wrapper_class(atoms)


FORGERIES = [
    "/api/v1/providers%0D%0A203.0.113.1%20%22GET%20/api/v1/audit%22%20200%2042%200.001s",
    "/api/v1/x%0Aforged", "/api/v1/x%0Dforged", "/api/v1/x%0D%0Aforged", "/api/v1/x%85forged",
    "/api/v1/x%E2%80%A8forged", "/api/v1/x%1B[2Jforged", "/api/v1/x%22%20forged%20%22",
]


@pytest.mark.parametrize("raw_uri", FORGERIES)
def test_a_line_break_in_the_path_cannot_forge_an_access_log_line(raw_uri):
    for log_format in (GUNICORN_CONF["access_log_format"], EVERY_URL_ATOM):
        line = access_line(raw_uri, log_format)
        assert len(line.splitlines()) == 1 and "\x1b" not in line, line
    line = access_line(raw_uri)
    assert line.startswith('203.0.113.9 "GET /api/v1/') and line.endswith(" 404 12 0.003000s")
    assert line.count('"') - line.count('\\"') == 2, line  # the quotes are the format's


FEED_URLS = [
    "/api/v1/calendars/cal_SECRET123.ics", "/api/v1/calendars/cal_SECRET123.ICS",
    "/api/v1/calendars/cal_SECRET123", "/api/v1/calendars/cal_SECRET123.ics/",
    "/api/v1/calendars/cal_SECRET123.ics?refresh=1", "/API/V1/CALENDARS/cal_SECRET123.ics",
    "/api/v1/%63alendars/cal_SECRET123.ics", "/api/v1/calendars/cal_SECR%45T123.ics",
    "/api/v1/calendars%2Fcal_SECRET123.ics", "//api/v1/calendars/cal_SECRET123.ics",
    "/api/v1/calendars/cal_SECRET123%0A.ics", "/api/v1/calendars/cal_SECRET123;x=1",
    "/api/v1/calendars/cal_SEC%20SECRET123.ics",
]


@pytest.mark.parametrize("raw_uri", FEED_URLS)
def test_a_feed_token_is_masked_in_every_form_of_the_url(raw_uri):
    for log_format in (GUNICORN_CONF["access_log_format"], EVERY_URL_ATOM):
        line = access_line(raw_uri, log_format)
        assert "SECRET" not in line.upper() and "SECR" not in line.upper(), line
        assert "<token>" in line
    assert redact("/api/v1/providers/3f6c") == "/api/v1/providers/3f6c"  # the rest as is


def test_a_real_gunicorn_writes_one_line_per_request_and_no_token(app, database_url,
                                                                 tmp_path):
    """gunicorn itself, with the project's gunicorn.conf.py, answering raw requests."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": database_url, "PORT": str(port),
           "HOST": "127.0.0.1", "WEB_CONCURRENCY": "1"}
    out, err = (tmp_path / "access.log").open("wb"), (tmp_path / "error.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--config", "gunicorn.conf.py",
         "service.wsgi:app"], cwd=ROOT, env=env, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    (tmp_path / "error.log").read_text())
                time.sleep(0.2)
        for raw_uri in (FORGERIES[0], FEED_URLS[1], FEED_URLS[2], FEED_URLS[6]):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
                connection.sendall(f"GET {raw_uri} HTTP/1.1\r\nHost: localhost\r\n"
                                   "Connection: close\r\n\r\n".encode())
                answer = b""
                while chunk := connection.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 4"), answer[:200]
    finally:
        server.terminate()
        server.wait(timeout=30)
        out.close()
        err.close()
    log = (tmp_path / "access.log").read_text()
    lines = log.splitlines()
    assert len(lines) == 4, log
    assert all(line.startswith('127.0.0.1 "GET /') for line in lines), log
    assert "SECRET" not in log.upper() and log.count("<token>") == 3, log
