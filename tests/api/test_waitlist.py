"""The waitlist: a freed slot is offered in fair order, held for one patient at a time as a
pending booking, accepted (booked) or declined / expired (the next patient); and the
cancellation policy as data (patient notice, late cancellation, fees)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, time, timedelta
from typing import Any

import jsonschema
import pytest
from sqlalchemy import select

from service.db import utcnow
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.calendar.models import WebhookDelivery
from service.domain.reminders.models import Reminder
from service.domain.reminders.planning import QuietHours
from service.domain.waitlist import services as waitlist
from service.domain.waitlist.models import WaitlistOpening
from service.extensions import unit_of_work
from service.uow import UnitOfWork
from tests.scenario import Clinic, build_clinic

NO_QUIET_HOURS = QuietHours(time(0), time(0))
HOOK = "https://ehr.example.com/hooks/waitlist"


def run_job(app, *, at: datetime | None = None, hold_minutes: int = 30) -> waitlist.WaitlistRun:
    """One run of the scheduler's waitlist job against the test database."""
    database = app.extensions["clinic.database"]

    def new_uow() -> UnitOfWork:
        return UnitOfWork(database.write_sessions, dialect=database.dialect,
                          bus=app.extensions["clinic.bus"])

    return waitlist.run_waitlist(new_uow, now=lambda: at or utcnow(),
                                 zone=app.config["SETTINGS"].clinic_timezone,
                                 hold=timedelta(minutes=hold_minutes), quiet=NO_QUIET_HOURS)


