"""The schemas' dump (``service.extensions.Schema._serialize``) reads plain fields with
``getattr`` instead of through marshmallow's accessor chain: every answer must stay byte for
byte what marshmallow's own ``_serialize`` gives."""

from __future__ import annotations

import marshmallow as ma
import pytest

from service.extensions import Schema
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
