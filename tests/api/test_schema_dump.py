"""The schemas' dump (``service.extensions.Schema._serialize``) reads plain fields with
``getattr`` instead of through marshmallow's accessor chain: every answer must stay byte for
byte what marshmallow's own ``_serialize`` gives."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import marshmallow as ma
import pytest
from flask import jsonify

from service.domain.access.actor import Role
from service.domain.bookings import reading, services
from service.extensions import Schema, current_actor, unit_of_work
from service.resources.bookings import routes as booking_routes
from service.resources.bookings.schemas import BookingSchema
from tests.factories import NPIS
from tests.scenario import build_clinic


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def both_ways(api, monkeypatch, path: str, **kwargs) -> tuple[bytes, bytes]:
    """The body of GET ``path`` as served, then as marshmallow's own dump serves it."""
    served = api.get(path, **kwargs)
    assert served.status_code == 200, served.get_json()
    with monkeypatch.context() as patched:
        patched.setattr(Schema, "_serialize", ma.Schema._serialize)
        plain = api.get(path, **kwargs)
    assert plain.status_code == 200
    return served.get_data(), plain.get_data()


def test_a_booking_and_a_list_dump_as_marshmallow_dumps_them(clinic, api, monkeypatch):
    tuba_city = clinic.add_patient(first_name="Tuba", timezone="America/Denver")
    telehealth = clinic.book("consultation", clinic.at(14), patient=tuba_city,
                             note="Prefers mornings").get_json()
    in_person = clinic.book("iv-infusion", clinic.at(9)).get_json()
    cancelled = api.post(f"/api/v1/bookings/{in_person['id']}/cancel",
                         json={"reason": "Patient request"})
    assert cancelled.status_code == 200
    for booking in (telehealth, in_person):
        served, plain = both_ways(api, monkeypatch, f"/api/v1/bookings/{booking['id']}")
        assert served == plain
        served, plain = both_ways(api, monkeypatch, f"/api/v1/bookings/{booking['id']}",
                                  query_string={"timezone": "America/New_York"})
        assert served == plain
    served, plain = both_ways(api, monkeypatch, "/api/v1/bookings")
    assert served == plain and telehealth["id"].encode() in served
    for path in ("/api/v1/providers", "/api/v1/service-types", "/api/v1/locations",
                 f"/api/v1/patients/{tuba_city['id']}",
                 f"/api/v1/bookings/{telehealth['id']}/reminders"):
        served, plain = both_ways(api, monkeypatch, path)
        assert served == plain, path


def _as_the_schema_dumps(row, headers):
    """``GET /bookings/{id}`` answered the way it was before its direct rendering: the
    booking read through the ORM with its zones and dumped by ``BookingSchema``."""
    booking = services.get_booking(unit_of_work(read_only=True), current_actor(), row.id)
    response = jsonify(BookingSchema().dump(booking))
    response.headers.update(headers)
    return response


def rendered_and_dumped(api, monkeypatch, path: str, **kwargs) -> tuple[Any, Any]:
    """GET ``path`` as served (the direct rendering), then as the schema's dump serves it."""
    served = api.get(path, **kwargs)
    with monkeypatch.context() as patched:
        patched.setattr(booking_routes, "booking_response", _as_the_schema_dumps)
        dumped = api.get(path, **kwargs)
    return served, dumped


