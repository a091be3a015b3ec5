"""The POST path's shortcuts answer what the machinery they skip answers: a plain schema's
load (``Schema._do_load``) and a 201's headers (``CreatedResponse``)."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
import pytest
from flask import Response
from werkzeug.test import create_environ

from service.resources.bookings.schemas import (
    BookingCreateSchema,
    CancelSchema,
    RescheduleSchema,
)
from service.resources.common import CreatedResponse

ID = "5b7f0c1e-0d2a-4c61-9a53-1f0e6c2d9b11"
VALID = {"patient_id": ID, "provider_id": ID, "service_type_id": ID, "location_id": ID,
         "start": "2026-12-01T10:00:00-07:00"}


def _marshmallow(schema: ma.Schema, data: Any, **kwargs: Any) -> Any:
    """marshmallow's own load (what the shortcut stands for)."""
    try:
        return "ok", ma.Schema._do_load(schema, data, **kwargs)
    except ma.ValidationError as error:
        return "refused", error.messages


def _ours(schema: ma.Schema, data: Any, **kwargs: Any) -> Any:
    try:
        return "ok", schema.load(data, **kwargs)
    except ma.ValidationError as error:
        return "refused", error.messages


@pytest.mark.parametrize("data", [
    VALID,
    {**VALID, "patient_state": "AZ", "ride_home_confirmed": True, "hold": True,
     "note": "n"},
    {**VALID, "start": "2026-12-01T10:00:00"},
    {**VALID, "patient_id": "not a uuid"},
    {**VALID, "patient_id": None},
    {**VALID, "patient_state": "XX"},
    {**VALID, "note": "x" * 501},
    {**VALID, "surprise": 1},
    {key: value for key, value in VALID.items() if key != "start"},
    {},
    [],
    "text",
])
def test_a_plain_schema_loads_as_marshmallow_does(data: Any) -> None:
    schema = BookingCreateSchema()
    assert _ours(schema, data) == _marshmallow(schema, data)
    assert _ours(schema, data, unknown=ma.EXCLUDE) == _marshmallow(schema, data,
                                                                   unknown=ma.EXCLUDE)
    assert _ours(schema, data, partial=True) == _marshmallow(schema, data, partial=True)


@pytest.mark.parametrize("schema", [CancelSchema(), RescheduleSchema()])
@pytest.mark.parametrize("data", [
    {"reason": "r", "override": {"reason": "because"}},
    {"start": "2026-12-01T10:00:00Z", "override": {"reason": ""}},
    {"reason": "r", "override": {"reason": "because", "more": 1}},
])
def test_nested_schemas_load_as_marshmallow_does(schema: ma.Schema, data: Any) -> None:
    assert _ours(schema, data) == _marshmallow(schema, data)


@pytest.mark.parametrize(("status", "headers"), [
    (201, {"Location": f"/api/v1/bookings/{uuid.uuid4()}", "ETag": '"v1"'}),
    (201, {"Location": "/api/v1/bookings/é"}),  # not a plain path: converted
    (201, {"Location": "/a b?c=d"}),
    (201, {"Location": "/api/v1/x", "Content-Location": "/api/v1/é"}),
    (200, {"Location": "/api/v1/x"}),
    (201, {}),
])
def test_a_created_response_sends_the_headers_werkzeug_would(
        status: int, headers: dict[str, str]) -> None:
    environ = create_environ("/api/v1/bookings", "http://localhost/", method="POST")

    def made() -> Response:
        response = Response('{"a":1}\n', status=status, mimetype="application/json")
        response.headers.update(headers)
        return response

    ours = CreatedResponse.force_type(made()).get_wsgi_headers(environ)
    assert list(ours.items()) == list(made().get_wsgi_headers(environ).items())
