"""The whole stay and how to prepare: each service type's preparation and after-care
instructions are data the clinic edits, served to the booking's patient with the stay (arrive,
start, leave, driver), and used PHI-free in reminders."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from datetime import time as wall_time

import pytest

from service import bootstrap
from service.domain.reminders.content import SMS_LIMIT, forbidden_words
from tests.api.test_directory import assert_problem
from tests.db.test_dispatch import (
    dispatcher,
    due,
    key,
    live_settings,
    patient,
    running_sinks,
)
from tests.scenario import Clinic, build_clinic

IV_PREPARATION = [
    {"text": "Nothing to eat for 2 hours before your ketamine infusion; clear fluids are fine.",
     "reminder": "Nothing to eat 2 h before."},
    {"text": "Bring your list of medications.", "reminder": None},
]
IV_AFTER_CARE = [{"text": "No driving until the next day after ketamine.",
                  "reminder": "No driving until the next day."}]


@pytest.fixture
def clinic(api):
    return build_clinic(api)


@pytest.fixture
def sinks(app):
    """The channels' local peers (tests/db/test_dispatch.py), planning without quiet hours."""
    quiet_free = dataclasses.replace(app.config["SETTINGS"], quiet_hours_start=wall_time(0, 0),
                                     quiet_hours_end=wall_time(0, 0))
    bus = app.extensions["clinic.bus"]
    app.extensions["clinic.bus"] = bootstrap.bootstrap(quiet_free)
    try:
        with running_sinks() as running:
            yield running
    finally:
        app.extensions["clinic.bus"] = bus


def edit(clinic: Clinic, service: str, role: str = "admin", **changes):
    path = f"/api/v1/service-types/{clinic.services[service]['id']}"
    version = clinic.api.get(path).headers["ETag"]
    response = clinic.api.patch(path, json=changes, headers={"If-Match": version}, role=role)
    if response.status_code == 200:
        clinic.services[service] = response.get_json()
    return response


def prepared(clinic: Clinic) -> None:
    changed = edit(clinic, "iv-infusion", preparation=IV_PREPARATION, after_care=IV_AFTER_CARE,
                   arrive_early_minutes=15)
    assert changed.status_code == 200, changed.get_json()


def test_the_clinic_edits_instructions_on_the_service_type(clinic):
    prepared(clinic)
    body = clinic.services["iv-infusion"]
    assert body["preparation"] == IV_PREPARATION and body["after_care"] == IV_AFTER_CARE
    assert body["arrive_early_minutes"] == 15
    assert clinic.services["consultation"]["preparation"] == []


@pytest.mark.parametrize("wording, words", [("Bring your REMS card.", ["rems"]),
                                            ("Eat lightly before the infusion.", ["infusion"])])
def test_a_reminder_wording_that_names_the_treatment_is_refused(clinic, wording, words):
    refused = edit(clinic, "esketamine", preparation=[
        {"text": "Bring your Spravato REMS patient card.", "reminder": wording}])
    body = assert_problem(refused, 422, "reminder_wording_not_phi_free")
    assert body["words"] == words and body["field"] == "preparation[0].reminder"
    # The patient's text may name it: it is read only by the patient and the clinic.
    kept = edit(clinic, "esketamine", preparation=[
        {"text": "Bring your Spravato REMS patient card.", "reminder": None}])
    assert kept.status_code == 200


def test_a_reminder_wording_an_sms_cannot_carry_is_refused(clinic):
    refused = edit(clinic, "iv-infusion", after_care=[{"text": "Rest.",
                                                        "reminder": "Rest ≥ 12 h."}])
    assert assert_problem(refused, 422, "reminder_wording_not_gsm7")["field"] == (
        "after_care[0].reminder")
    too_long = edit(clinic, "iv-infusion", after_care=[{"text": "Rest.", "reminder": "x" * 61}])
    assert_problem(too_long, 422, "validation_failed")


