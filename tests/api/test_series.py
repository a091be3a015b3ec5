"""Treatment series through HTTP: protocols, preview, all-or-nothing booking, DST, access."""

from __future__ import annotations

import threading
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from service.domain.series.protocols import PROTOCOLS, check_days
from tests.api.test_consultations import monitored
from tests.api.test_directory import assert_problem
from tests.factories import NPIS, clinic_payload, clinic_today
from tests.scenario import Clinic, build_clinic

DENVER = ZoneInfo("America/Denver")
IV = PROTOCOLS["iv-induction"]


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def series_body(clinic: Clinic, start: datetime, *, protocol: str | None = "iv-induction",
                service: str = "iv-infusion", patient: dict | None = None,
                provider: dict | None | bool = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "patient_id": (patient or clinic.patient)["id"],
        "service_type_id": clinic.services[service]["id"],
        "location_id": clinic.clinic["id"],
        "first_start": start.isoformat(),
        "ride_home_confirmed": True,
        **extra,
    }
    if protocol is not None:
        body["protocol"] = protocol
    if provider is not False:
        body["provider_id"] = (provider or clinic.doctor)["id"]
    return body


def preview(clinic: Clinic, start: datetime, role: str = "staff", **kwargs: Any) -> dict:
    response = clinic.api.post("/api/v1/series/preview", json=series_body(clinic, start,
                                                                            **kwargs),
                               role=role)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def book_series(clinic: Clinic, start: datetime, *, role: str = "staff",
                headers: dict | None = None, **kwargs: Any):
    return clinic.api.post("/api/v1/series", json=series_body(clinic, start, **kwargs),
                           role=role, headers=headers)


def starts_of(occurrences: list[dict]) -> list[datetime]:
    return [datetime.fromisoformat(o["start"]) for o in occurrences]


def all_bookings(api) -> list[dict]:
    response = api.get("/api/v1/bookings?page_size=100")
    assert response.status_code == 200
    return response.get_json()


def navajo_clinic(clinic: Clinic, *, hours: tuple[str, str] = ("08:00", "12:00"),
                  duration: int = 45, recovery: int = 60) -> tuple[dict, dict, dict]:
    """A clinic in Tuba City, Arizona, on Navajo Nation time (America/Denver, with DST), a
    provider working there every day and a treatment bookable two years ahead."""
    api = clinic.api
    location = api.create("/api/v1/locations", clinic_payload(
        name="Tuba City clinic", timezone="America/Denver", city="Tuba City",
        postal_code="86045"))
    service = api.create("/api/v1/service-types", {
        "code": "tuba-infusion", "name": "IV infusion (Tuba City)", "modality": "in-person",
        "duration_minutes": duration, "recovery_minutes": recovery,
        "slot_interval_minutes": 15, "needs_chair": True, "needs_clearance": True,
        "min_notice_minutes": 1440, "horizon_days": 730})
    far = (clinic_today() + timedelta(days=700)).isoformat()
    provider = clinic.add_provider(
        "Dr. Nora Yazzie", NPIS[3], licenses=[{"expires_on": far}],
        hours=[{"location_id": location["id"], "weekday": d, "start": hours[0],
                "end": hours[1]} for d in range(7)])
    clinic.services["tuba-infusion"] = service
    return location, service, provider


def first_sunday_of_november(after: date) -> date:
    year = 2027
    while True:
        day = date(year, 11, 1)
        day += timedelta(days=(6 - day.weekday()) % 7)
        if day > after + timedelta(days=14):
            return day
        year += 1


# Protocols ------------------------------------------------------------------------------


def test_protocols_are_listed_as_data(api):
    response = api.get("/api/v1/protocols")
    assert response.status_code == 200
    protocols = {p["code"]: p for p in response.get_json()}
    assert protocols["iv-induction"]["sessions"] == 6
    assert protocols["iv-induction"]["min_gap_days"] == 2
    assert protocols["iv-induction"]["window_days"] == 21
    assert protocols["esketamine-induction"]["phases"] == [{"weeks": 4, "per_week": 2},
                                                           {"weeks": 4, "per_week": 1}]
    assert protocols["booster"]["after_previous_days"] == [21, 42]
    assert "X-Pagination" in response.headers
    assert len(api.get("/api/v1/protocols?page_size=1").get_json()) == 1