def ok(response, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def same_instant(a: str, b: str) -> bool:
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


@pytest.fixture
def clinic(app, api) -> Clinic:
    scenario = build_clinic(api)
    run_job(app)  # the new working hours' opening, before anyone waits
    return scenario


def join(api, clinic: Clinic, patient: dict, *, role: str = "staff", **extra: Any) -> dict:
    body = {"service_type_id": clinic.services["consultation"]["id"],
            "earliest_date": clinic.day.isoformat(), "latest_date": clinic.day.isoformat(),
            "patient_state": "AZ", **extra}
    if role == "staff":
        body["patient_id"] = patient["id"]
    return ok(api.post("/api/v1/waitlist", json=body, role=role), 201)


def offers_of(api, patient: dict) -> list[dict]:
    return ok(api.get("/api/v1/waitlist/offers", query_string={"patient_id": patient["id"]}))


def cancel(api, booking: dict, **kwargs: Any) -> Any:
    return api.post(f"/api/v1/bookings/{booking['id']}/cancel",
                    json={"reason": "Patient request"}, **kwargs)


def test_a_cancelled_visit_is_offered_held_and_accepted(app, api, clinic):
    hook = ok(api.post("/api/v1/webhooks", role="integration", json={
        "url": HOOK, "events": ["waitlist.offered", "waitlist.filled"]}), 201)
    first = clinic.add_patient(first_name="Cam")
    waiting = clinic.add_patient(first_name="Dee")
    api.bind("dee", "patient", patient_id=waiting["id"])
    visit = ok(clinic.book("consultation", clinic.at(14), patient=first), 201)
    entry = join(api, clinic, waiting, role="dee", times_of_day=["afternoon"])
    assert (entry["status"], entry["patient_id"]) == ("waiting", waiting["id"])
    assert run_job(app).offered == 0  # nothing freed yet

    ok(cancel(api, visit))
    run = run_job(app)
    assert run.offered == 1 and run.lags and run.lags[0] >= 0
    [offer] = ok(api.get("/api/v1/waitlist/offers", role="dee"))
    assert offer["status"] == "offered" and same_instant(offer["start"], visit["start"])
    held = ok(api.get(f"/api/v1/bookings/{offer['booking_id']}"))
    assert (held["status"], held["patient_id"]) == ("pending", waiting["id"])
    assert ok(api.get(f"/api/v1/waitlist/{entry['id']}", role="dee"))["status"] == "offered"

    # The hold is a booking: nobody else can take the slot meanwhile.
    third = clinic.add_patient(first_name="Eli")
    taken = clinic.book("consultation", clinic.at(14), patient=third)
    assert taken.status_code == 409 and taken.get_json()["code"] == "slot_unavailable"

    # The offer goes out through the reminder outbox (PHI-free template) and webhooks.
    with app.app_context(), unit_of_work() as uow:
        kinds = set(uow.session.scalars(select(Reminder.kind).where(
            Reminder.booking_id == uuid.UUID(offer["booking_id"]))))
        assert "waitlist_offer" in kinds

    accepted = ok(api.post(f"/api/v1/waitlist/offers/{offer['id']}/accept", role="dee"))
    assert accepted["status"] == "accepted"
    assert ok(api.get(f"/api/v1/bookings/{offer['booking_id']}"))["status"] == "booked"
    assert ok(api.get(f"/api/v1/waitlist/{entry['id']}"))["status"] == "filled"
    again = api.post(f"/api/v1/waitlist/offers/{offer['id']}/accept", role="dee",
                     headers={"Idempotency-Key": "second-try"})
    assert again.status_code == 409 and again.get_json()["code"] == "offer_not_open"

    catalogue = {e["type"]: e["schema"] for e in ok(
        api.get("/api/v1/webhooks/events", role="integration"))}
    with app.app_context(), unit_of_work() as uow:
        bodies = [json.loads(d.payload) for d in uow.session.scalars(
            select(WebhookDelivery).where(
                WebhookDelivery.subscription_id == uuid.UUID(hook["id"])))]
    assert sorted(b["type"] for b in bodies) == ["waitlist.filled", "waitlist.offered"]
    for body in bodies:
        jsonschema.Draft202012Validator(
            catalogue[body["type"]],
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(body)
        assert "Dee" not in json.dumps(body) and waiting["id"] not in json.dumps(body)


def test_declined_or_expired_offers_move_on_in_fair_order(app, api, clinic):
    holder = clinic.add_patient(first_name="Fay")
    visit = ok(clinic.book("consultation", clinic.at(15), patient=holder), 201)
    early, late, urgent = (clinic.add_patient(first_name=n) for n in ("Gus", "Hal", "Ivy"))
    early_entry = join(api, clinic, early)
    late_entry = join(api, clinic, late)
    # Staff put the later one first.
    moved = api.post(f"/api/v1/waitlist/{late_entry['id']}/move", json={"position": 1},
                     headers={"If-Match": f'"v{late_entry["version"]}"'})
    assert ok(moved)["position"] == 1
    listed = ok(api.get("/api/v1/waitlist"))
    assert [e["id"] for e in listed] == [late_entry["id"], early_entry["id"]]

    ok(cancel(api, visit))
    run_job(app)
    [offer] = offers_of(api, late)
    assert offers_of(api, early) == []
    ok(api.post(f"/api/v1/waitlist/offers/{offer['id']}/decline"))
    assert ok(api.get(f"/api/v1/waitlist/{late_entry['id']}"))["status"] == "waiting"
    run_job(app)
    [second] = offers_of(api, early)  # the next in line; never the same slot twice
    assert [o["status"] for o in offers_of(api, late)] == ["declined"]

    # The hold runs out: the slot goes on (nobody else waits, so it stays free).
    expired_at = datetime.fromisoformat(second["expires_at"])
    run = run_job(app, at=expired_at + timedelta(seconds=1))
    assert run.offers_expired == 1
    assert ok(api.get(f"/api/v1/waitlist/offers/{second['id']}"))["status"] == "expired"
    late_accept = api.post(f"/api/v1/waitlist/offers/{second['id']}/accept")
    assert late_accept.status_code == 409 and late_accept.get_json()["code"] == "offer_not_open"
    assert ok(api.get(f"/api/v1/bookings/{second['booking_id']}"))["status"] == "cancelled"
    del urgent


def test_a_series_session_that_would_break_its_window_comes_first(app, api, clinic):
    holder = clinic.add_patient(first_name="Jo")
    visit = ok(clinic.book("consultation", clinic.at(13), patient=holder), 201)
    first_come = clinic.add_patient(first_name="Kit")
    join(api, clinic, first_come)
    in_series = clinic.add_cleared_patient(first_name="Lou")
    series = ok(api.post("/api/v1/series", json={
        "patient_id": in_series["id"], "provider_id": clinic.doctor["id"],
        "service_type_id": clinic.services["iv-infusion"]["id"],
        "location_id": clinic.clinic["id"], "protocol": "iv-induction",
        "first_start": clinic.at(9, day=clinic.day - timedelta(days=3)).isoformat(),
        "ride_home_confirmed": True}), 201)
    entry = join(api, clinic, in_series, series_id=series["id"])
    assert entry["keep_by"] is not None
    ok(cancel(api, visit))
    run_job(app)
    assert [o["status"] for o in offers_of(api, in_series)] == ["offered"]
    assert offers_of(api, first_come) == []


def test_entries_are_the_patients_own_and_expire_at_their_range_end(app, api, clinic):
    mine = clinic.add_patient(first_name="May")
    other = clinic.add_patient(first_name="Ned")
    api.bind("may", "patient", patient_id=mine["id"])
    theirs = join(api, clinic, other)
    own = join(api, clinic, mine, role="may", patient_id=other["id"])  # ignored: itself
    assert own["patient_id"] == mine["id"]
    assert [e["id"] for e in ok(api.get("/api/v1/waitlist", role="may"))] == [own["id"]]
    hidden = api.get(f"/api/v1/waitlist/{theirs['id']}", role="may")
    assert hidden.status_code == 404
    assert hidden.get_json()["code"] == "waitlist_entry_not_found"
    moved = api.post(f"/api/v1/waitlist/{own['id']}/move", json={"position": 1}, role="may",
                     headers={"If-Match": '"v1"'})
    assert moved.status_code == 403
    assert api.get("/api/v1/waitlist", role="integration").status_code == 403
    withdrawn = ok(api.request("DELETE", f"/api/v1/waitlist/{own['id']}", role="may"))
    assert withdrawn["status"] == "withdrawn"
    run = run_job(app, at=datetime.combine(clinic.day + timedelta(days=2), time(12),
                                           tzinfo=clinic.at(0).tzinfo))
    assert run.entries_expired == 1
    assert ok(api.get(f"/api/v1/waitlist/{theirs['id']}"))["status"] == "expired"


def test_a_reschedule_away_and_removed_time_off_free_slots(app, api, clinic):
    holder = clinic.add_patient(first_name="Oda")
    visit = ok(clinic.book("consultation", clinic.at(14), patient=holder), 201)
    moved = api.post(f"/api/v1/bookings/{visit['id']}/reschedule",
                     json={"start": clinic.at(16).isoformat()},
                     headers={"If-Match": f'"v{visit["version"]}"'})
    ok(moved)
    start = clinic.at(13, day=clinic.day + timedelta(days=1))
    off = ok(api.post(f"/api/v1/providers/{clinic.doctor['id']}/time-off", json={
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat()}), 201)
    removed = api.request("DELETE",
                          f"/api/v1/providers/{clinic.doctor['id']}/time-off/{off['id']}")
    assert removed.status_code == 204
    with app.app_context(), unit_of_work() as uow:
        causes = sorted(o.cause.value for o in uow.session.scalars(select(WaitlistOpening))
                        if o.status.value == "open")
    assert causes == ["rescheduled", "time_off_removed"]
    waiting = clinic.add_patient(first_name="Pim")
    join(api, clinic, waiting, latest_date=(clinic.day + timedelta(days=1)).isoformat(),
         times_of_day=["afternoon"])
    run = run_job(app)
    assert run.offered == 1 and run.unmatched == 1  # one slot for one patient
    [offer] = offers_of(api, waiting)
    assert same_instant(offer["start"], visit["start"])


# The cancellation policy as data ---------------------------------------------------------


def test_the_cancellation_policy_is_shown_and_applied(app, api, clinic):
    service = clinic.services["consultation"]
    changed = api.patch(f"/api/v1/service-types/{service['id']}", json={
        "patient_notice_hours": 24 * 12, "late_cancel_hours": 24 * 14,
        "late_cancel_outcome": "fee", "late_cancel_fee_cents": 5000,
        "no_show_outcome": "fee", "no_show_fee_cents": 7500},
        headers={"If-Match": f'"v{service["version"]}"'})
    assert ok(changed)["late_cancel_fee_cents"] == 5000
    slots = ok(api.get("/api/v1/slots", query_string={
        "service_type": service["id"], "start": clinic.day.isoformat(),
        "end": clinic.day.isoformat()}))
    assert slots["cancellation_policy"] == {
        "patient_notice_hours": 288, "late_cancel_hours": 336, "late_cancel_outcome": "fee",
        "late_cancel_fee_cents": 5000, "no_show_outcome": "fee", "no_show_fee_cents": 7500}
    slot = slots["slots"][0]
    assert datetime.fromisoformat(slot["late_cancel_from"]) == (
        datetime.fromisoformat(slot["start"]) - timedelta(hours=336))

    patient = clinic.add_patient(first_name="Quin")
    api.bind("quin", "patient", patient_id=patient["id"])
    booked = ok(clinic.book("consultation", clinic.at(14), patient=patient, role="quin"), 201)
    terms = booked["cancellation"]
    assert terms["late_if_cancelled_now"] is True  # 10 days ahead, 14-day window
    assert terms["fee_if_cancelled_now_cents"] == 5000
    assert datetime.fromisoformat(terms["patient_changes_until"]) == (
        datetime.fromisoformat(booked["start"]) - timedelta(hours=288))
    # Within the patient notice: the patient cannot cancel or move it; the clinic can.
    refused = cancel(api, booked, role="quin")
    assert refused.status_code == 409 and refused.get_json()["code"] == "patient_notice_passed"
    moved = api.post(f"/api/v1/bookings/{booked['id']}/reschedule", role="quin",
                     json={"start": clinic.at(15).isoformat()},
                     headers={"If-Match": f'"v{booked["version"]}"'})
    assert moved.status_code == 409 and moved.get_json()["code"] == "patient_notice_passed"
    cancelled = ok(cancel(api, booked))
    assert (cancelled["late_cancellation"], cancelled["fee_cents"]) == (True, 5000)


def test_without_a_fee_a_late_cancellation_is_only_flagged(app, api, clinic):
    patient = clinic.add_patient(first_name="Rae")
    api.bind("rae", "patient", patient_id=patient["id"])
    booked = ok(clinic.book("consultation", clinic.at(14), patient=patient, role="rae"), 201)
    assert booked["cancellation"]["late_cancel_outcome"] == "flag"
    assert booked["cancellation"]["fee_if_cancelled_now_cents"] is None
    cancelled = ok(cancel(api, booked, role="rae"))  # notice 0: the patient may
    assert (cancelled["late_cancellation"], cancelled["fee_cents"]) == (False, None)


# Patient self-service ----------------------------------------------------------------------


def test_a_patient_searches_treatments_only_once_cleared(app, api, clinic):
    newcomer = clinic.add_patient(first_name="Sol")
    api.bind("sol", "patient", patient_id=newcomer["id"])
    query = {"start": clinic.day.isoformat(), "end": clinic.day.isoformat()}
    consultation = api.get("/api/v1/slots", role="sol", query_string={
        **query, "service_type": clinic.services["consultation"]["id"]})
    assert ok(consultation)["slots"]
    treatment = api.get("/api/v1/slots", role="sol", query_string={
        **query, "service_type": clinic.services["iv-infusion"]["id"]})
    assert treatment.status_code == 409 and treatment.get_json()["code"] == "clearance_required"
    api.bind("robin", "patient", patient_id=clinic.patient["id"])  # cleared
    cleared = api.get("/api/v1/slots", role="robin", query_string={
        **query, "service_type": clinic.services["iv-infusion"]["id"]})
    assert ok(cleared)["slots"]


def test_a_patient_sees_and_manages_only_their_own_visits(app, api, clinic):
    me = clinic.add_patient(first_name="Tam")
    other = clinic.add_patient(first_name="Uma")
    api.bind("tam", "patient", patient_id=me["id"])
    mine = ok(clinic.book("consultation", clinic.at(13), patient=me, role="tam"), 201)
    theirs = ok(clinic.book("consultation", clinic.at(15), patient=other), 201)
    assert [b["id"] for b in ok(api.get("/api/v1/bookings", role="tam"))] == [mine["id"]]
    assert "quiet, private place" in mine["preparation"]  # a video visit's advice
    for method, path in (("GET", f"/api/v1/bookings/{theirs['id']}"),
                         ("POST", f"/api/v1/bookings/{theirs['id']}/cancel"),
                         ("GET", f"/api/v1/patients/{other['id']}"),
                         ("GET", f"/api/v1/patients/{other['id']}/assessments")):
        kwargs = {"json": {"reason": "x"}} if method == "POST" else {}
        assert api.request(method, path, role="tam", **kwargs).status_code == 404, path
    moved = ok(api.post(f"/api/v1/bookings/{mine['id']}/reschedule", role="tam",
                        json={"start": clinic.at(14).isoformat()},
                        headers={"If-Match": f'"v{mine["version"]}"'}))
    assert moved["start"] != mine["start"]
    submitted = api.post(f"/api/v1/patients/{me['id']}/assessments", role="tam",
                         json={"instrument": "GAD-7", "answers": [1, 1, 0, 0, 1, 0, 0]})
    assert submitted.status_code == 201, submitted.get_json()
    assert ok(api.get(f"/api/v1/patients/{me['id']}/assessments", role="tam"))
    with app.app_context(), unit_of_work() as uow:
        assert uow.session.get(Booking, uuid.UUID(mine["id"])).status is BookingStatus.BOOKED