def test_the_booking_s_patient_reads_the_whole_stay_and_how_to_prepare(clinic, api):
    prepared(clinic)
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    booked = clinic.book("iv-infusion", clinic.at(9)).get_json()
    response = api.get(f"/api/v1/bookings/{booked['id']}/instructions", role="me")
    assert response.status_code == 200, response.get_json()
    stay = response.get_json()
    assert datetime.fromisoformat(stay["arrive_at"]) == clinic.at(8, 45)
    assert datetime.fromisoformat(stay["start"]) == clinic.at(9)
    assert datetime.fromisoformat(stay["end"]) == clinic.at(9, 45)
    assert datetime.fromisoformat(stay["leaves_at"]) == clinic.at(10, 45)
    assert stay["arrive_at"].endswith("-07:00")  # the clinic's zone
    assert stay["stay_minutes"] == 120
    assert stay["ride_home_required"] is True and stay["ride_home_confirmed"] is True
    assert stay["preparation"] == [i["text"] for i in IV_PREPARATION]
    assert stay["after_care"] == [i["text"] for i in IV_AFTER_CARE]


def test_the_booking_answer_prepares_in_the_service_type_s_own_words(clinic, api):
    prepared(clinic)
    booked = clinic.book("iv-infusion", clinic.at(9)).get_json()
    assert booked["preparation"] == (
        "Before your visit: Nothing to eat for 2 hours before your ketamine infusion; clear "
        "fluids are fine. Bring your list of medications. After your visit: No driving until "
        "the next day after ketamine.")
    read = api.get(f"/api/v1/bookings/{booked['id']}").get_json()
    assert read["preparation"] == booked["preparation"]
    # Without instructions of its own, the generic advice the reminders give.
    video = clinic.book("consultation", clinic.at(14)).get_json()
    assert "quiet, private place" in video["preparation"]
    edit(clinic, "iv-infusion", preparation=[], after_care=[])
    plain = api.get(f"/api/v1/bookings/{booked['id']}").get_json()
    assert plain["preparation"].startswith("Before your visit, please eat lightly")


def test_another_patient_cannot_read_them(clinic, api):
    booked = clinic.book("iv-infusion", clinic.at(9)).get_json()
    other = clinic.add_patient(first_name="Kai")
    api.bind("other", "patient", patient_id=other["id"])
    assert_problem(api.get(f"/api/v1/bookings/{booked['id']}/instructions", role="other"),
                   404, "booking_not_found")


def test_a_video_visit_needs_no_driver(clinic, api):
    visit = clinic.book("consultation", clinic.at(14)).get_json()
    stay = api.get(f"/api/v1/bookings/{visit['id']}/instructions").get_json()
    assert stay["ride_home_required"] is False and stay["preparation"] == []
    assert stay["arrive_at"] == stay["start"]


# Reminders: the whole stay, a driver, and the service type's PHI-free wordings ------------


def test_reminders_show_the_whole_stay_the_driver_and_the_advice(app, api, clinic, sinks):
    prepared(clinic)
    by_sms = clinic.clear_for_treatment(patient(clinic, first_name="Jo"))
    by_mail = clinic.clear_for_treatment(patient(clinic, sms=False, first_name="Ava"))
    first = clinic.book("iv-infusion", clinic.at(9), patient=by_sms).get_json()
    second = clinic.book("iv-infusion", clinic.at(10, 30), patient=by_mail).get_json()
    now = due(api, second, "before_24h") + timedelta(seconds=1)

    dispatcher(app, live_settings(sinks)).run_once(now=now)

    sms = next(r["body"] for r in sinks.sms.requests if r["key"] == key(first, "before_24h"))
    assert "Arrive 8:45 with a driver; leave about 10:45 AM." in sms
    assert len(sms) <= SMS_LIMIT and forbidden_words(sms) == []
    mail = next(m["body"] for m in sinks.mail.messages
                if m["key"] == key(second, "before_24h"))
    assert "Please arrive by 10:15 AM." in mail
    assert "you may leave at about 12:15 PM MST" in mail
    assert "Please arrive with a driver" in mail
    assert "- Nothing to eat 2 h before." in mail
    assert "After your visit:\r\n- No driving until the next day." in mail
    assert "medications" not in mail  # an instruction without a reminder wording stays out
    assert forbidden_words(mail) == []


def test_a_video_visit_s_reminder_shows_no_stay(app, api, clinic, sinks):
    who = patient(clinic, first_name="Jo")
    visit = clinic.book("consultation", clinic.at(14), patient=who).get_json()
    dispatcher(app, live_settings(sinks)).run_once(now=due(api, visit, "before_24h")
                                                   + timedelta(seconds=1))
    sms = next(r["body"] for r in sinks.sms.requests if r["key"] == key(visit, "before_24h"))
    assert "leave" not in sms and "driver" not in sms
    assert "Join from a quiet, private place." in sms
