"""Series that keep their protocol, in the clinic's words.

A series is booked with the preview's alternatives; a reschedule or a cancellation of one
session that breaks the protocol's spacing, window or weekly rhythm is refused with the broken
rule unless a provider (or an admin) confirms it with a reason, which the series keeps.
"""

from __future__ import annotations

import threading
import uuid
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from service.domain.audit.models import AuditAction
from service.domain.bookings.history import BookingEvent, BookingEventKind
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.series.protocols import PROTOCOLS, check_days
from service.extensions import unit_of_work
from tests.api.test_audit import last_row_id, rows_after
from tests.api.test_directory import assert_problem
from tests.api.test_series import all_bookings, book_series, preview, series_body, starts_of
from tests.factories import NPIS
from tests.scenario import Clinic, build_clinic

IV = PROTOCOLS["iv-induction"]


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def _day(value: str) -> date:
    return datetime.fromisoformat(value).date()


def _blocked_third_session(clinic: Clinic) -> tuple[list[datetime], dict]:
    """Another patient takes the planned third infusion's time: the preview offers an
    alternative for it."""
    planned = starts_of(preview(clinic, clinic.at(9))["occurrences"])
    other = clinic.add_cleared_patient(first_name="Other")
    assert clinic.book("iv-infusion", planned[2], patient=other).status_code == 201
    third = preview(clinic, clinic.at(9))["occurrences"][2]
    assert third["status"] == "conflict" and third["alternative"] is not None
    return planned, third["alternative"]


def _reschedule(api, booking: dict, start: datetime, *, role: str = "staff", **body):
    current = api.get(f"/api/v1/bookings/{booking['id']}").get_json()
    return api.post(f"/api/v1/bookings/{booking['id']}/reschedule", role=role,
                    json={"start": start.isoformat(), **body},
                    headers={"If-Match": f'"v{current["version"]}"'})


# Booking a series with the preview's alternatives ----------------------------------------


def test_a_series_is_booked_with_the_previews_alternative_for_a_taken_session(clinic, api):
    planned, alternative = _blocked_third_session(clinic)
    assert_problem(book_series(clinic, clinic.at(9)), 409, "series_conflict")
    response = book_series(clinic, clinic.at(9), sessions=[
        {"index": 3, "start": alternative["start"], "provider_id": alternative["provider_id"]}])
    assert response.status_code == 201, response.get_json()
    series = response.get_json()
    starts = starts_of(series["occurrences"])
    assert starts[2] == datetime.fromisoformat(alternative["start"])
    assert [s for i, s in enumerate(starts) if i != 2] == [
        s for i, s in enumerate(planned) if i != 2]
    assert series["protocol_window"]["met"] is True and series["protocol_overrides"] == []
    # the series keeps the planned first start as its anchor
    assert datetime.fromisoformat(series["first_start"]) == clinic.at(9)
    assert len(all_bookings(api)) == 7


def test_the_preview_checks_chosen_starts_like_the_booking(clinic):
    _, alternative = _blocked_third_session(clinic)
    body = preview(clinic, clinic.at(9), sessions=[{"index": 3,
                                                    "start": alternative["start"]}])
    assert body["bookable"] is True
    assert body["occurrences"][2]["start"] == alternative["start"]


def test_a_chosen_start_obeys_every_booking_rule(clinic, api):
    planned, _ = _blocked_third_session(clinic)
    # choosing the taken time again: session 3 conflicts, nothing is booked
    body = assert_problem(book_series(clinic, clinic.at(9), sessions=[
        {"index": 3, "start": planned[2].isoformat()}]), 409, "series_conflict")
    assert [o["status"] for o in body["occurrences"]][2] == "conflict"
    # at 05:00, before the clinic opens
    early = planned[3].replace(hour=5)
    body = assert_problem(book_series(clinic, clinic.at(9), sessions=[
        {"index": 3, "start": planned[2].replace(hour=10).isoformat()},
        {"index": 4, "start": early.isoformat()}]), 409, "series_conflict")
    assert body["occurrences"][3]["status"] == "outside_hours"
    assert len(all_bookings(api)) == 1 and api.get("/api/v1/series").get_json() == []