def test_a_booking_rendered_directly_is_the_schema_dump_byte_for_byte(clinic, api,
                                                                      monkeypatch):
    """Every kind of booking, in its own zone and in another, for every role that may read
    it: the same status, body and ETag as ``BookingSchema``'s dump; a role that may not see
    it gets the same refusal."""
    tuba_city = clinic.add_patient(first_name="Tuba", timezone="America/Denver")
    telehealth = clinic.book("consultation", clinic.at(14), patient=tuba_city,
                             note="Prefers mornings").get_json()
    in_clinic = clinic.book("iv-infusion", clinic.at(9)).get_json()
    assert in_clinic["chair_number"] is not None
    cancelled = clinic.book("esketamine", clinic.at(11)).get_json()
    assert api.post(f"/api/v1/bookings/{cancelled['id']}/cancel",
                    json={"reason": "Patient request"}).status_code == 200
    moved = clinic.book("consultation", clinic.at(13), patient=tuba_city)
    assert moved.status_code == 201, moved.get_json()
    moved = moved.get_json()
    rescheduled = api.post(f"/api/v1/bookings/{moved['id']}/reschedule",
                           json={"start": clinic.at(15).isoformat()},
                           headers={"If-Match": f'"v{moved["version"]}"'})
    assert rescheduled.status_code == 200, rescheduled.get_json()
    series = api.post("/api/v1/series", json={
        "patient_id": clinic.patient["id"], "provider_id": clinic.doctor["id"],
        "service_type_id": clinic.services["iv-infusion"]["id"],
        "location_id": clinic.clinic["id"], "first_start": clinic.at(9, day=clinic.day
                                                                     + timedelta(days=1))
        .isoformat(), "ride_home_confirmed": True, "protocol": "iv-induction"})
    assert series.status_code == 201, series.get_json()
    in_series = [b for b in api.get("/api/v1/bookings?page_size=100").get_json()
                 if b["series_id"] == series.get_json()["id"]]
    assert in_series
    api.bind("robin", Role.PATIENT, patient_id=clinic.patient["id"])
    api.bind("tuba", Role.PATIENT, patient_id=tuba_city["id"])
    api.bind("doctor", Role.PROVIDER, provider_id=clinic.doctor["id"])
    other = clinic.add_provider("Dr. Other", NPIS[1])
    api.bind("other", Role.PROVIDER, provider_id=other["id"])
    readers = ("staff", "admin", "integration", "robin", "tuba", "doctor", "other")
    seen = 0
    for booking in (telehealth, in_clinic, cancelled, moved, in_series[0]):
        path = f"/api/v1/bookings/{booking['id']}"
        for role in readers:
            for query in ({}, {"timezone": "America/New_York"}, {"timezone": "Asia/Kolkata"}):
                served, dumped = rendered_and_dumped(api, monkeypatch, path, role=role,
                                                     query_string=query)
                assert served.status_code == dumped.status_code, (path, role)
                if served.status_code == 200:
                    assert served.get_data() == dumped.get_data(), (path, role, query)
                else:  # the same problem, but for its request's own id
                    assert ({**served.get_json(), "request_id": None}
                            == {**dumped.get_json(), "request_id": None}), (path, role)
                assert served.headers.get("ETag") == dumped.headers.get("ETag")
                assert served.headers.get("Content-Type") == dumped.headers.get(
                    "Content-Type")
                seen += served.status_code == 200
    assert seen >= 5 * 3 * 4  # staff, admin, integration and the booking's own keys
    served = api.get(f"/api/v1/bookings/{cancelled['id']}").get_json()
    assert served["cancel_reason"] == "Patient request" and served["cancelled_at"]
    assert api.get(f"/api/v1/bookings/{telehealth['id']}").get_json()["patient_timezone"] == (
        "America/Denver")


def test_a_booking_made_is_answered_as_the_schema_dumps_it(clinic, api, monkeypatch):
    """POST /bookings renders its 201 directly from the booking it made (``reading.as_read``):
    every kind of booking, for every role that may book it, the body is byte for byte
    ``BookingSchema``'s dump of that booking in the same request."""
    dumped: list[bytes] = []
    as_read = reading.as_read

    def dumping_too(booking):
        dumped.append(jsonify(BookingSchema().dump(booking)).get_data())
        return as_read(booking)

    monkeypatch.setattr(reading, "as_read", dumping_too)
    tuba_city = clinic.add_patient(first_name="Tuba", timezone="America/Denver")
    api.bind("robin", Role.PATIENT, patient_id=clinic.patient["id"])
    api.bind("tuba", Role.PATIENT, patient_id=tuba_city["id"])
    api.bind("doctor", Role.PROVIDER, provider_id=clinic.doctor["id"])
    made = [
        clinic.book("consultation", clinic.at(14), patient=tuba_city, note="Prefers mornings"),
        clinic.book("consultation", clinic.at(16), patient=tuba_city, role="tuba",
                    patient_state="AZ"),
        clinic.book("iv-infusion", clinic.at(9), role="admin"),
        clinic.book("esketamine", clinic.at(9, day=clinic.day + timedelta(days=1))),
        clinic.book("consultation", clinic.at(13), role="robin", hold=True),
        clinic.book("consultation", clinic.at(15, day=clinic.day + timedelta(days=1)),
                    role="integration"),
    ]
    assert [response.status_code for response in made] == [201] * len(made), [
        response.get_json().get("code") for response in made]
    assert len(dumped) == len(made)
    for response, body in zip(made, dumped, strict=True):
        assert response.get_data() == body
        answer = response.get_json()
        assert response.headers["ETag"] == f'"v{answer["version"]}"'
        assert response.headers["Location"] == f"/api/v1/bookings/{answer['id']}"
        assert response.headers["Content-Type"] == "application/json"
        # and what a read of it answers then (but for the instant it is read at)
        read = api.get(f"/api/v1/bookings/{answer['id']}").get_json()
        assert {**read, "cancellation": None} == {**answer, "cancellation": None}
    statuses = {response.get_json()["status"] for response in made}
    assert statuses == {"booked", "pending"}
    assert made[2].get_json()["chair_number"] is not None
    assert made[0].get_json()["patient_timezone"] == "America/Denver"