# Preview --------------------------------------------------------------------------------


def test_preview_reports_every_session_and_writes_nothing(clinic, api):
    body = preview(clinic, clinic.at(9))
    assert body["bookable"] is True and body["timezone"] == "America/Phoenix"
    assert [o["status"] for o in body["occurrences"]] == ["ok"] * 6
    days = [s.date() for s in starts_of(body["occurrences"])]
    assert days[0] == clinic.day and check_days(IV, days) == []
    assert all(s.time() == time(9) for s in starts_of(body["occurrences"]))
    assert {o["provider_id"] for o in body["occurrences"]} == {clinic.doctor["id"]}
    assert all_bookings(api) == []
    assert api.get("/api/v1/series").get_json() == []


def test_preview_keeps_preferred_weekdays_and_time(clinic):
    body = preview(clinic, clinic.at(9), preferred_weekdays=[0, 2, 4], preferred_time="10:30")
    local = starts_of(body["occurrences"])
    assert all(s.time() == time(10, 30) for s in local)
    assert all(s.weekday() in (0, 2, 4) for s in local[1:])
    assert check_days(IV, [s.date() for s in local]) == []


def test_preview_flags_a_conflict_with_the_nearest_alternative_that_keeps_spacing(clinic):
    planned = starts_of(preview(clinic, clinic.at(9))["occurrences"])
    other = clinic.add_cleared_patient(first_name="Other")
    assert clinic.book("iv-infusion", planned[2], patient=other).status_code == 201
    body = preview(clinic, clinic.at(9))
    third = body["occurrences"][2]
    assert body["bookable"] is False
    assert (third["status"], third["code"]) == ("conflict", "slot_unavailable")
    assert third["reason"] == "The provider is booked then."
    alternative = datetime.fromisoformat(third["alternative"]["start"])
    assert alternative != planned[2] and abs(alternative - planned[2]) <= timedelta(hours=2)
    moved = [s.date() for s in planned]
    moved[2] = alternative.date()
    assert check_days(IV, moved) == []
    assert [o["status"] for i, o in enumerate(body["occurrences"]) if i != 2] == ["ok"] * 5


def test_preview_flags_chair_full(clinic):
    planned = starts_of(preview(clinic, clinic.at(9))["occurrences"])
    for i in (1, 2):  # the clinic's two chairs, taken by other providers' patients
        provider = clinic.add_provider(f"Dr. Chair {i}", NPIS[i])
        patient = clinic.add_cleared_patient(first_name=f"Chair{i}")
        assert clinic.book("iv-infusion", planned[1], provider=provider,
                           patient=patient).status_code == 201
    second = preview(clinic, clinic.at(9))["occurrences"][1]
    assert (second["status"], second["code"]) == ("chair_full", "slot_unavailable")
    assert second["alternative"] is not None


def test_preview_flags_outside_hours_and_outside_booking_window(clinic):
    body = preview(clinic, clinic.at(13))  # the doctor is on video in the afternoon
    assert {o["status"] for o in body["occurrences"]} == {"outside_hours"}
    assert body["occurrences"][0]["code"] == "outside_working_hours"
    late = clinic.at(9, day=clinic_today() + timedelta(days=85))  # horizon: 90 days
    statuses = [o["status"] for o in preview(clinic, late)["occurrences"]]
    assert statuses[0] == "ok" and "outside_booking_window" in statuses


def test_preview_of_a_series_with_an_expiring_license(clinic, api):
    expires = clinic.day + timedelta(days=7)
    lapsing = clinic.add_provider("Dr. Soon Lapsed", NPIS[1],
                                  licenses=[{"expires_on": expires.isoformat()}])
    body = preview(clinic, clinic.at(9), provider=lapsing)
    for occurrence in body["occurrences"]:
        day = datetime.fromisoformat(occurrence["start"]).date()
        if day <= expires:
            assert occurrence["status"] == "ok"
        else:
            assert (occurrence["status"], occurrence["code"]) == ("unlicensed",
                                                                  "provider_not_licensed")
            assert "license" in occurrence["reason"]
    assert {o["status"] for o in body["occurrences"]} == {"ok", "unlicensed"}
    # Refused at booking: nothing is written.
    refused = assert_problem(book_series(clinic, clinic.at(9), provider=lapsing), 409,
                             "series_conflict")
    assert refused["occurrences"] == body["occurrences"]  # the preview's very format
    assert all("T" in o["start"] for o in body["occurrences"])
    assert all_bookings(api) == []


