"""Reminders through HTTP: planned with the booking, re-planned, cancelled; who sees them;
the retry; the SMS gateway's STOP / START webhook."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy import update

from service import bootstrap
from service.domain.reminders.models import Reminder, ReminderStatus
from service.extensions import unit_of_work
from tests.api.test_directory import assert_problem
from tests.factories import clinic_today
from tests.scenario import build_clinic


@pytest.fixture(autouse=True)
def _no_quiet_hours(app):
    """Planning runs on the real clock: keep the test's time of day out of it."""
    quiet_free = dataclasses.replace(app.config["SETTINGS"], quiet_hours_start=time(0, 0),
                                     quiet_hours_end=time(0, 0))
    bus = app.extensions["clinic.bus"]
    app.extensions["clinic.bus"] = bootstrap.bootstrap(quiet_free)
    yield
    app.extensions["clinic.bus"] = bus


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def book(clinic, *, day: date | None = None, hour: int = 14, **extra):
    response = clinic.book("consultation", clinic.at(hour, day=day), **extra)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def reminders(api, booking, role="staff"):
    response = api.get(f"/api/v1/bookings/{booking['id']}/reminders", role=role)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def by_kind(rows, version=1):
    return {r["kind"]: r for r in rows if r["plan_version"] == version}


def set_status(app, reminder_id: str, status: ReminderStatus, reason: str | None = None):
    with app.app_context():
        uow = unit_of_work()
        with uow:
            uow.session.execute(update(Reminder).where(Reminder.id == uuid.UUID(reminder_id))
                                .values(status=status, reason=reason))
            uow.commit()


# Planned with the booking ---------------------------------------------------------------


def test_a_booking_plans_its_reminders_in_the_same_transaction(clinic, api):
    booking = book(clinic)
    planned = by_kind(reminders(api, booking))
    assert set(planned) == {"confirmation", "before_72h", "before_24h", "before_2h"}
    start = datetime.fromisoformat(booking["start"])
    assert datetime.fromisoformat(planned["before_24h"]["due_at"]) == start - timedelta(hours=24)
    for kind, reminder in planned.items():
        assert reminder["status"] == "planned" and reminder["attempts"] == 0
        assert reminder["dedupe_key"] == f"{booking['id']}.{kind}.v1"


def test_planning_uses_the_injected_quiet_hours_never_the_environment(clinic, api,
                                                                        monkeypatch):
    # Quiet nearly all day in the environment: planning must not read it (the quiet hours
    # come from the settings create_app read once; here: none, see _no_quiet_hours).
    monkeypatch.setenv("QUIET_HOURS_START", "00:01")
    monkeypatch.setenv("QUIET_HOURS_END", "00:00")
    booking = book(clinic)
    planned = by_kind(reminders(api, booking))
    start = datetime.fromisoformat(booking["start"])
    for hours in (72, 24, 2):
        due = datetime.fromisoformat(planned[f"before_{hours}h"]["due_at"])
        assert due == start - timedelta(hours=hours)


def test_a_refused_booking_plans_nothing(clinic, api):
    book(clinic)
    other = clinic.add_patient(first_name="Other")
    assert clinic.book("consultation", clinic.at(14), patient=other).status_code == 409
    listed = api.get("/api/v1/reminders").get_json()
    assert len(listed) == 4  # only the first booking's


def test_a_reminder_already_past_at_booking_time_is_recorded_as_skipped(clinic, api):
    booking = book(clinic, day=clinic_today() + timedelta(days=2))
    planned = by_kind(reminders(api, booking))
    assert (planned["before_72h"]["status"], planned["before_72h"]["reason"]) == (
        "skipped", "past_due_at_planning")
    assert planned["before_24h"]["status"] == "planned"


