"""Watched doses: readings in the session's order, and readings during or after dosing
beyond the clinic's limits raise an urgent alert and mark the session."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from service.config import Settings
from tests.api.test_consultations import checked_in_session, settings, vitals
from tests.api.test_directory import assert_problem
from tests.scenario import build_clinic


@pytest.fixture
def clinic(api):
    scenario = build_clinic(api)
    api.bind("doc", "provider", provider_id=scenario.doctor["id"])
    return scenario


def at(minutes_ago: int) -> str:
    return (datetime.now().astimezone() - timedelta(minutes=minutes_ago)).isoformat()


def test_a_reading_during_monitoring_comes_after_the_dose_and_the_dose_after_pre(clinic):
    session = checked_in_session(clinic)
    assert vitals(clinic, session, "pre", taken_at=at(60)).status_code == 201
    # 40 minutes after a dose taken 80 minutes ago: before the pre-dose reading.
    early = vitals(clinic, session, "during", minutes_after_dose=40, taken_at=at(40))
    assert_problem(early, 409, "vitals_out_of_order")
    assert vitals(clinic, session, "during", minutes_after_dose=40,
                  taken_at=at(15)).status_code == 201
    # A second reading that places the dose half an hour elsewhere.
    assert_problem(vitals(clinic, session, "during", minutes_after_dose=10, taken_at=at(5)),
                   409, "vitals_out_of_order")
    # A pre-dose reading after the dose.
    assert_problem(vitals(clinic, session, "pre", taken_at=at(30)), 409, "vitals_out_of_order")


def test_the_discharge_reading_is_the_last_one(clinic):
    session = checked_in_session(clinic)
    assert vitals(clinic, session, "pre", taken_at=at(150)).status_code == 201
    assert vitals(clinic, session, "during", minutes_after_dose=40,
                  taken_at=at(100)).status_code == 201
    before = vitals(clinic, session, "discharge", ride_home_confirmed=True, taken_at=at(120))
    assert_problem(before, 409, "vitals_out_of_order")
    assert vitals(clinic, session, "discharge", ride_home_confirmed=True,
                  taken_at=at(1)).status_code == 201
    assert_problem(vitals(clinic, session, "during", minutes_after_dose=130, taken_at=at(0)),
                   409, "vitals_out_of_order")


def test_a_reading_in_the_future_is_refused(clinic):
    session = checked_in_session(clinic)
    future = (datetime.now().astimezone() + timedelta(minutes=30)).isoformat()
    assert_problem(vitals(clinic, session, "pre", taken_at=future), 422, "implausible_vitals")


def test_a_reading_beyond_the_watch_limits_raises_an_urgent_alert_and_marks_the_session(
        clinic, api):
    session = checked_in_session(clinic)
    assert vitals(clinic, session, "pre", taken_at=at(60)).status_code == 201
    assert api.get(f"/api/v1/bookings/{session['id']}").get_json()["vitals_alert_at"] is None
    reading = vitals(clinic, session, "during", minutes_after_dose=40, taken_at=at(15),
                     systolic=192, diastolic=118, heart_rate=128, spo2=93)
    assert reading.status_code == 201, reading.get_json()
    assert reading.get_json()["beyond_limits"] == ["systolic", "diastolic", "heart_rate"]
    alerts = [a for a in api.get("/api/v1/alerts", role="doc").get_json()
              if a["kind"] == "vitals_out_of_range"]
    assert len(alerts) == 1
    assert alerts[0]["urgent"] is True and alerts[0]["booking_id"] == session["id"]
    assert api.get(f"/api/v1/bookings/{session['id']}").get_json()["vitals_alert_at"]


def test_a_reading_within_the_limits_raises_nothing(clinic, api):
    session = checked_in_session(clinic)
    assert vitals(clinic, session, "pre", taken_at=at(60)).status_code == 201
    reading = vitals(clinic, session, "during", minutes_after_dose=40, taken_at=at(15),
                     systolic=150, diastolic=95, spo2=95)
    assert reading.get_json()["beyond_limits"] == []
    assert not [a for a in api.get("/api/v1/alerts").get_json()
                if a["kind"] == "vitals_out_of_range"]
    assert api.get(f"/api/v1/bookings/{session['id']}").get_json()["vitals_alert_at"] is None


def test_the_watch_limits_are_settings(clinic, api, app, monkeypatch):
    settings(app, monkeypatch, vitals_alert_spo2=95)
    session = checked_in_session(clinic)
    assert vitals(clinic, session, "pre", taken_at=at(60)).status_code == 201
    reading = vitals(clinic, session, "during", minutes_after_dose=40, taken_at=at(15),
                     spo2=93)
    assert reading.get_json()["beyond_limits"] == ["spo2"]
    assert Settings.from_env({"VITALS_ALERT_SYSTOLIC": "170"}).vitals_alert_systolic == 170
    with pytest.raises(ValueError):
        Settings.from_env({"VITALS_ALERT_SPO2": "120"})


def test_esketamine_discharge_waits_for_120_minutes_after_the_dose(clinic):
    session = checked_in_session(clinic)
    assert vitals(clinic, session, "pre", taken_at=at(60)).status_code == 201
    assert vitals(clinic, session, "during", minutes_after_dose=40,
                  taken_at=at(15)).status_code == 201  # the dose: 55 minutes ago
    early = vitals(clinic, session, "discharge", ride_home_confirmed=True, taken_at=at(0))
    assert assert_problem(early, 409, "discharge_too_early")["earliest"]


def test_check_in_opens_shortly_before_the_visit(clinic, api, app, monkeypatch):
    settings(app, monkeypatch, check_in_opens_minutes=120)
    booking = clinic.book("esketamine", clinic.at(9))
    assert booking.status_code == 201
    refused = clinic.check_in(booking.get_json())  # ten days ahead
    assert assert_problem(refused, 409, "check_in_not_open")["opens_at"]
    visit = clinic.book("consultation", clinic.at(14)).get_json()
    assert_problem(clinic.check_in(visit), 409, "check_in_not_open")  # telehealth too
    assert Settings.from_env({}).check_in_opens_minutes == 120


def test_a_session_completes_only_once_its_dose_could_have_ended(clinic, api):
    # An in-clinic treatment dosed over an hour with no recovery time: discharge may follow
    # the dose at once, completion waits for the hour.
    slow = api.create("/api/v1/service-types", {
        "code": "slow-infusion", "name": "Slow infusion", "modality": "in-person",
        "duration_minutes": 60, "slot_interval_minutes": 15, "needs_chair": True,
        "needs_clearance": True, "min_notice_minutes": 1440, "horizon_days": 90})
    clinic.services["slow-infusion"] = slow
    session = clinic.book("slow-infusion", clinic.at(9), ride_home_confirmed=True).get_json()
    assert clinic.check_in(session).status_code == 200
    assert vitals(clinic, session, "pre", taken_at=at(30)).status_code == 201
    assert vitals(clinic, session, "during", minutes_after_dose=5,
                  taken_at=at(20)).status_code == 201  # the dose: 25 minutes ago
    assert vitals(clinic, session, "discharge", ride_home_confirmed=True,
                  taken_at=at(0)).status_code == 201
    early = api.post(f"/api/v1/bookings/{session['id']}/complete")
    assert assert_problem(early, 409, "session_not_over")["earliest"]


def test_discharge_needs_readings_back_within_the_limits(clinic, api):
    session = checked_in_session(clinic)
    assert vitals(clinic, session, "pre", taken_at=at(170)).status_code == 201
    assert vitals(clinic, session, "during", minutes_after_dose=40,
                  taken_at=at(125)).status_code == 201  # the dose: 165 minutes ago
    high = vitals(clinic, session, "discharge", ride_home_confirmed=True, taken_at=at(2),
                  systolic=186, diastolic=104)
    assert assert_problem(high, 409, "not_ready_for_discharge")["beyond_limits"] == [
        "systolic"]
    assert vitals(clinic, session, "during", minutes_after_dose=164,
                  taken_at=at(1), systolic=186, diastolic=104).status_code == 201
    assert vitals(clinic, session, "discharge", ride_home_confirmed=True,
                  taken_at=at(0)).status_code == 201
    assert api.post(f"/api/v1/bookings/{session['id']}/complete").status_code == 200


# Sedation: the MOAA/S (5 alert ... 0 no response to pain) ------------------------------------


def test_deep_sedation_during_the_dose_raises_an_urgent_alert_and_marks_the_session(
        clinic, api):
    session = checked_in_session(clinic)
    assert vitals(clinic, session, "pre", taken_at=at(60)).status_code == 201
    lethargic = vitals(clinic, session, "during", minutes_after_dose=20, taken_at=at(35),
                       sedation_moaas=3)
    assert lethargic.get_json()["beyond_limits"] == []
    assert api.get(f"/api/v1/bookings/{session['id']}").get_json()["vitals_alert_at"] is None
    prodded = vitals(clinic, session, "during", minutes_after_dose=40, taken_at=at(15),
                     sedation_moaas=2)
    assert prodded.status_code == 201, prodded.get_json()
    assert prodded.get_json()["beyond_limits"] == ["sedation"]
    assert prodded.get_json()["sedation_moaas"] == 2
    alerts = [a for a in api.get("/api/v1/alerts").get_json()
              if a["kind"] == "vitals_out_of_range"]
    assert [(a["urgent"], a["booking_id"]) for a in alerts] == [(True, session["id"])]
    assert api.get(f"/api/v1/bookings/{session['id']}").get_json()["vitals_alert_at"]


def test_a_sedation_score_outside_the_moaas_is_refused(clinic):
    session = checked_in_session(clinic)
    refused = vitals(clinic, session, "pre", taken_at=at(60), sedation_moaas=6)
    assert_problem(refused, 422, "implausible_vitals")


def test_discharge_after_sedation_waits_until_the_patient_is_alert(clinic, api):
    session = checked_in_session(clinic)
    assert vitals(clinic, session, "pre", taken_at=at(170)).status_code == 201
    assert vitals(clinic, session, "during", minutes_after_dose=40, taken_at=at(125),
                  sedation_moaas=3).status_code == 201  # the dose: 165 minutes ago
    unscored = vitals(clinic, session, "discharge", ride_home_confirmed=True, taken_at=at(3))
    assert_problem(unscored, 409, "sedation_score_required")
    drowsy = vitals(clinic, session, "discharge", ride_home_confirmed=True, taken_at=at(2),
                    sedation_moaas=4)
    assert assert_problem(drowsy, 409, "not_ready_for_discharge")["beyond_limits"] == [
        "sedation"]
    alert = vitals(clinic, session, "discharge", ride_home_confirmed=True, taken_at=at(1),
                   sedation_moaas=5)
    assert alert.status_code == 201, alert.get_json()
    assert api.post(f"/api/v1/bookings/{session['id']}/complete").status_code == 200


def test_the_sedation_limits_are_settings(clinic, app, monkeypatch):
    settings(app, monkeypatch, vitals_alert_moaas=3)
    session = checked_in_session(clinic)
    assert vitals(clinic, session, "pre", taken_at=at(60)).status_code == 201
    reading = vitals(clinic, session, "during", minutes_after_dose=40, taken_at=at(15),
                     sedation_moaas=3)
    assert reading.get_json()["beyond_limits"] == ["sedation"]
    assert Settings.from_env({"DISCHARGE_MOAAS": "4"}).discharge_moaas == 4
    with pytest.raises(ValueError):
        Settings.from_env({"VITALS_ALERT_MOAAS": "5"})  # at or above the discharge level
