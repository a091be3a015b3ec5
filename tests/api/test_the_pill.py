"""The pill: oral or sublingual ketamine in the clinic (a dose, monitoring in a chair, vitals:
the one safety standard of every in-clinic treatment) and at home (a prescribed protocol whose
telehealth check-ins are booked as a series, with gates of their own)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from service.domain.clinic.models import MIN_MONITORING_MINUTES, Route
from tests.api.test_consultations import consultation, monitored, screen, vitals
from tests.api.test_directory import assert_problem
from tests.api.test_watched_doses import at
from tests.scenario import Clinic, build_clinic

IN_CLINIC = {"modality": "in-person", "duration_minutes": 30, "recovery_minutes": 90,
             "buffer_before_minutes": 15, "slot_interval_minutes": 15, "needs_chair": True,
             "needs_clearance": True, "min_notice_minutes": 1440, "horizon_days": 90,
             "arrive_early_minutes": 15,
             "contraindications": ["uncontrolled_hypertension", "pregnancy"]}
AT_HOME = {"modality": "telehealth", "duration_minutes": 20, "slot_interval_minutes": 20,
           "needs_clearance": True, "min_notice_minutes": 60, "horizon_days": 300,
           "at_home": True}


def service_type(clinic: Clinic, code: str, **values: Any):
    return clinic.api.post("/api/v1/service-types", json={"code": code, "name": code,
                                                          **values})


def add_pill(clinic: Clinic) -> Clinic:
    for code, values in (("oral-in-clinic", {**IN_CLINIC, "route": "oral"}),
                         ("sublingual-in-clinic", {**IN_CLINIC, "route": "sublingual"}),
                         ("sublingual-home", {**AT_HOME, "route": "sublingual"})):
        response = service_type(clinic, code, **values)
        assert response.status_code == 201, response.get_json()
        clinic.services[code] = response.get_json()
    return clinic


@pytest.fixture
def clinic(api):
    return add_pill(build_clinic(api))


def dose(clinic: Clinic, service: str = "sublingual-in-clinic", hour: int = 9,
         patient: dict | None = None, **extra: Any):
    return clinic.book(service, clinic.at(hour), patient=patient,
                       **{"ride_home_confirmed": True, **extra})


def check_in_at_home(clinic: Clinic, hour: int = 14, patient: dict | None = None,
                     day: Any = None):
    return clinic.book("sublingual-home", clinic.at(hour, day=day), patient=patient,
                       location=clinic.virtual, patient_state="AZ")


def first_dose_completed(clinic: Clinic, service: str = "sublingual-in-clinic",
                         patient: dict | None = None) -> dict:
    booked = dose(clinic, service, patient=patient)
    assert booked.status_code == 201, booked.get_json()
    session = booked.get_json()
    assert clinic.check_in(session).status_code == 200
    monitored(clinic, session)
    done = clinic.api.post(f"/api/v1/bookings/{session['id']}/complete")
    assert done.status_code == 200, done.get_json()
    return done.get_json()


# The model: every modality has a route, and the route its rules ----------------------------


def test_service_types_say_how_the_dose_is_given(clinic, api):
    routes = {t["code"]: (t["route"], t["at_home"])
              for t in api.get("/api/v1/service-types").get_json()}
    assert routes["oral-in-clinic"] == ("oral", False)
    assert routes["sublingual-home"] == ("sublingual", True)
    assert routes["consultation"] == (None, False)
    assert {r.value for r in Route} == {"iv", "intranasal", "oral", "sublingual"}


@pytest.mark.parametrize("route", ["iv", "intranasal"])
def test_only_the_pill_is_taken_at_home(clinic, route):
    assert_problem(service_type(clinic, "home-x", **{**AT_HOME, "route": route}), 422,
                   "home_route_not_allowed")
    assert_problem(service_type(clinic, "home-y", **AT_HOME), 422, "home_route_not_allowed")


def test_a_home_protocol_s_visits_are_telehealth_check_ins_of_a_cleared_patient(clinic):
    in_person = {**IN_CLINIC, "route": "oral", "at_home": True}
    assert_problem(service_type(clinic, "home-x", **in_person), 422,
                   "home_check_in_telehealth")
    uncleared = {**AT_HOME, "route": "oral", "needs_clearance": False}
    assert_problem(service_type(clinic, "home-y", **uncleared), 422,
                   "home_check_in_telehealth")


@pytest.mark.parametrize("missing", ["needs_chair", "needs_clearance"])
def test_a_dose_in_the_clinic_is_given_in_a_chair_to_a_cleared_patient(clinic, missing):
    assert_problem(service_type(clinic, "oral-x", **{**IN_CLINIC, "route": "oral",
                                                     missing: False}),
                   422, "clinic_dose_in_chair")
    video = {**IN_CLINIC, "route": "oral", "modality": "telehealth", "needs_chair": False}
    assert_problem(service_type(clinic, "oral-y", **video), 422, "clinic_dose_in_chair")


@pytest.mark.parametrize("route", ["oral", "sublingual", "iv"])
def test_a_dose_in_the_clinic_is_followed_by_its_route_s_least_monitoring(clinic, route):
    least = MIN_MONITORING_MINUTES[Route(route)]
    short = service_type(clinic, f"{route}-x", **{**IN_CLINIC, "route": route,
                                                  "recovery_minutes": least - 5})
    assert assert_problem(short, 422, "monitoring_too_short")["least_minutes"] == least
    enough = service_type(clinic, f"{route}-y", **{**IN_CLINIC, "route": route,
                                                   "recovery_minutes": least})
    assert enough.status_code == 201


def test_the_route_is_checked_when_a_service_type_is_changed_too(clinic, api):
    oral = clinic.services["oral-in-clinic"]
    path = f"/api/v1/service-types/{oral['id']}"
    changed = api.patch(path, json={"recovery_minutes": 20},
                        headers={"If-Match": api.get(path).headers["ETag"]})
    assert_problem(changed, 422, "monitoring_too_short")


def test_intranasal_esketamine_and_only_it_is_under_the_rems(clinic, api):
    spray = {**IN_CLINIC, "route": "intranasal", "recovery_minutes": 120}
    assert_problem(service_type(clinic, "spray-x", **spray), 422, "rems_route_mismatch")
    assert_problem(service_type(clinic, "oral-x", **{**IN_CLINIC, "route": "oral",
                                                     "requires_rems": True}),
                   422, "rems_route_mismatch")
    assert service_type(clinic, "spray-y", **spray, requires_rems=True).status_code == 201


# (a) In the clinic: a dose, monitoring in a chair, vitals --------------------------------


def test_the_pill_in_the_clinic_holds_a_chair_through_its_monitoring(clinic):
    booked = dose(clinic).get_json()
    assert datetime.fromisoformat(booked["leaves_at"]) == clinic.at(11)  # 30 + 90 minutes
    assert booked["chair_number"] is not None
    other = clinic.add_cleared_patient(first_name="Kai")
    third = clinic.add_cleared_patient(first_name="Lee")
    # Two chairs: a third patient at 10:00 finds both still taken by monitoring.
    assert dose(clinic, "oral-in-clinic", hour=10, patient=other).status_code == 201
    assert_problem(clinic.book("oral-in-clinic", clinic.at(10, 30), patient=third,
                               ride_home_confirmed=True), 409, "slot_unavailable")


def test_the_pill_in_the_clinic_needs_clearance_and_a_ride_home(clinic):
    stranger = clinic.add_patient(first_name="Noor")
    assert_problem(dose(clinic, patient=stranger), 409, "clearance_required")
    assert_problem(dose(clinic, ride_home_confirmed=False), 422, "ride_home_required")


def test_the_pill_in_the_clinic_checks_the_contraindications_it_declares(clinic):
    visit = consultation(clinic)
    assert screen(clinic, visit, pregnancy=True).status_code == 201
    body = assert_problem(dose(clinic, "oral-in-clinic"), 409, "contraindicated")
    assert body["contraindications"] == ["pregnancy"]


def test_the_pill_in_the_clinic_completes_only_with_pre_during_and_discharge(clinic, api):
    session = dose(clinic).get_json()
    assert clinic.check_in(session).status_code == 200
    complete = f"/api/v1/bookings/{session['id']}/complete"
    assert assert_problem(api.post(complete), 409, "session_vitals_incomplete")["missing"] == [
        "pre", "during", "discharge"]
    monitored(clinic, session)
    assert api.post(complete).get_json()["status"] == "fulfilled"


def test_the_pill_in_the_clinic_discharges_after_its_monitoring_time(clinic):
    session = dose(clinic).get_json()
    assert clinic.check_in(session).status_code == 200
    assert vitals(clinic, session, "pre", taken_at=at(70)).status_code == 201
    assert vitals(clinic, session, "during", minutes_after_dose=40,
                  taken_at=at(20)).status_code == 201  # the dose: 60 minutes ago
    early = vitals(clinic, session, "discharge", ride_home_confirmed=True, taken_at=at(0))
    earliest = datetime.fromisoformat(assert_problem(early, 409,
                                                     "discharge_too_early")["earliest"])
    assert abs(earliest - (datetime.now().astimezone() + timedelta(minutes=30))) < timedelta(
        minutes=2)  # 90 minutes after the dose


# (b) At home: a prescribed protocol, its check-ins booked as a series ----------------------


def test_the_pill_at_home_needs_clearance(clinic):
    stranger = clinic.add_patient(first_name="Noor")
    assert_problem(check_in_at_home(clinic, patient=stranger), 409, "clearance_required")


def test_the_pill_at_home_needs_a_first_dose_completed_in_the_clinic(clinic):
    refused = assert_problem(check_in_at_home(clinic), 409, "first_dose_in_clinic_required")
    assert refused["route"] == "sublingual"
    booked = dose(clinic).get_json()  # booked, not yet taken
    assert_problem(check_in_at_home(clinic), 409, "first_dose_in_clinic_required")
    assert clinic.check_in(booked).status_code == 200
    monitored(clinic, booked)
    assert clinic.api.post(f"/api/v1/bookings/{booked['id']}/complete").status_code == 200
    home = check_in_at_home(clinic)
    assert home.status_code == 201, home.get_json()
    assert home.get_json()["chair_number"] is None


def test_a_first_dose_of_another_route_does_not_open_the_home_protocol(clinic):
    first_dose_completed(clinic, "oral-in-clinic")
    assert_problem(check_in_at_home(clinic), 409, "first_dose_in_clinic_required")


def test_a_home_check_in_needs_no_ride_home_and_is_a_telehealth_visit(clinic, api):
    first_dose_completed(clinic)
    booked = check_in_at_home(clinic).get_json()
    assert booked["ride_home_confirmed"] is False
    assert booked["location_id"] == clinic.virtual["id"]
    steps = api.get(f"/api/v1/bookings/{booked['id']}/instructions").get_json()
    assert steps["at_home"] is True and steps["ride_home_required"] is False


def home_series(clinic: Clinic, protocol: str = "home-check-ins",
                service: str = "sublingual-home", **extra: Any):
    body = {"patient_id": clinic.patient["id"], "service_type_id":
            clinic.services[service]["id"], "location_id": clinic.virtual["id"],
            "provider_id": clinic.doctor["id"], "first_start": clinic.at(14).isoformat(),
            "protocol": protocol, "patient_state": "AZ", **extra}
    return clinic.api.post("/api/v1/series", json=body)


def test_the_home_protocol_s_check_ins_are_booked_as_a_series_at_its_spacing(clinic, api):
    first_dose_completed(clinic)
    response = home_series(clinic, preferred_weekdays=[clinic.day.weekday(),
                                                       (clinic.day.weekday() + 3) % 7])
    assert response.status_code == 201, response.get_json()
    series = response.get_json()
    assert series["protocol"] == "home-check-ins" and series["planned_sessions"] == 6
    starts = sorted(datetime.fromisoformat(o["start"]) for o in series["occurrences"])
    days = [s.date() for s in starts]
    assert len(days) == 6 and days[0] == clinic.day
    assert all((b - a).days >= 2 for a, b in zip(days, days[1:], strict=False))
    assert (days[-1] - days[0]).days < 21
    assert series["protocol_window"]["met"] is True
    protocol = {p["code"]: p for p in api.get("/api/v1/protocols").get_json()}
    assert protocol["home-check-ins"]["home"] is True
    assert protocol["iv-induction"]["home"] is False


def test_the_home_protocol_s_series_keeps_the_home_gates(clinic):
    assert_problem(home_series(clinic), 409, "first_dose_in_clinic_required")


def test_a_home_protocol_plans_only_at_home_check_ins_and_they_only_a_home_protocol(clinic):
    body = assert_problem(home_series(clinic, service="iv-infusion",
                                      location_id=clinic.clinic["id"],
                                      ride_home_confirmed=True),
                          422, "protocol_service_mismatch")
    assert body["protocol"] == "home-check-ins"
    first_dose_completed(clinic)
    assert_problem(home_series(clinic, protocol="iv-induction"), 422,
                   "protocol_service_mismatch")


def test_a_check_in_booked_is_flagged_when_the_clearance_is_withdrawn(clinic, api):
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    first_dose_completed(clinic)
    home = check_in_at_home(clinic, day=clinic.day + timedelta(days=1)).get_json()
    withdrawn = api.post(f"/api/v1/patients/{clinic.patient['id']}/clearance-decisions",
                         json={"decision": "not_cleared", "reason": "New cardiac history"},
                         role="doc")
    assert withdrawn.status_code == 201, withdrawn.get_json()
    assert api.get(f"/api/v1/bookings/{home['id']}").get_json()["attention"] == (
        "clearance_required")