def test_rescheduling_replans_under_a_new_version(clinic, api):
    booking = book(clinic)
    moved = api.post(f"/api/v1/bookings/{booking['id']}/reschedule",
                     json={"start": clinic.at(15).isoformat()}, headers={"If-Match": '"v1"'})
    assert moved.status_code == 200, moved.get_json()
    rows = reminders(api, booking)
    old, new = by_kind(rows, 1), by_kind(rows, 2)
    assert {r["status"] for r in old.values()} == {"cancelled"}
    assert {r["reason"] for r in old.values()} == {"rescheduled"}
    assert {r["status"] for r in new.values()} == {"planned"}
    assert (datetime.fromisoformat(new["before_2h"]["due_at"])
            == datetime.fromisoformat(moved.get_json()["start"]) - timedelta(hours=2))


def test_cancelling_cancels_the_open_reminders_and_keeps_the_sent_ones(app, clinic, api):
    booking = book(clinic)
    set_status(app, by_kind(reminders(api, booking))["confirmation"]["id"],
               ReminderStatus.SENT)
    api.post(f"/api/v1/bookings/{booking['id']}/cancel", json={"reason": "Patient request"})
    planned = by_kind(reminders(api, booking))
    assert planned["confirmation"]["status"] == "sent"
    for kind in ("before_72h", "before_24h", "before_2h"):
        assert (planned[kind]["status"], planned[kind]["reason"]) == ("cancelled",
                                                                      "booking_cancelled")


def test_a_hold_is_confirmed_when_it_is_confirmed(clinic, api):
    booking = book(clinic, hold=True)
    assert "confirmation" not in by_kind(reminders(api, booking))
    api.post(f"/api/v1/bookings/{booking['id']}/confirm")
    planned = by_kind(reminders(api, booking))
    assert planned["confirmation"]["status"] == "planned"
    assert len(planned) == 4


def test_check_in_cancels_the_reminders_before_but_keeps_the_next_day_check_in(clinic, api):
    service_type = clinic.services["consultation"]
    api.patch(f"/api/v1/service-types/{service_type['id']}",
              json={"reminder_plan": {"confirmation": True, "hours_before": [24],
                                      "next_day_check_in": True}},
              headers={"If-Match": '"v1"'})
    booking = book(clinic)
    assert clinic.check_in(booking).status_code == 200
    planned = by_kind(reminders(api, booking))
    assert planned["before_24h"]["reason"] == "checked_in"
    assert planned["next_day_check_in"]["status"] == "planned"


# Who sees them ---------------------------------------------------------------------------


def test_whoever_may_see_the_booking_sees_its_reminders(clinic, api):
    booking = book(clinic)
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    assert len(reminders(api, booking, role="me")) == 4
    other = clinic.add_patient(first_name="Nosy")
    api.bind("nosy", "patient", patient_id=other["id"])
    assert_problem(api.get(f"/api/v1/bookings/{booking['id']}/reminders", role="nosy"), 404,
                   "booking_not_found")
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    assert len(reminders(api, booking, role="doc")) == 4


def test_staff_list_reminders_by_status_and_due_time(clinic, api):
    first = book(clinic, hour=14)
    book(clinic, hour=15, patient=clinic.add_patient(first_name="Second"))
    start = datetime.fromisoformat(first["start"])
    response = api.get("/api/v1/reminders", query_string={
        "status": "planned", "due_before": (start - timedelta(hours=22)).isoformat(),
        "page_size": 3})
    assert response.status_code == 200
    assert '"total": 6' in response.headers["X-Pagination"]  # confirmations, 72 h, 24 h
    listed = response.get_json()
    assert len(listed) == 3
    assert [r["due_at"] for r in listed] == sorted(r["due_at"] for r in listed)
    assert_problem(api.get("/api/v1/reminders", query_string={"status": "nonsense"}), 422,
                   "validation_failed")
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    assert_problem(api.get("/api/v1/reminders", role="me"), 403, "forbidden")


# Retry -----------------------------------------------------------------------------------