def test_preview_with_any_licensed_provider_books_around_an_expiry(clinic):
    expires = clinic.day + timedelta(days=7)
    lapsing = clinic.add_provider("Dr. Abe Lapsed", NPIS[1],  # first by name
                                  licenses=[{"expires_on": expires.isoformat()}])
    body = preview(clinic, clinic.at(9), provider=False)
    assert body["provider_id"] is None and body["bookable"] is True
    for occurrence in body["occurrences"]:
        day = datetime.fromisoformat(occurrence["start"]).date()
        expected = lapsing if day <= expires else clinic.doctor
        assert occurrence["provider_id"] == expected["id"]
    series = book_series(clinic, clinic.at(9), provider=False).get_json()
    assert series["provider_id"] is None
    assert [o["provider_id"] for o in series["occurrences"]] == [
        o["provider_id"] for o in body["occurrences"]]


def test_sessions_of_a_series_do_not_collide_with_each_other(clinic):
    """A 24-hour hold repeated daily at 10:00 across the March DST change: the two sessions
    are only 23 hours apart, so the second would overlap the first."""
    location, service, provider = navajo_clinic(clinic, hours=("08:00", "23:00"),
                                                duration=720, recovery=720)
    spring = date(2027, 3, 13)
    start = datetime.combine(spring, time(10), tzinfo=DENVER)
    body = preview(clinic, start, protocol=None, rrule="FREQ=DAILY;COUNT=2",
                   service="tuba-infusion", provider=provider, location_id=location["id"])
    first, second = body["occurrences"]
    assert first["status"] == "ok"
    assert (second["status"], second["code"]) == ("conflict", "slot_unavailable")
    assert "overlaps session 1" in second["reason"]


# Booking a series -----------------------------------------------------------------------


def test_booking_a_series_books_every_session_with_its_series_id(clinic, api):
    response = book_series(clinic, clinic.at(9))
    assert response.status_code == 201, response.get_json()
    series = response.get_json()
    assert response.headers["Location"] == f"/api/v1/series/{series['id']}"
    assert response.headers["ETag"] == '"v1"'
    assert series["status"] == "active" and series["planned_sessions"] == 6
    assert series["progress"] == {"planned": 6, "completed": 0, "remaining": 6, "missed": 0,
                                  "cancelled": 0}
    assert series["protocol_window"]["met"] is True
    assert datetime.fromisoformat(series["next_due"]) == clinic.at(9)
    booked = all_bookings(api)
    assert len(booked) == 6 and {b["series_id"] for b in booked} == {series["id"]}
    assert {b["status"] for b in booked} == {"booked"}
    assert api.get(f"/api/v1/series/{series['id']}").get_json() == series


def test_all_or_nothing_when_session_5_of_6_conflicts(clinic, api):
    planned = starts_of(preview(clinic, clinic.at(9))["occurrences"])
    other = clinic.add_cleared_patient(first_name="Other")
    blocker = clinic.book("iv-infusion", planned[4], patient=other).get_json()
    body = assert_problem(book_series(clinic, clinic.at(9)), 409, "series_conflict")
    statuses = [o["status"] for o in body["occurrences"]]
    assert statuses == ["ok", "ok", "ok", "ok", "conflict", "ok"]
    assert body["occurrences"][4]["alternative"] is not None
    assert [b["id"] for b in all_bookings(api)] == [blocker["id"]]
    assert api.get("/api/v1/series").get_json() == []