def test_chosen_sessions_must_exist_once_and_with_the_series_provider(clinic):
    start = clinic.at(10).isoformat()
    for sessions in ([{"index": 7, "start": start}],
                     [{"index": 2, "start": start}, {"index": 2, "start": start}]):
        assert_problem(book_series(clinic, clinic.at(9), sessions=sessions), 422,
                       "invalid_input")
    assert_problem(book_series(clinic, clinic.at(9), sessions=[
        {"index": 2, "start": clinic.at(9, day=clinic.day + timedelta(days=1000)).isoformat()}]),
        422, "outside_booking_window")
    stranger = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    assert_problem(book_series(clinic, clinic.at(9), sessions=[
        {"index": 2, "start": start, "provider_id": stranger["id"]}]), 422, "invalid_input")


def test_chosen_starts_that_break_the_spacing_need_a_providers_confirmation(clinic, api):
    planned = starts_of(preview(clinic, clinic.at(9))["occurrences"])
    squeezed = [{"index": 2, "start": (planned[0] + timedelta(days=1)).isoformat()}]
    body = assert_problem(book_series(clinic, clinic.at(9), sessions=squeezed), 409,
                          "protocol_spacing")
    assert [s["index"] for s in body["sessions"]] == [1, 2]
    assert body["rules"] == ["protocol_spacing"] and "less than 2 days" in body["issues"][0]
    assert all_bookings(api) == []
    confirm = {"override": {"reason": "Patient travels on day 3; clinically acceptable"}}
    assert_problem(book_series(clinic, clinic.at(9), sessions=squeezed, **confirm), 403,
                   "protocol_override_not_allowed")
    response = book_series(clinic, clinic.at(9), sessions=squeezed, role="admin", **confirm)
    assert response.status_code == 201, response.get_json()
    series = response.get_json()
    [record] = series["protocol_overrides"]
    assert (record["action"], record["rules"], record["booking_id"]) == (
        "book", ["protocol_spacing"], None)
    assert record["reason"] == confirm["override"]["reason"]
    assert series["protocol_window"]["met"] is False


# Rescheduling a session ------------------------------------------------------------------


def test_moving_an_infusion_within_two_days_of_the_previous_one_is_protocol_spacing(
        clinic, api):
    series = book_series(clinic, clinic.at(9)).get_json()
    second, third = series["occurrences"][1], series["occurrences"][2]
    too_close = datetime.fromisoformat(second["start"]) + timedelta(days=1)
    body = assert_problem(_reschedule(api, third, too_close), 409, "protocol_spacing")
    assert [(s["index"], s["booking_id"]) for s in body["sessions"]] == [
        (2, second["id"]), (3, third["id"])]
    assert "override.reason" in body["detail"]
    unchanged = api.get(f"/api/v1/bookings/{third['id']}").get_json()
    assert datetime.fromisoformat(unchanged["start"]) == datetime.fromisoformat(third["start"])
    assert unchanged["version"] == third["version"]
    # the patient cannot confirm it, nor can the front desk
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    confirm = {"override": {"reason": "Only day the patient's driver is free"}}
    assert_problem(_reschedule(api, third, too_close, role="me", **confirm), 403,
                   "protocol_override_not_allowed")
    assert_problem(_reschedule(api, third, too_close, **confirm), 403,
                   "protocol_override_not_allowed")
    # the provider confirms with a reason: moved, and the series keeps the record
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    response = _reschedule(api, third, too_close, role="doc", **confirm)
    assert response.status_code == 200, response.get_json()
    after = api.get(f"/api/v1/series/{series['id']}").get_json()
    [record] = after["protocol_overrides"]
    assert (record["action"], record["booking_id"], record["rules"]) == (
        "reschedule", third["id"], ["protocol_spacing"])
    assert record["reason"] == "Only day the patient's driver is free"
    assert datetime.fromisoformat(record["session_start"]) == too_close
    assert record["actor_key_id"] is not None
    assert after["protocol_window"]["met"] is False


def history(app, booking_id: str) -> list[BookingEventKind]:
    with app.app_context():
        uow = unit_of_work(read_only=True)
        with uow:
            return list(uow.session.scalars(
                select(BookingEvent.kind).where(BookingEvent.booking_id == uuid.UUID(booking_id))
                .order_by(BookingEvent.id)))