def test_staff_retry_a_failed_reminder(app, clinic, api):
    booking = book(clinic)
    failed = by_kind(reminders(api, booking))["before_72h"]
    set_status(app, failed["id"], ReminderStatus.FAILED, "sms_http_503")
    response = api.post(f"/api/v1/reminders/{failed['id']}/retry",
                        headers={"Idempotency-Key": "retry-1"})
    assert response.status_code == 200
    retried = response.get_json()
    assert (retried["status"], retried["attempts"], retried["reason"]) == ("planned", 0, None)
    again = api.post(f"/api/v1/reminders/{failed['id']}/retry",
                     headers={"Idempotency-Key": "retry-1"})
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_sent_or_cancelled_reminder_cannot_be_retried(app, clinic, api):
    booking = book(clinic)
    planned = by_kind(reminders(api, booking))
    set_status(app, planned["before_24h"]["id"], ReminderStatus.SENT)
    body = assert_problem(api.post(f"/api/v1/reminders/{planned['before_24h']['id']}/retry"),
                          409, "reminder_not_retryable")
    assert body["reminder_status"] == "sent"
    assert_problem(api.post(f"/api/v1/reminders/{planned['before_2h']['id']}/retry"), 409,
                   "reminder_not_retryable")
    assert_problem(api.post(f"/api/v1/reminders/{uuid.uuid4()}/retry"), 404,
                   "reminder_not_found")
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    assert_problem(api.post(f"/api/v1/reminders/{planned['before_2h']['id']}/retry",
                            role="me"), 403, "forbidden")


# The SMS gateway's webhook ---------------------------------------------------------------


def inbound(api, sender: str, body: str, role="integration", **fields):
    return api.post("/api/v1/inbound/sms", role=role,
                    data={"From": sender, "Body": body, "MessageSid": "SM123",
                          "AccountSid": "AC123", "To": "+16025550000", **fields})


@pytest.mark.parametrize("word", ["STOP", " stop ", "Quit", "END", "revoke", "OPT OUT",
                                  "opt out", "Cancel", "UNSUBSCRIBE", "stop."])
def test_stop_words_opt_out_at_once(clinic, api, word):
    who = clinic.add_patient(first_name="Texter", phone="+16025550123", sms_consent=True)
    response = inbound(api, "+16025550123", word)
    assert response.status_code == 200
    assert response.get_json() == {"received": True, "action": "opt_out"}
    assert api.get(f"/api/v1/patients/{who['id']}").get_json()["sms_opted_out_at"]


def test_start_opts_in_again(clinic, api):
    who = clinic.add_patient(first_name="Texter", phone="+16025550123", sms_consent=True)
    inbound(api, "+16025550123", "STOP")
    response = inbound(api, "+16025550123", "Start")
    assert response.get_json() == {"received": True, "action": "opt_in"}
    patient = api.get(f"/api/v1/patients/{who['id']}").get_json()
    assert patient["sms_opted_out_at"] is None and patient["sms_consent"] is True


def test_start_never_grants_consent_that_was_not_given(clinic, api):
    who = clinic.add_patient(first_name="Texter", phone="+16025550123", sms_consent=False)
    inbound(api, "+16025550123", "START")
    assert api.get(f"/api/v1/patients/{who['id']}").get_json()["sms_consent"] is False


def test_unknown_numbers_get_the_same_answer(clinic, api):
    clinic.add_patient(first_name="Texter", phone="+16025550123", sms_consent=True)
    known = inbound(api, "+16025550123", "STOP")
    unknown = inbound(api, "+15055550000", "STOP")
    assert (unknown.status_code, unknown.get_data()) == (known.status_code, known.get_data())


def test_other_texts_change_nothing(clinic, api):
    who = clinic.add_patient(first_name="Texter", phone="+16025550123", sms_consent=True)
    for text in ("Please stop by later", "yes", ""):
        assert inbound(api, "+16025550123", text).get_json()["action"] == "none"
    assert api.get(f"/api/v1/patients/{who['id']}").get_json()["sms_opted_out_at"] is None


def test_the_webhook_needs_an_integration_key(api):
    assert_problem(inbound(api, "+16025550123", "STOP", role=None), 401, "unauthenticated")
    assert_problem(inbound(api, "+16025550123", "STOP", role="staff"), 403, "forbidden")
    assert_problem(api.post("/api/v1/inbound/sms", role="integration", data={"Body": "STOP"}),
                   422, "validation_failed")