def test_booking_a_series_honours_the_idempotency_key(clinic, api):
    headers = {"Idempotency-Key": "series-1"}
    first = book_series(clinic, clinic.at(9), headers=headers)
    again = book_series(clinic, clinic.at(9), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert len(all_bookings(api)) == 6 and len(api.get("/api/v1/series").get_json()) == 1


def test_two_series_racing_for_the_same_slots_one_wins_entirely(app, clinic, api):
    rivals = [clinic.add_cleared_patient(first_name=f"Racer{i}")
              for i in range(2)]
    barrier = threading.Barrier(len(rivals))
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def race(patient):
        client = app.test_client()
        body = series_body(clinic, clinic.at(9), patient=patient)
        barrier.wait()
        response = client.post("/api/v1/series", json=body, headers={
            "Authorization": f"Bearer {api.tokens['staff']}"})
        with lock:
            answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=race, args=(p,)) for p in rivals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(status for status, _ in answers) == [201, 409], answers
    winner = next(body for status, body in answers if status == 201)
    loser = next(body for status, body in answers if status == 409)
    assert loser["code"] == "series_conflict"
    booked = all_bookings(api)
    assert len(booked) == 6
    assert {b["series_id"] for b in booked} == {winner["id"]}
    assert {b["patient_id"] for b in booked} == {winner["patient_id"]}
    assert [s["id"] for s in api.get("/api/v1/series").get_json()] == [winner["id"]]


def test_series_crossing_the_november_dst_change_keeps_10_local(clinic):
    location, service, provider = navajo_clinic(clinic)
    fall_back = first_sunday_of_november(clinic_today())
    start = datetime.combine(fall_back - timedelta(days=6), time(10), tzinfo=DENVER)
    response = book_series(clinic, start, service="tuba-infusion", provider=provider,
                           location_id=location["id"])
    assert response.status_code == 201, response.get_json()
    series = response.get_json()
    assert series["timezone"] == "America/Denver"
    local = [datetime.fromisoformat(o["start"]).astimezone(DENVER)
             for o in series["occurrences"]]
    assert all((s.hour, s.minute) == (10, 0) for s in local)
    assert local[0].date() < fall_back < local[-1].date()
    offsets = {s.utcoffset() for s in local}
    assert offsets == {timedelta(hours=-6), timedelta(hours=-7)}
    utc_hours = {s.astimezone(ZoneInfo("UTC")).hour for s in local}
    assert utc_hours == {16, 17}


def test_custom_rrule_series_is_booked(clinic):
    response = book_series(clinic, clinic.at(9), protocol=None,
                           rrule="FREQ=WEEKLY;BYDAY=MO,TH;COUNT=4")
    assert response.status_code == 201, response.get_json()
    series = response.get_json()
    assert series["protocol"] == "custom" and series["planned_sessions"] == 4
    local = [datetime.fromisoformat(o["start"]) for o in series["occurrences"]]
    assert [s.weekday() for s in local] in ([0, 3, 0, 3], [3, 0, 3, 0])
    assert series["protocol_window"]["met"] is True


@pytest.mark.parametrize("rule, code", [
    ("FREQ=WEEKLY;BYDAY=MO", "rrule_unbounded"),
    ("FREQ=DAILY;COUNT=60", "rrule_too_long"),
    ("FREQ=FORTNIGHTLY;COUNT=3", "invalid_rrule"),
    ("FREQ=WEEKLY;COUNT=3;BYHOUR=25", "invalid_rrule"),
])
def test_invalid_rrule_is_422_with_a_stable_code(clinic, rule, code):
    body = series_body(clinic, clinic.at(9), protocol=None, rrule=rule)
    assert_problem(clinic.api.post("/api/v1/series/preview", json=body), 422, code)
    assert_problem(clinic.api.post("/api/v1/series", json=body), 422, code)


