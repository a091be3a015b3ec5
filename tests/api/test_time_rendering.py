"""One rendering of time: every instant leaves with the offset of the zone it belongs to (the
location's), the same in POST, GET, lists, 409 alternatives, slots and series; a telehealth
booking also shows the start on the patient's clock; ``?timezone=`` renders a read in
another zone. Storage stays UTC."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from flask import g
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.bookings.zones import Zones
from service.rendering import patient_local, render, render_in
from tests.api.test_directory import assert_problem
from tests.api.test_series import book_series
from tests.scenario import build_clinic

PHOENIX = ZoneInfo("America/Phoenix")
DENVER = ZoneInfo("America/Denver")  # the Navajo Nation (Tuba City) keeps DST
NEW_YORK = "America/New_York"


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def offset_of(text: str) -> timedelta:
    return datetime.fromisoformat(text).utcoffset()


def test_post_get_list_and_slots_show_one_string_in_the_location_zone(clinic, api):
    start = clinic.at(9)
    slot = next(s for s in clinic.slots("iv-infusion", location_id=clinic.clinic["id"])
                if datetime.fromisoformat(s["start"]) == start)
    # The caller sends UTC; every answer shows Phoenix time, as the slot was offered.
    response = clinic.book("iv-infusion", start.astimezone(UTC))
    assert response.status_code == 201, response.get_json()
    posted = response.get_json()
    assert posted["start"] == slot["start"] == start.isoformat()
    assert posted["end"] == slot["end"]
    assert posted["timezone"] == "America/Phoenix"
    assert posted["patient_timezone"] is None and posted["patient_local_start"] is None
    assert offset_of(posted["created_at"]) == timedelta(hours=-7)
    got = api.get(f"/api/v1/bookings/{posted['id']}").get_json()
    listed = api.get("/api/v1/bookings").get_json()
    assert got == posted
    assert listed == [posted]


def test_telehealth_booking_shows_the_patients_local_start(clinic, api):
    tuba_city = clinic.add_patient(first_name="Tuba", timezone="America/Denver")
    start = clinic.at(14)
    response = clinic.book("consultation", start, patient=tuba_city)
    assert response.status_code == 201, response.get_json()
    booking = response.get_json()
    assert booking["timezone"] == "America/Phoenix"
    assert booking["start"] == start.isoformat()
    assert booking["patient_timezone"] == "America/Denver"
    assert booking["patient_local_start"] == start.astimezone(DENVER).isoformat()
    assert datetime.fromisoformat(booking["patient_local_start"]) == start
    assert api.get(f"/api/v1/bookings/{booking['id']}").get_json() == booking


def test_timezone_parameter_renders_a_read_in_another_zone(clinic, api):
    booking = clinic.book("iv-infusion", clinic.at(9)).get_json()
    url = f"/api/v1/bookings/{booking['id']}"
    response = api.get(url, query_string={"timezone": NEW_YORK})
    assert response.status_code == 200
    shown = response.get_json()
    assert shown["start"] == clinic.at(9).astimezone(ZoneInfo(NEW_YORK)).isoformat()
    assert datetime.fromisoformat(shown["start"]) == clinic.at(9)
    assert shown["timezone"] == "America/Phoenix"  # the booking's own zone does not change
    listed = api.get("/api/v1/bookings", query_string={"timezone": NEW_YORK}).get_json()
    assert listed[0]["start"] == shown["start"]
    # Each rendering has its own ETag: a 304 is never the copy of another zone.
    assert response.headers["ETag"] == f'"v1@{NEW_YORK}"'
    again = api.get(url, query_string={"timezone": NEW_YORK},
                    headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    other = api.get(url, headers={"If-None-Match": response.headers["ETag"]})
    assert other.status_code == 200 and other.get_json()["start"] == booking["start"]
    # The zone-specific tag names the same version for If-Match.
    moved = api.post(f"{url}/reschedule", json={"start": clinic.at(10).isoformat()},
                     headers={"If-Match": response.headers["ETag"]})
    assert moved.status_code == 200, moved.get_json()


@pytest.mark.parametrize("path", ["/api/v1/bookings", "/api/v1/series"])
def test_an_unknown_zone_is_422_with_a_stable_code(api, path):
    body = assert_problem(api.get(path, query_string={"timezone": "Mars/Olympus"}), 422,
                          "invalid_timezone")
    assert body["errors"][0]["field"] == "timezone"
    assert_problem(api.get(f"{path}/{uuid.uuid4()}", query_string={"timezone": "Nope"}), 422,
                   "invalid_timezone")


def test_409_alternatives_show_the_slots_strings(clinic):
    assert clinic.book("consultation", clinic.at(14)).status_code == 201
    other = clinic.add_patient(first_name="Other")
    body = assert_problem(clinic.book("consultation", clinic.at(14).astimezone(UTC),
                                      patient=other), 409, "slot_unavailable")
    offered = {s["start"] for s in clinic.slots("consultation")}
    assert body["alternatives"]
    for alternative in body["alternatives"]:
        assert offset_of(alternative["start"]) == timedelta(hours=-7)
        assert alternative["start"] in offered


def test_series_sessions_show_the_bookings_strings(clinic, api):
    response = book_series(clinic, clinic.at(9))
    assert response.status_code == 201, response.get_json()
    series = response.get_json()
    sessions = {o["id"]: o["start"] for o in series["occurrences"]}
    bookings = {b["id"]: b["start"] for b in
                api.get("/api/v1/bookings", query_string={"page_size": 50}).get_json()}
    assert sessions == bookings
    assert offset_of(series["first_start"]) == timedelta(hours=-7)
    assert series["next_due"] == series["occurrences"][0]["start"]
    shown = api.get(f"/api/v1/series/{series['id']}",
                    query_string={"timezone": NEW_YORK}).get_json()
    assert [datetime.fromisoformat(o["start"]) for o in shown["occurrences"]] == [
        datetime.fromisoformat(o["start"]) for o in series["occurrences"]]
    assert {str(offset_of(o["start"])) for o in shown["occurrences"]} <= {
        "-1 day, 19:00:00", "-1 day, 20:00:00"}


# The rendering itself, across DST: a Phoenix telehealth visit of a Tuba City patient ---


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC)))
def test_patient_local_start_is_phoenix_time_or_an_hour_later(app, instant):
    location, service, patient = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    booking = SimpleNamespace(location_id=location, service_type_id=service,
                              patient_id=patient, starts_at=instant)
    with app.test_request_context("/"):
        g.clinic_zones = Zones(locations={location: "America/Phoenix"},
                               telehealth_services=frozenset({service}))
        g.patient_zones = {patient: "America/Denver"}
        shown = datetime.fromisoformat(render(instant, booking))
        local = datetime.fromisoformat(patient_local(instant, booking))
        render_in(NEW_YORK)
        asked = datetime.fromisoformat(render(instant, booking))
    assert shown == local == asked == instant  # one instant, three renderings
    assert shown.utcoffset() == timedelta(hours=-7)  # Phoenix keeps MST all year
    dst = instant.astimezone(DENVER).dst()
    assert local.utcoffset() == timedelta(hours=-6 if dst else -7)
    assert local.replace(tzinfo=None) - shown.replace(tzinfo=None) == dst
    assert asked.utcoffset() == instant.astimezone(ZoneInfo(NEW_YORK)).utcoffset()


def test_an_in_person_visit_has_no_patient_local_time(app):
    booking = SimpleNamespace(location_id=uuid.uuid4(), service_type_id=uuid.uuid4(),
                              patient_id=uuid.uuid4(), starts_at=datetime.now(UTC))
    with app.test_request_context("/"):
        g.clinic_zones = Zones(locations={booking.location_id: "America/Phoenix"})
        assert patient_local(booking.starts_at, booking) is None


def test_a_location_in_another_zone_shows_its_bookings_and_their_reminders_in_it(clinic, api):
    chicago = ZoneInfo("America/Chicago")  # never Phoenix's offset
    video = api.create("/api/v1/locations", {"name": "Video (Chicago)", "kind": "virtual",
                                             "timezone": "America/Chicago"})
    clinic.set_hours(clinic.doctor, clinic.standard_hours() + [
        {"location_id": video["id"], "weekday": d, "start": "19:00", "end": "21:00"}
        for d in range(7)])
    start = datetime.combine(clinic.day, datetime.min.time().replace(hour=19), tzinfo=chicago)
    slots = clinic.slots("consultation", location_id=video["id"])
    assert slots[0]["start"] == start.isoformat()
    response = clinic.book("consultation", start.astimezone(UTC), location=video)
    assert response.status_code == 201, response.get_json()
    booking = response.get_json()
    assert booking["timezone"] == "America/Chicago"
    assert booking["start"] == start.isoformat()
    assert booking["patient_timezone"] == "America/Phoenix"
    assert booking["patient_local_start"] == start.astimezone(PHOENIX).isoformat()
    late_from = datetime.fromisoformat(booking["cancellation"]["late_from"])
    assert late_from.utcoffset() == late_from.astimezone(chicago).utcoffset()
    reminders = api.get("/api/v1/reminders", query_string={"booking_id": booking["id"]})
    assert reminders.status_code == 200, reminders.get_json()
    assert reminders.get_json()
    for reminder in reminders.get_json():
        due = datetime.fromisoformat(reminder["due_at"])
        assert due.utcoffset() == due.astimezone(chicago).utcoffset()
        assert offset_of(reminder["created_at"]) == offset_of(booking["created_at"])