def test_a_confirmed_override_is_in_the_audit_trail_and_the_session_s_history(
        app, clinic, api):
    series = book_series(clinic, clinic.at(9)).get_json()
    second, third = series["occurrences"][1], series["occurrences"][2]
    too_close = datetime.fromisoformat(second["start"]) + timedelta(days=1)
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    before = last_row_id(app)
    refused = _reschedule(api, third, too_close, role="doc")
    assert refused.status_code == 409
    assert [r.resource_type for r in rows_after(app, before)
            if r.request_id == refused.headers["X-Request-Id"]] == ["booking"]  # refused only
    assert history(app, third["id"]) == [BookingEventKind.CREATED]
    before = last_row_id(app)
    moved = _reschedule(api, third, too_close, role="doc",
                        override={"reason": "Only day the patient's driver is free"})
    assert moved.status_code == 200, moved.get_json()
    [record] = api.get(f"/api/v1/series/{series['id']}").get_json()["protocol_overrides"]
    rows = {row.resource_type: row for row in rows_after(app, before)
            if row.request_id == moved.headers["X-Request-Id"]}
    assert set(rows) == {"booking", "protocol_override"}
    override = rows["protocol_override"]
    assert (override.action, override.resource_id, str(override.patient_id)) == (
        AuditAction.CREATE, record["id"], clinic.patient["id"])
    assert override.role == "provider"
    assert override.key_id == rows["booking"].key_id
    assert history(app, third["id"]) == [BookingEventKind.CREATED,
                                         BookingEventKind.PROTOCOL_OVERRIDDEN,
                                         BookingEventKind.RESCHEDULED]


def test_moving_the_last_infusion_past_day_21_is_protocol_window(clinic, api):
    series = book_series(clinic, clinic.at(9)).get_json()
    first, last = series["occurrences"][0], series["occurrences"][5]
    day_23 = clinic.at(9, day=clinic.day + timedelta(days=22))
    body = assert_problem(_reschedule(api, last, day_23), 409, "protocol_window")
    assert [s["booking_id"] for s in body["sessions"]] == [first["id"], last["id"]]
    assert "more than 21" in body["issues"][0]
    day_21 = clinic.at(9, day=clinic.day + timedelta(days=20))
    assert _reschedule(api, last, day_21).status_code == 200
    after = api.get(f"/api/v1/series/{series['id']}").get_json()
    assert after["protocol_window"]["met"] is True and after["protocol_overrides"] == []


def test_a_problem_the_series_already_had_does_not_block_an_unrelated_move(clinic, api):
    series = book_series(clinic, clinic.at(9)).get_json()
    second, third = series["occurrences"][1], series["occurrences"][2]
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    too_close = datetime.fromisoformat(second["start"]) + timedelta(days=1)
    assert _reschedule(api, third, too_close, role="doc",
                       override={"reason": "Clinician's call"}).status_code == 200
    # the confirmed session itself, an hour later the same day: nothing new is broken
    assert _reschedule(api, third, too_close + timedelta(hours=1)).status_code == 200
    fifth = series["occurrences"][4]
    later = datetime.fromisoformat(fifth["start"]) + timedelta(hours=1)
    assert _reschedule(api, fifth, later).status_code == 200


def test_moving_an_esketamine_session_into_a_full_week_is_protocol_rhythm(clinic, api):
    response = book_series(clinic, clinic.at(9), protocol="esketamine-induction",
                           service="esketamine", preferred_weekdays=[0, 3])
    assert response.status_code == 201, response.get_json()
    sessions = response.get_json()["occurrences"]
    days = [_day(s["start"]) for s in sessions]
    ninth = sessions[8]  # week 5, the first weekly one
    others = days[:8] + days[9:]
    week_6 = [clinic.day + timedelta(days=35 + k) for k in range(7)]
    target = next(d for d in week_6 if all(abs((d - o).days) >= 2 for o in others))
    body = assert_problem(_reschedule(api, ninth, clinic.at(9, day=target)), 409,
                          "protocol_rhythm")
    assert "week 6 has 2 sessions, at most 1" in body["issues"][0]