def test_esketamine_induction_is_twice_weekly_then_weekly(clinic):
    body = preview(clinic, clinic.at(9), protocol="esketamine-induction", service="esketamine",
                   preferred_weekdays=[0, 3])
    local = starts_of(body["occurrences"])
    assert len(local) == 12 and body["bookable"] is True
    weeks = [(s.date() - clinic.day).days // 7 for s in local]
    assert weeks == [0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7]


def test_booster_follows_the_latest_treatment_by_3_to_6_weeks(clinic):
    assert_problem(clinic.api.post("/api/v1/series/preview", json=series_body(
        clinic, clinic.at(9), protocol="booster")), 422, "previous_session_required")
    assert clinic.book("iv-infusion", clinic.at(9)).status_code == 201
    too_soon = series_body(clinic, clinic.at(9, day=clinic.day + timedelta(days=14)),
                           protocol="booster")
    refused = assert_problem(clinic.api.post("/api/v1/series/preview", json=too_soon), 422,
                             "protocol_not_satisfiable")
    assert refused["earliest"] == (clinic.day + timedelta(days=21)).isoformat()
    body = preview(clinic, clinic.at(9, day=clinic.day + timedelta(days=28)),
                   protocol="booster")
    assert datetime.fromisoformat(body["previous_session"]) == clinic.at(9)
    assert [o["status"] for o in body["occurrences"]] == ["ok"]


def test_preferred_weekdays_that_break_the_protocol_are_422(clinic):
    body = series_body(clinic, clinic.at(9), preferred_weekdays=[0])
    assert_problem(clinic.api.post("/api/v1/series/preview", json=body), 422,
                   "protocol_not_satisfiable")


def test_series_input_is_validated(clinic, api):
    body = series_body(clinic, clinic.at(9))
    assert_problem(api.post("/api/v1/series/preview", json={**body, "colour": "red"}), 422,
                   "validation_failed")
    naive = {**body, "first_start": clinic.at(9).replace(tzinfo=None).isoformat()}
    assert_problem(api.post("/api/v1/series/preview", json=naive), 422, "naive_datetime")
    both = {**body, "rrule": "FREQ=DAILY;COUNT=2"}
    assert_problem(api.post("/api/v1/series/preview", json=both), 422,
                   "protocol_or_rrule_required")
    neither = {k: v for k, v in body.items() if k != "protocol"}
    assert_problem(api.post("/api/v1/series", json=neither), 422, "protocol_or_rrule_required")
    assert_problem(api.post("/api/v1/series/preview", json={**body, "protocol": "weekly"}),
                   422, "validation_failed")
    assert_problem(api.post("/api/v1/series/preview", json={**body, "rrule": "x" * 501,
                                                            "protocol": None}),
                   422, "validation_failed")


def test_rules_across_series_fields_have_a_code(clinic, api):
    """Rules between fields are not malformed input: invalid_input, not a bare field error."""
    body = series_body(clinic, clinic.at(9))
    after = {**body, "previous_session": clinic.at(9).isoformat()}  # not a booster
    problem = assert_problem(api.post("/api/v1/series/preview", json=after), 422,
                             "invalid_input")
    assert problem["errors"][0]["field"] == "previous_session"
    days = {k: v for k, v in body.items() if k != "protocol"}
    days.update(rrule="FREQ=WEEKLY;COUNT=2", preferred_weekdays=[0])
    problem = assert_problem(api.post("/api/v1/series/preview", json=days), 422,
                             "invalid_input")
    assert problem["errors"][0]["field"] == "preferred_weekdays"


def test_far_away_dates_are_refused_never_a_500(clinic, api):
    for far in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-07:00"):
        body = {**series_body(clinic, clinic.at(9)), "first_start": far}
        assert_problem(api.post("/api/v1/series/preview", json=body), 422, "out_of_range")
        assert_problem(api.post("/api/v1/series", json=body), 422, "out_of_range")
    for far in ("1900-01-01T00:00:00+01:00", "2200-12-31T23:00:00-07:00"):
        body = {**series_body(clinic, clinic.at(9)), "first_start": far}
        assert_problem(api.post("/api/v1/series/preview", json=body), 422,
                       "outside_booking_window")
        assert_problem(api.post("/api/v1/series", json=body), 422, "outside_booking_window")
    body = series_body(clinic, clinic.at(9), protocol="booster",
                       previous_session="0001-01-01T00:00:00+01:00")
    assert_problem(api.post("/api/v1/series/preview", json=body), 422, "out_of_range")
    for previous in ("1900-01-01T00:00:00+01:00", clinic.at(10).isoformat()):
        body = series_body(clinic, clinic.at(9), protocol="booster", previous_session=previous)
        assert_problem(api.post("/api/v1/series/preview", json=body), 422,
                       "protocol_not_satisfiable")


def test_location_is_required_when_several_offer_the_service(clinic, api):
    api.create("/api/v1/locations", clinic_payload(name="Scottsdale clinic"))
    body = {k: v for k, v in series_body(clinic, clinic.at(9)).items() if k != "location_id"}
    refused = assert_problem(api.post("/api/v1/series/preview", json=body), 422,
                             "location_required")
    assert clinic.clinic["id"] in refused["location_ids"]


# One session through the booking endpoints ----------------------------------------------


def test_cancelling_one_session_leaves_the_others_booked(clinic, api):
    series = book_series(clinic, clinic.at(9)).get_json()
    second = series["occurrences"][1]
    response = api.post(f"/api/v1/bookings/{second['id']}/cancel", json={"reason": "Flu"})
    assert response.status_code == 200
    after = api.get(f"/api/v1/series/{series['id']}").get_json()
    assert [o["status"] for o in after["occurrences"]] == [
        "booked", "cancelled", "booked", "booked", "booked", "booked"]
    assert after["progress"]["remaining"] == 5 and after["progress"]["cancelled"] == 1
    assert after["protocol_window"]["met"] is False
    assert after["protocol_window"]["issues"] == ["5 of 6 sessions"]


def test_rescheduling_one_session_keeps_the_series_without_duplicates(clinic, api):
    series = book_series(clinic, clinic.at(9)).get_json()
    third = series["occurrences"][2]
    moved_to = datetime.fromisoformat(third["start"]) + timedelta(hours=1)
    response = api.post(f"/api/v1/bookings/{third['id']}/reschedule",
                        json={"start": moved_to.isoformat()}, headers={"If-Match": '"v1"'})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["series_id"] == series["id"]
    after = api.get(f"/api/v1/series/{series['id']}").get_json()
    assert len(after["occurrences"]) == 6 and len(all_bookings(api)) == 6
    assert datetime.fromisoformat(after["occurrences"][2]["start"]) == moved_to
    assert [o["id"] for o in after["occurrences"]] == [o["id"] for o in series["occurrences"]]
    untouched = [(o["start"], o["status"], o["version"]) for i, o in
                 enumerate(after["occurrences"]) if i != 2]
    assert untouched == [(o["start"], o["status"], o["version"]) for i, o in
                         enumerate(series["occurrences"]) if i != 2]
    assert after["protocol_window"]["met"] is True


def test_a_made_up_session_on_a_taken_slot_is_409_with_alternatives(clinic, api):
    series = book_series(clinic, clinic.at(9)).get_json()
    second = series["occurrences"][1]
    assert api.post(f"/api/v1/bookings/{second['id']}/cancel",
                    json={"reason": "Flu"}).status_code == 200
    other = clinic.add_cleared_patient(first_name="Other")
    taken = datetime.fromisoformat(second["start"])
    assert clinic.book("iv-infusion", taken, patient=other).status_code == 201
    response = api.post(f"/api/v1/series/{series['id']}/occurrences",
                        json={"start": taken.isoformat(), "ride_home_confirmed": True})
    body = assert_problem(response, 409, "slot_unavailable")
    assert body["alternatives"] and all(
        datetime.fromisoformat(a["start"]) > taken for a in body["alternatives"])


def test_cancel_all_remaining_leaves_fulfilled_sessions_alone(clinic, api):
    series = book_series(clinic, clinic.at(9)).get_json()
    first = series["occurrences"][0]["id"]
    assert api.post(f"/api/v1/bookings/{first}/check-in").status_code == 200
    monitored(clinic, {"id": first})
    assert api.post(f"/api/v1/bookings/{first}/complete").status_code == 200
    path = f"/api/v1/series/{series['id']}/cancel"
    assert_problem(api.post(path, json={}), 422, "validation_failed")
    response = api.post(path, json={"reason": "Patient moved away"})
    assert response.status_code == 200, response.get_json()
    after = response.get_json()
    assert after["status"] == "cancelled" and after["cancel_reason"] == "Patient moved away"
    assert [o["status"] for o in after["occurrences"]] == ["fulfilled"] + ["cancelled"] * 5
    assert after["progress"]["completed"] == 1 and after["progress"]["remaining"] == 0
    assert after["next_due"] is None
    assert_problem(api.post(path, json={"reason": "again"}), 409, "series_not_active")
    history = api.get(f"/api/v1/bookings/{series['occurrences'][1]['id']}").get_json()
    assert history["cancel_reason"] == "Patient moved away"


def test_a_no_show_gets_a_suggested_rebook_that_keeps_the_window(clinic, api, monkeypatch):
    series = book_series(clinic, clinic.at(9)).get_json()
    missed = series["occurrences"][1]
    missed_start = datetime.fromisoformat(missed["start"])
    import service.resources.bookings.routes as booking_routes

    monkeypatch.setattr(booking_routes, "utcnow", lambda: missed_start + timedelta(hours=1))
    assert api.post(f"/api/v1/bookings/{missed['id']}/no-show").status_code == 200
    monkeypatch.undo()
    after = api.get(f"/api/v1/series/{series['id']}").get_json()
    assert after["progress"]["missed"] == 1 and after["protocol_window"]["met"] is False
    rebook = after["occurrences"][1]["suggested_rebook"]
    assert rebook is not None and rebook["keeps_window"] is True
    kept = [datetime.fromisoformat(o["start"]).date() for o in after["occurrences"]
            if o["status"] == "booked"]
    assert check_days(IV, [*kept, datetime.fromisoformat(rebook["start"]).date()]) == []
    assert all(o["suggested_rebook"] is None for o in after["occurrences"] if o is not
               after["occurrences"][1])
    # Book it into the series: the series is whole again, and cannot grow past its plan.
    path = f"/api/v1/series/{series['id']}/occurrences"
    response = api.post(path, json={"start": rebook["start"], "ride_home_confirmed": True})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["series_id"] == series["id"]
    whole = api.get(f"/api/v1/series/{series['id']}").get_json()
    assert whole["protocol_window"]["met"] is True and whole["progress"]["remaining"] == 6
    assert whole["occurrences"][1]["suggested_rebook"] is None
    another = clinic.at(11, day=clinic.day + timedelta(days=1))
    assert_problem(api.post(path, json={"start": another.isoformat(),
                                        "ride_home_confirmed": True}), 409, "series_complete")


# Access ---------------------------------------------------------------------------------


def test_patient_sees_only_own_series(clinic, api):
    mine = book_series(clinic, clinic.at(9)).get_json()
    other = clinic.add_cleared_patient(first_name="Other")
    theirs = book_series(clinic, clinic.at(11), patient=other).get_json()
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    listed = api.get("/api/v1/series", role="me").get_json()
    assert [s["id"] for s in listed] == [mine["id"]]
    assert api.get(f"/api/v1/series/{mine['id']}", role="me").status_code == 200
    assert_problem(api.get(f"/api/v1/series/{theirs['id']}", role="me"), 404,
                   "series_not_found")
    assert_problem(api.post(f"/api/v1/series/{theirs['id']}/cancel", role="me",
                            json={"reason": "x"}), 404, "series_not_found")


def test_patients_may_not_create_series_for_others(clinic, api):
    other = clinic.add_cleared_patient(first_name="Other")
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    assert_problem(book_series(clinic, clinic.at(9), patient=other, role="me"), 404,
                   "patient_not_found")
    assert_problem(clinic.api.post("/api/v1/series/preview", role="me", json=series_body(
        clinic, clinic.at(9), patient=other)), 404, "patient_not_found")
    assert book_series(clinic, clinic.at(9), role="me").status_code == 201


def test_providers_see_their_own_series(clinic, api):
    series = book_series(clinic, clinic.at(9)).get_json()
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    api.bind("other-doc", "provider", provider_id=other["id"])
    assert api.get(f"/api/v1/series/{series['id']}", role="doc").status_code == 200
    assert [s["id"] for s in api.get("/api/v1/series", role="doc").get_json()] == [
        series["id"]]
    assert api.get("/api/v1/series", role="other-doc").get_json() == []
    assert_problem(api.get(f"/api/v1/series/{series['id']}", role="other-doc"), 404,
                   "series_not_found")


def test_an_unknown_series_is_404(api):
    assert_problem(api.get("/api/v1/series/00000000-0000-0000-0000-000000000000"), 404,
                   "series_not_found")


def test_series_list_is_paginated_and_filtered(clinic, api):
    book_series(clinic, clinic.at(9))
    other = clinic.add_cleared_patient(first_name="Other")
    book_series(clinic, clinic.at(11), patient=other)
    page = api.get("/api/v1/series?page_size=1")
    assert len(page.get_json()) == 1 and '"total": 2' in page.headers["X-Pagination"]
    filtered = api.get(f"/api/v1/series?patient_id={other['id']}").get_json()
    assert [s["patient_id"] for s in filtered] == [other["id"]]
    assert api.get("/api/v1/series?status=cancelled").get_json() == []
    assert_problem(api.get("/api/v1/series?page_size=1000"), 422, "validation_failed")
