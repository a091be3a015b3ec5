"""iCalendar feeds through HTTP: tokens, RFC 5545 shape (parsed with icalendar), SEQUENCE,
cancellations, privacy, ETag / 304, revocation, the patient's own feed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar
from sqlalchemy import select, update

from service.domain.bookings.models import Booking
from service.domain.calendar.models import CalendarFeedToken
from service.domain.reminders.content import forbidden_words
from service.extensions import unit_of_work
from tests.api.test_directory import assert_problem
from tests.factories import NPIS
from tests.scenario import build_clinic


@pytest.fixture
def clinic(api):
    scenario = build_clinic(api)
    # A long address, so the LOCATION line must be folded.
    response = api.patch(f"/api/v1/locations/{scenario.clinic['id']}", json={
        "address_line1": "2400 East Camelback Road, Building C, Second Floor, Suite 310",
        "name": "Phoenix - Camelback Wellness Pavilion"}, headers={"If-Match": '"v1"'})
    assert response.status_code == 200, response.get_json()
    return scenario


def issue(api, owner: str, owner_id: str, role: str = "staff", label: str = "phone"):
    return api.post(f"/api/v1/{owner}s/{owner_id}/calendar-tokens", json={"label": label},
                    role=role)


def feed_token(api, clinic, owner: str = "provider", owner_id: str | None = None,
               role: str = "staff") -> dict:
    response = issue(api, owner, owner_id or clinic.doctor["id"], role)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def fetch(api, token: dict, **headers: str):
    path = f"/api/v1/calendars/{token['token']}.ics"
    return api.get(path, role=None, headers=headers or None)


def parse(response) -> Calendar:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/calendar"
    return Calendar.from_ical(response.data)


def events(calendar: Calendar) -> dict[str, object]:
    return {str(e["UID"]): e for e in calendar.walk("VEVENT")}


def test_a_provider_feed_is_rfc_5545_with_one_stable_uid_per_booking(clinic, api):
    video = clinic.book("consultation", clinic.at(14)).get_json()
    chair = clinic.book("iv-infusion", clinic.at(9)).get_json()
    token = feed_token(api, clinic)
    assert token["token"].startswith("cal_")
    assert token["feed_url"].endswith(f"/api/v1/calendars/{token['token']}.ics")

    response = fetch(api, token)
    raw = response.data
    assert raw.count(b"\r\n") == raw.count(b"\n")  # every line ends with CRLF
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))  # folded
    assert b"\r\n " in raw  # the long LOCATION was folded
    calendar = parse(response)
    assert calendar["VERSION"] == "2.0" and calendar["METHOD"] == "PUBLISH"
    assert calendar["PRODID"]
    refresh = calendar["REFRESH-INTERVAL"]
    assert refresh.params["VALUE"] == "DURATION" and refresh.dt == timedelta(minutes=15)
    assert str(calendar["X-PUBLISHED-TTL"]) == "PT15M"

    found = events(calendar)
    assert set(found) == {video["id"], chair["id"]}
    visit = found[video["id"]]
    assert str(visit["SUMMARY"]) == "Video visit (60 min)"
    assert str(visit["LOCATION"]) == "Video visit"
    assert visit.decoded("DTSTART") == datetime.fromisoformat(video["start"])
    assert visit.decoded("DTEND") == datetime.fromisoformat(video["end"])
    assert visit["SEQUENCE"] == 0 and str(visit["STATUS"]) == "CONFIRMED"
    # Every time is UTC ("Z"): no VTIMEZONE needed.
    times = [line for line in raw.decode().split("\r\n") if re.match(
        r"(DTSTART|DTEND|DTSTAMP|CREATED|LAST-MODIFIED)[:;]", line)]
    assert len(times) == 10
    assert all(re.fullmatch(r"[A-Z-]+:\d{8}T\d{6}Z", line) for line in times), times
    treatment = found[chair["id"]]
    assert str(treatment["SUMMARY"]) == "Clinic visit (105 min)"  # 45 min and 1 h recovery
    assert str(treatment["LOCATION"]).startswith("Phoenix - Camelback Wellness Pavilion, 2400")
    # The same data gives the same bytes: UIDs are stable.
    assert fetch(api, token).data == raw


def test_the_feed_names_no_patient_and_no_clinical_word(clinic, api):
    next_day = clinic.day + timedelta(days=1)
    for response in (clinic.book("consultation", clinic.at(14),
                                 note="Ketamine infusion follow-up"),
                     clinic.book("esketamine", clinic.at(9)),
                     clinic.book("iv-infusion", clinic.at(9, day=next_day))):
        assert response.status_code == 201, response.get_json()
    body = fetch(api, feed_token(api, clinic)).data.decode()
    unfolded = body.replace("\r\n ", "")
    assert forbidden_words(unfolded) == []
    for secret in (clinic.patient["first_name"], clinic.patient["last_name"],
                   clinic.patient["email"], "Esketamine", "IV infusion", "Telehealth",
                   "consultation", "Ketamine"):
        assert secret.lower() not in unfolded.lower(), secret
    assert len(events(Calendar.from_ical(body))) == 3


def test_a_clinical_site_name_is_shown_as_clinic(clinic, api):
    api.patch(f"/api/v1/locations/{clinic.clinic['id']}",
              json={"name": "Phoenix Ketamine Infusion Center"}, headers={"If-Match": '"v2"'})
    booking = clinic.book("iv-infusion", clinic.at(9)).get_json()
    found = events(parse(fetch(api, feed_token(api, clinic))))
    assert str(found[booking["id"]]["LOCATION"]) == "Clinic"


def test_sequence_rises_with_every_change_and_a_cancellation_stays_cancelled(clinic, api):
    booking = clinic.book("consultation", clinic.at(14), hold=True).get_json()
    token = feed_token(api, clinic)
    first = events(parse(fetch(api, token)))[booking["id"]]
    assert first["SEQUENCE"] == 0 and str(first["STATUS"]) == "TENTATIVE"

    base = f"/api/v1/bookings/{booking['id']}"
    assert api.post(f"{base}/confirm").status_code == 200
    moved = api.post(f"{base}/reschedule", json={"start": clinic.at(15).isoformat()},
                     headers={"If-Match": '"v2"'})
    assert moved.status_code == 200, moved.get_json()
    second = events(parse(fetch(api, token)))[booking["id"]]
    assert second["SEQUENCE"] == 2 and str(second["STATUS"]) == "CONFIRMED"
    assert second.decoded("DTSTART") == clinic.at(15).astimezone(UTC)
    assert second.decoded("LAST-MODIFIED") >= first.decoded("LAST-MODIFIED")

    assert api.post(f"{base}/cancel", json={"reason": "Patient request"}).status_code == 200
    third = events(parse(fetch(api, token)))[booking["id"]]
    assert third["SEQUENCE"] == 3 and str(third["STATUS"]) == "CANCELLED"
    assert third.decoded("DTSTART") == second.decoded("DTSTART")


def test_cancellations_leave_the_feed_after_30_days(clinic, api, app):
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    api.post(f"/api/v1/bookings/{booking['id']}/cancel", json={"reason": "Moved away"})
    token = feed_token(api, clinic)
    assert booking["id"] in events(parse(fetch(api, token)))
    with app.app_context(), unit_of_work() as uow:
        uow.session.execute(update(Booking).values(
            cancelled_at=datetime.now(UTC) - timedelta(days=31)))
        uow.commit()
    assert events(parse(fetch(api, token))) == {}


def test_etag_and_if_none_match_answer_304_until_something_changes(clinic, api):
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    token = feed_token(api, clinic)
    first = fetch(api, token)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and first.headers["Cache-Control"] == "private, no-cache"
    unchanged = fetch(api, token, **{"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.data == b""
    assert unchanged.headers["ETag"] == etag
    api.post(f"/api/v1/bookings/{booking['id']}/cancel", json={"reason": "Sick"})
    changed = fetch(api, token, **{"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_a_revoked_or_unknown_token_is_404(clinic, api, app):
    token = feed_token(api, clinic)
    listed = api.get(f"/api/v1/providers/{clinic.doctor['id']}/calendar-tokens").get_json()
    assert [t["id"] for t in listed] == [token["id"]]
    assert "token" not in listed[0] and listed[0]["revoked_at"] is None
    with app.app_context(), unit_of_work() as uow:  # stored as a hash only
        stored = uow.session.scalar(select(CalendarFeedToken))
        assert stored.token_hash != token["token"] and token["token"] not in str(
            vars(stored))
    path = f"/api/v1/providers/{clinic.doctor['id']}/calendar-tokens/{token['id']}"
    assert api.request("DELETE", path).status_code == 204
    assert api.request("DELETE", path).status_code == 204  # revoking twice is fine
    assert_problem(fetch(api, token), 404, "calendar_feed_not_found")
    assert_problem(api.get("/api/v1/calendars/cal_" + "x" * 43 + ".ics", role=None), 404,
                   "calendar_feed_not_found")
    assert_problem(api.get("/api/v1/calendars/nonsense.ics", role=None), 404,
                   "calendar_feed_not_found")
    other = f"/api/v1/providers/{clinic.doctor['id']}/calendar-tokens/{clinic.patient['id']}"
    assert_problem(api.request("DELETE", other), 404, "calendar_token_not_found")


def test_other_api_paths_still_need_a_key(clinic, api):
    assert_problem(api.get("/api/v1/calendars/x.json", role=None), 401, "unauthenticated")


def test_a_feed_url_answers_other_methods_405_without_a_key(clinic, api):
    """The feed's token is its credential, so no bearer key is asked for before the method
    is refused (it was 401, where the document and RFC 9110 say 405)."""
    response = api.post(f"/api/v1/calendars/{'x' * 10}.ics", role=None)
    assert_problem(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_a_provider_manages_only_their_own_feed(clinic, api):
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    assert issue(api, "provider", clinic.doctor["id"], role="doc").status_code == 201
    assert_problem(issue(api, "provider", other["id"], role="doc"), 403, "forbidden")
    assert_problem(issue(api, "provider", clinic.doctor["id"], role="me"), 403, "forbidden")
    assert_problem(issue(api, "provider", clinic.patient["id"]), 404, "provider_not_found")
    assert_problem(issue(api, "provider", clinic.doctor["id"], role="integration"), 403,
                   "forbidden")


def test_a_patient_has_a_feed_of_their_own_visits(clinic, api):
    mine = clinic.book("consultation", clinic.at(14)).get_json()
    other = clinic.add_patient(first_name="Other")
    clinic.book("consultation", clinic.at(16), patient=other)
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    token = feed_token(api, clinic, "patient", clinic.patient["id"], role="me")
    calendar = parse(fetch(api, token))
    assert set(events(calendar)) == {mine["id"]}
    assert str(calendar["NAME"]) == "My clinic visits"
    assert_problem(issue(api, "patient", other["id"], role="me"), 404, "patient_not_found")
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    assert_problem(issue(api, "patient", clinic.patient["id"], role="doc"), 403, "forbidden")