# Cancelling a session --------------------------------------------------------------------


def test_cancelling_the_last_infusion_when_no_make_up_fits_day_21_is_protocol_window(
        clinic, api, monkeypatch):
    series = book_series(clinic, clinic.at(9)).get_json()
    last = series["occurrences"][5]
    day_21 = clinic.at(9, day=clinic.day + timedelta(days=20))
    assert _reschedule(api, last, day_21).status_code == 200
    import service.resources.bookings.routes as booking_routes

    # The morning of day 21: a make-up needs a day's notice, after the window's end.
    monkeypatch.setattr(booking_routes, "utcnow", lambda: day_21 - timedelta(hours=3))
    path = f"/api/v1/bookings/{last['id']}/cancel"
    body = assert_problem(api.post(path, json={"reason": "Car trouble"}), 409,
                          "protocol_window")
    assert [s["booking_id"] for s in body["sessions"]] == [last["id"]]
    assert "cannot be made up" in body["issues"][0]
    assert api.get(f"/api/v1/bookings/{last['id']}").get_json()["status"] == "booked"
    response = api.post(path, role="admin", json={
        "reason": "Car trouble", "override": {"reason": "Five infusions are enough; "
                                                        "reassess at follow-up"}})
    assert response.status_code == 200, response.get_json()
    monkeypatch.undo()
    [record] = api.get(f"/api/v1/series/{series['id']}").get_json()["protocol_overrides"]
    assert (record["action"], record["booking_id"], record["rules"]) == (
        "cancel", last["id"], ["protocol_window"])


def test_cancelling_early_in_the_course_leaves_room_and_is_accepted(clinic, api):
    series = book_series(clinic, clinic.at(9)).get_json()
    second = series["occurrences"][1]
    response = api.post(f"/api/v1/bookings/{second['id']}/cancel", json={"reason": "Flu"})
    assert response.status_code == 200, response.get_json()
    assert api.get(f"/api/v1/series/{series['id']}").get_json()["protocol_overrides"] == []


def test_cancelling_the_whole_series_is_not_held_to_its_protocol(clinic, api, monkeypatch):
    series = book_series(clinic, clinic.at(9)).get_json()
    import service.resources.series.routes as series_routes

    late = clinic.at(6, day=clinic.day + timedelta(days=15))
    monkeypatch.setattr(series_routes, "utcnow", lambda: late)
    response = api.post(f"/api/v1/series/{series['id']}/cancel",
                        json={"reason": "Patient stops treatment"})
    assert response.status_code == 200, response.get_json()


# Races -------------------------------------------------------------------------------------


def test_two_series_taking_the_same_alternative_cannot_both_win(app, clinic, api):
    _, alternative = _blocked_third_session(clinic)
    rivals = [clinic.add_cleared_patient(first_name=f"Racer{i}") for i in range(2)]
    barrier = threading.Barrier(len(rivals))
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def race(patient, hour):
        # their other sessions at different times; session 3 at the same alternative
        body = series_body(clinic, clinic.at(hour), patient=patient, sessions=[
            {"index": 3, "start": alternative["start"]}])
        client = app.test_client()
        barrier.wait()
        response = client.post("/api/v1/series", json=body, headers={
            "Authorization": f"Bearer {api.tokens['staff']}"})
        with lock:
            answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=race, args=(p, h)) for p, h in zip(rivals, (8, 10))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(status for status, _ in answers) == [201, 409], answers
    loser = next(body for status, body in answers if status == 409)
    assert loser["code"] == "series_conflict"
    with app.app_context(), unit_of_work() as uow:
        at_alternative = uow.session.scalars(select(Booking).where(
            Booking.starts_at == datetime.fromisoformat(alternative["start"]),
            Booking.status == BookingStatus.BOOKED)).all()
    assert len(at_alternative) == 1
    winner = next(body for status, body in answers if status == 201)
    assert {b["series_id"] for b in all_bookings(api) if b["series_id"]} == {winner["id"]}
    assert check_days(IV, [_day(o["start"]) for o in winner["occurrences"]]) == []
