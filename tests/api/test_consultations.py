"""Consultations through HTTP: screening and clearance, vital signs and the hold, side
effects, assessments and alerts, telehealth consent and location, REMS tasks, access."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta

import pytest

from tests.api.test_directory import assert_problem
from tests.factories import NPIS, clinic_today
from tests.scenario import Clinic, build_clinic


@pytest.fixture
def clinic(api):
    scenario = build_clinic(api)
    api.bind("doc", "provider", provider_id=scenario.doctor["id"])
    return scenario


def settings(app, monkeypatch, **changes):
    monkeypatch.setitem(app.config, "SETTINGS",
                        dataclasses.replace(app.config["SETTINGS"], **changes))


def consultation(clinic: Clinic, patient: dict | None = None, hour: int = 14) -> dict:
    response = clinic.book("consultation", clinic.at(hour), patient=patient)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def screen(clinic: Clinic, booking: dict, role: str = "staff", **answers):
    return clinic.api.post(f"/api/v1/bookings/{booking['id']}/screening", json=answers,
                           role=role)


def decide(clinic: Clinic, patient: dict, decision: str, role: str = "doc", **extra):
    return clinic.api.post(f"/api/v1/patients/{patient['id']}/clearance-decisions",
                           json={"decision": decision, **extra}, role=role)


def completed(clinic: Clinic, booking: dict) -> dict:
    """The consultation checked in and completed (fulfilled)."""
    checked_in = clinic.check_in(booking)
    assert checked_in.status_code == 200, checked_in.get_json()
    done = clinic.api.post(f"/api/v1/bookings/{booking['id']}/complete")
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["status"] == "fulfilled"
    return done.get_json()


def checked_in_session(clinic: Clinic, service: str = "esketamine", hour: int = 9,
                       patient: dict | None = None) -> dict:
    response = clinic.book(service, clinic.at(hour), patient=patient)
    assert response.status_code == 201, response.get_json()
    booking = response.get_json()
    checked_in = clinic.check_in(booking)
    assert checked_in.status_code == 200, checked_in.get_json()
    return booking


def reading_time(phase: str, minutes_after_dose: int | None = None) -> str:
    """When a reading of a session dosed 2 h 55 min ago was taken, in the session's order:
    before the dose, at its minutes after it, discharge now."""
    now = datetime.now().astimezone()
    dose = now - timedelta(hours=3) + timedelta(minutes=5)
    if phase == "pre":
        return (dose - timedelta(minutes=5)).isoformat()
    if phase == "during":
        return (dose + timedelta(minutes=minutes_after_dose or 0)).isoformat()
    return now.isoformat()


def vitals(clinic: Clinic, booking: dict, phase: str = "pre", role: str = "staff", *,
           systolic: int = 128, diastolic: int = 82, **extra):
    body = {"phase": phase, "systolic": systolic, "diastolic": diastolic, "heart_rate": 72,
            "spo2": 98, "taken_at": reading_time(phase, extra.get("minutes_after_dose")),
            **extra}
    return clinic.api.post(f"/api/v1/bookings/{booking['id']}/vitals", json=body, role=role)


def monitored(clinic: Clinic, booking: dict, *, pre: bool = True) -> None:
    """Record the readings every in-clinic treatment needs to complete: before the dose,
    40 minutes after it, and at discharge with the ride home."""
    readings = [("during", {"minutes_after_dose": 40}),
                ("discharge", {"ride_home_confirmed": True})]
    for phase, extra in ([("pre", {})] if pre else []) + readings:
        response = vitals(clinic, booking, phase, **extra)
        assert response.status_code == 201, response.get_json()


def new_patient_with_consultation(clinic: Clinic) -> tuple[dict, dict]:
    """A new (uncleared) patient with a consultation booked with the doctor."""
    patient = clinic.add_patient(first_name="Sam", rems_enrolled=True)
    return patient, consultation(clinic, patient)


# Intake screening and clearance ----------------------------------------------------------


def test_screening_is_recorded_on_a_consultation(clinic, api):
    booking = consultation(clinic)
    response = screen(clinic, booking, medical_history="Two antidepressant trials.",
                      hypersensitivity=False)
    assert response.status_code == 201, response.get_json()
    assert response.headers["ETag"] == '"v1"'
    body = response.get_json()
    assert body["booking_id"] == booking["id"] and body["patient_id"] == clinic.patient["id"]
    assert body["esketamine_contraindicated"] is False and body["review_flags"] == []
    read = api.get(f"/api/v1/bookings/{booking['id']}/screening", role="doc")
    assert read.status_code == 200 and read.get_json() == body


def test_screening_belongs_to_a_consultation_not_a_treatment(clinic):
    session = clinic.book("iv-infusion", clinic.at(9)).get_json()
    assert_problem(screen(clinic, session), 409, "not_a_consultation")


def test_a_second_screening_is_409_and_corrections_need_if_match(clinic, api):
    booking = consultation(clinic)
    assert screen(clinic, booking).status_code == 201
    assert_problem(screen(clinic, booking), 409, "screening_exists")
    path = f"/api/v1/bookings/{booking['id']}/screening"
    assert_problem(api.patch(path, json={"pregnancy": False}), 428, "precondition_required")
    fixed = api.patch(path, json={"hypersensitivity": True}, headers={"If-Match": '"v1"'})
    assert fixed.status_code == 200 and fixed.get_json()["esketamine_contraindicated"]
    assert fixed.headers["ETag"] == '"v2"'


def test_hard_contraindications_block_esketamine_bookings(clinic):
    patient, booking = new_patient_with_consultation(clinic)
    body = screen(clinic, booking, arteriovenous_malformation=True).get_json()
    assert body["hard_contraindications"] == ["arteriovenous_malformation"]
    completed(clinic, booking)
    assert decide(clinic, patient, "cleared",
                  consultation_booking_id=booking["id"]).status_code == 201
    refused = clinic.book("esketamine", clinic.at(9), patient=patient)
    assert_problem(refused, 409, "esketamine_contraindicated")
    # Only esketamine: an IV infusion stays possible for a cleared patient.
    assert clinic.book("iv-infusion", clinic.at(10), patient=patient).status_code == 201


@pytest.mark.parametrize("flag", ["uncontrolled_hypertension", "psychosis_history",
                                  "pregnancy"])
def test_review_flags_put_the_patient_in_front_of_a_clinician(clinic, api, flag):
    booking = consultation(clinic)  # clinic.patient is cleared already
    body = screen(clinic, booking, **{flag: True}).get_json()
    assert body["review_flags"] == [flag] and body["esketamine_contraindicated"] is False
    decisions = api.get(f"/api/v1/patients/{clinic.patient['id']}/clearance-decisions"
                        ).get_json()
    assert decisions[0]["decision"] == "needs_review"
    assert decisions[0]["source"] == "screening"
    patient = api.get(f"/api/v1/patients/{clinic.patient['id']}").get_json()
    assert patient["cleared_for_treatment"] is False
    refused = clinic.book("iv-infusion", clinic.at(9))
    assert assert_problem(refused, 409, "clearance_required")["clearance"] == "needs_review"


def test_only_a_provider_can_clear(clinic, api):
    patient, booking = new_patient_with_consultation(clinic)
    screen(clinic, booking)
    assert_problem(decide(clinic, patient, "cleared", role="staff"), 403, "clinician_only")
    assert decide(clinic, patient, "needs_review", role="staff",
                  reason="Awaiting the consultation").status_code == 201
    cleared = decide(clinic, patient, "cleared", reason="Reviewed at consultation",
                     consultation_booking_id=booking["id"])
    assert cleared.status_code == 201, cleared.get_json()
    body = cleared.get_json()
    assert body["decided_by_provider_id"] == clinic.doctor["id"] and body["decided_at"]
    assert body["consultation_booking_id"] == booking["id"] and body["source"] == "clinician"
    assert api.get(f"/api/v1/patients/{patient['id']}").get_json()["cleared_for_treatment"]
    assert clinic.book("iv-infusion", clinic.at(9), patient=patient).status_code == 201


def test_the_latest_decision_gates_treatment_bookings(clinic):
    consultation(clinic)  # the doctor's patient from now on
    assert decide(clinic, clinic.patient, "not_cleared",
                  reason="Blood pressure to be controlled first").status_code == 201
    refused = clinic.book("iv-infusion", clinic.at(9))
    assert assert_problem(refused, 409, "clearance_required")["clearance"] == "not_cleared"
    assert decide(clinic, clinic.patient, "cleared",
                  reason="Blood pressure controlled, per the GP's letter").status_code == 201
    assert clinic.book("iv-infusion", clinic.at(9)).status_code == 201


def test_a_new_patient_without_a_decision_cannot_book_treatment(clinic):
    patient = clinic.add_patient(first_name="New")
    refused = clinic.book("iv-infusion", clinic.at(9), patient=patient)
    assert assert_problem(refused, 409, "clearance_required")["clearance"] == "none"


# Vital signs, the hold, esketamine completion, REMS tasks --------------------------------


def test_vitals_are_recorded_while_the_patient_is_checked_in(clinic):
    booking = clinic.book("esketamine", clinic.at(9)).get_json()
    assert_problem(vitals(clinic, booking), 409, "session_not_checked_in")
    assert clinic.check_in(booking).status_code == 200
    recorded = vitals(clinic, booking)
    assert recorded.status_code == 201, recorded.get_json()
    assert recorded.get_json()["above_threshold"] is False


@pytest.mark.parametrize(("change", "field"), [
    ({"systolic": 400}, "systolic"), ({"diastolic": 5}, "diastolic"),
    ({"heart_rate": 0}, "heart_rate"), ({"spo2": 120}, "spo2"),
    ({"systolic": 90, "diastolic": 120}, "diastolic")])
def test_physiologically_impossible_vitals_are_422(clinic, change, field):
    booking = checked_in_session(clinic)
    response = vitals(clinic, booking, **change)
    body = assert_problem(response, 422, "implausible_vitals")
    assert field in {e["field"] for e in body["errors"]}


def test_a_reading_during_monitoring_gives_the_minutes_after_dose(clinic):
    booking = checked_in_session(clinic)
    assert_problem(vitals(clinic, booking, "during"), 422, "implausible_vitals")
    assert_problem(vitals(clinic, booking, "pre", minutes_after_dose=5), 422,
                   "implausible_vitals")
    assert vitals(clinic, booking, "during", minutes_after_dose=40).status_code == 201


def test_a_pre_dose_pressure_above_the_threshold_holds_until_a_clinician_overrides(clinic, api):
    booking = checked_in_session(clinic, "iv-infusion")
    high = vitals(clinic, booking, systolic=172, diastolic=96)
    assert high.get_json()["above_threshold"] is True
    base = f"/api/v1/bookings/{booking['id']}"
    assert_problem(api.post(f"{base}/complete"), 409, "session_on_hold")
    assert_problem(vitals(clinic, booking, "during", minutes_after_dose=10), 409,
                   "session_on_hold")
    holds = api.get(f"{base}/holds").get_json()
    assert [h["active"] for h in holds] == [True]
    override = f"{base}/holds/override"
    assert_problem(api.post(override, json={"reason": "Rechecked"}), 403, "clinician_only")
    assert_problem(api.post(override, json={}, role="doc"), 422, "validation_failed")
    done = api.post(override, json={"reason": "Repeat 150/92 after rest"}, role="doc")
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["active"] is False
    assert done.get_json()["overridden_by_provider_id"] == clinic.doctor["id"]
    assert_problem(api.post(override, json={"reason": "again"}, role="doc"), 409,
                   "no_active_hold")
    monitored(clinic, booking, pre=False)
    assert api.post(f"{base}/complete").get_json()["status"] == "fulfilled"


def test_the_hold_threshold_is_a_setting(clinic, app, monkeypatch):
    booking = checked_in_session(clinic, "iv-infusion")
    assert vitals(clinic, booking, systolic=150, diastolic=85).get_json()[
        "above_threshold"] is False
    settings(app, monkeypatch, bp_hold_systolic=140, bp_hold_diastolic=90)
    assert vitals(clinic, booking, systolic=150, diastolic=85).get_json()[
        "above_threshold"] is True


def test_esketamine_completion_needs_pre_40_minute_and_discharge_readings(clinic, api):
    booking = checked_in_session(clinic)
    complete = f"/api/v1/bookings/{booking['id']}/complete"
    body = assert_problem(api.post(complete), 409, "session_vitals_incomplete")
    assert body["missing"] == ["pre", "about_40_minutes", "discharge"]
    vitals(clinic, booking, "pre")
    vitals(clinic, booking, "during", minutes_after_dose=15)
    assert assert_problem(api.post(complete), 409, "session_vitals_incomplete")[
        "missing"] == ["about_40_minutes", "discharge"]
    vitals(clinic, booking, "during", minutes_after_dose=41)
    assert_problem(vitals(clinic, booking, "discharge"), 422, "ride_home_required")
    assert vitals(clinic, booking, "discharge", ride_home_confirmed=True).status_code == 201
    done = api.post(complete)
    assert done.status_code == 200 and done.get_json()["status"] == "fulfilled"
    listed = api.get(f"/api/v1/bookings/{booking['id']}/vitals").get_json()
    assert [r["phase"] for r in listed] == ["pre", "during", "during", "discharge"]


def test_an_esketamine_session_leaves_a_rems_monitoring_form_task_due_within_7_days(clinic,
                                                                                  api):
    booking = checked_in_session(clinic)
    vitals(clinic, booking, "pre")
    vitals(clinic, booking, "during", minutes_after_dose=40)
    vitals(clinic, booking, "discharge", ride_home_confirmed=True)
    assert api.post(f"/api/v1/bookings/{booking['id']}/complete").status_code == 200
    now = datetime.now().astimezone()
    tasks = api.get("/api/v1/tasks", query_string={
        "due_before": (now + timedelta(days=7, minutes=1)).isoformat()}).get_json()
    assert [(t["kind"], t["booking_id"], t["status"]) for t in tasks] == [
        ("rems_monitoring_form", booking["id"], "open")]
    assert datetime.fromisoformat(tasks[0]["due_at"]) <= now + timedelta(days=7, minutes=1)
    assert api.get("/api/v1/tasks", query_string={
        "due_before": (now + timedelta(days=6)).isoformat()}).get_json() == []
    assert api.get("/api/v1/tasks", role="doc").get_json()[0]["id"] == tasks[0]["id"]
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    api.bind("other-doc", "provider", provider_id=other["id"])
    assert api.get("/api/v1/tasks", role="other-doc").get_json() == []
    done = api.post(f"/api/v1/tasks/{tasks[0]['id']}/complete", role="doc")
    assert done.get_json()["status"] == "done"
    assert api.get("/api/v1/tasks").get_json() == []


def test_an_iv_infusion_leaves_no_rems_task(clinic, api):
    booking = checked_in_session(clinic, "iv-infusion")
    monitored(clinic, booking)
    assert api.post(f"/api/v1/bookings/{booking['id']}/complete").status_code == 200
    assert api.get("/api/v1/tasks").get_json() == []


def test_a_patient_sees_their_own_vitals_and_nobody_else_s(clinic, api):
    mine = checked_in_session(clinic, "iv-infusion")
    vitals(clinic, mine)
    other = clinic.add_cleared_patient(first_name="Other")
    theirs = checked_in_session(clinic, "iv-infusion", hour=11, patient=other)
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    assert len(api.get(f"/api/v1/bookings/{mine['id']}/vitals", role="me").get_json()) == 1
    assert_problem(api.get(f"/api/v1/bookings/{theirs['id']}/vitals", role="me"), 404,
                   "booking_not_found")
    assert_problem(vitals(clinic, mine, role="me"), 403, "forbidden")
    assert_problem(api.get(f"/api/v1/bookings/{mine['id']}/side-effects", role="me"), 403,
                   "forbidden")


# Side effects ----------------------------------------------------------------------------


def test_side_effects_are_logged_per_session_and_resolved(clinic, api):
    booking = checked_in_session(clinic)
    path = f"/api/v1/bookings/{booking['id']}/side-effects"
    logged = api.post(path, json={"kind": "dissociation", "severity": "moderate"})
    assert logged.status_code == 201, logged.get_json()
    effect = logged.get_json()
    assert effect["resolved"] is False and effect["resolved_at"] is None
    assert logged.headers["Location"] == f"{path}/{effect['id']}"
    assert_problem(api.post(path, json={"kind": "sneezing", "severity": "mild"}), 422,
                   "validation_failed")
    resolved = api.patch(f"{path}/{effect['id']}", json={"resolved": True},
                         headers={"If-Match": logged.headers["ETag"]})
    assert resolved.status_code == 200, resolved.get_json()
    assert resolved.get_json()["resolved_at"] is not None
    assert [e["kind"] for e in api.get(path, role="doc").get_json()] == ["dissociation"]


# Assessments and alerts ------------------------------------------------------------------


def assess(clinic: Clinic, instrument: str, answers: list[int], role: str = "staff",
           patient: dict | None = None, **extra):
    return clinic.api.post(f"/api/v1/patients/{(patient or clinic.patient)['id']}/assessments",
                           json={"instrument": instrument, "answers": answers, **extra},
                           role=role)


@pytest.mark.parametrize(("instrument", "answers", "total", "band"), [
    ("PHQ-9", [0, 1, 0, 1, 0, 1, 0, 1, 0], 4, "minimal"),
    ("PHQ-9", [2, 2, 2, 2, 2, 2, 2, 1, 0], 15, "moderately_severe"),
    ("PHQ-9", [3, 3, 3, 3, 3, 3, 2, 2, 0], 22, "severe"),
    ("GAD-7", [1, 1, 1, 1, 1, 0, 0], 5, "mild"),
    ("GAD-7", [3, 3, 3, 2, 2, 2, 0], 15, "severe")])
def test_assessments_are_scored_by_the_service(clinic, instrument, answers, total, band):
    response = assess(clinic, instrument, answers)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["total"], body["band"], body["urgent"]) == (total, band, False)


def test_a_wrong_number_of_answers_or_a_value_above_3_is_422(clinic):
    assert_problem(assess(clinic, "GAD-7", [1] * 9), 422, "invalid_answers")
    assert_problem(assess(clinic, "PHQ-9", [4] + [0] * 8), 422, "invalid_answers")


def test_a_non_zero_phq9_item_9_raises_an_urgent_alert_until_acknowledged(clinic, api):
    consultation(clinic)  # the doctor's patient: the doctor sees the alert too
    body = assess(clinic, "PHQ-9", [0, 0, 0, 0, 0, 0, 0, 0, 1]).get_json()
    assert body["urgent"] is True and body["band"] == "minimal"
    alerts = api.get("/api/v1/alerts").get_json()
    assert [(a["assessment_id"], a["kind"], a["urgent"]) for a in alerts] == [
        (body["id"], "phq9_item_9", True)]
    assert [a["id"] for a in api.get("/api/v1/alerts", role="doc").get_json()] == [
        alerts[0]["id"]]
    assert assess(clinic, "GAD-7", [3] * 7).get_json()["urgent"] is False
    assert len(api.get("/api/v1/alerts").get_json()) == 1
    acknowledged = api.post(f"/api/v1/alerts/{alerts[0]['id']}/acknowledge", role="doc")
    assert acknowledged.get_json()["acknowledged_at"] is not None
    assert api.get("/api/v1/alerts").get_json() == []
    assert len(api.get("/api/v1/alerts?include_acknowledged=true").get_json()) == 1


def test_a_patient_submits_and_sees_their_own_assessments_only(clinic, api):
    other = clinic.add_patient(first_name="Other")
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    assert assess(clinic, "GAD-7", [1] * 7, role="me").status_code == 201
    assert len(api.get(f"/api/v1/patients/{clinic.patient['id']}/assessments",
                       role="me").get_json()) == 1
    assert_problem(assess(clinic, "GAD-7", [1] * 7, role="me", patient=other), 404,
                   "patient_not_found")
    assert_problem(api.get(f"/api/v1/patients/{other['id']}/assessments", role="me"), 404,
                   "patient_not_found")
    assert_problem(api.get("/api/v1/alerts", role="me"), 403, "forbidden")


def test_scores_trend_across_a_series_in_time_order(clinic, api):
    start = datetime.now().astimezone() - timedelta(days=20)
    for days, item in ((10, 1), (0, 3), (20, 0)):
        assess(clinic, "PHQ-9", [item] * 8 + [0],
               taken_at=(start + timedelta(days=days)).isoformat())
    assess(clinic, "GAD-7", [2] * 7)
    trend = api.get(f"/api/v1/patients/{clinic.patient['id']}/assessments",
                    query_string={"instrument": "PHQ-9"}).get_json()
    assert [a["total"] for a in trend] == [24, 8, 0]
    series = api.post("/api/v1/series", json={
        "patient_id": clinic.patient["id"], "provider_id": clinic.doctor["id"],
        "service_type_id": clinic.services["iv-infusion"]["id"],
        "location_id": clinic.clinic["id"], "first_start": clinic.at(9).isoformat(),
        "protocol": "iv-induction", "ride_home_confirmed": True}).get_json()
    first = series["occurrences"][0]["id"]
    assess(clinic, "PHQ-9", [1] * 8 + [0], booking_id=first)
    of_series = api.get(f"/api/v1/patients/{clinic.patient['id']}/assessments",
                        query_string={"series_id": series["id"]}).get_json()
    assert [a["booking_id"] for a in of_series] == [first]


# Telehealth ------------------------------------------------------------------------------


def test_a_telehealth_visit_has_a_video_link_from_the_template(clinic, api, app, monkeypatch):
    booking = consultation(clinic)
    settings(app, monkeypatch,
             telehealth_video_url_template="https://meet.example.com/room/{booking_id}")
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    facts = api.get(f"/api/v1/bookings/{booking['id']}/telehealth", role="me").get_json()
    assert facts["video_url"] == f"https://meet.example.com/room/{booking['id']}"
    session = clinic.book("iv-infusion", clinic.at(9)).get_json()
    assert_problem(api.get(f"/api/v1/bookings/{session['id']}/telehealth"), 409,
                   "not_telehealth")


def test_telehealth_consent_is_recorded_before_check_in(clinic, api):
    booking = consultation(clinic)
    base = f"/api/v1/bookings/{booking['id']}"
    assert_problem(api.post(f"{base}/telehealth/check-in", json={"patient_state": "AZ"}), 409,
                   "telehealth_consent_required")
    assert_problem(api.post(f"{base}/check-in"), 409, "telehealth_consent_required")
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    consent = api.post(f"{base}/telehealth/consent", role="me")
    assert consent.status_code == 200 and consent.get_json()["consent_at"]
    # The plain check-in cannot re-attest the location: the telehealth one does.
    assert_problem(api.post(f"{base}/check-in"), 422, "location_attestation_required")
    done = api.post(f"{base}/telehealth/check-in", json={"patient_state": "AZ"})
    assert done.status_code == 200 and done.get_json()["status"] == "checked-in"


def test_the_location_is_re_attested_at_check_in(clinic, api):
    booking = consultation(clinic)
    base = f"/api/v1/bookings/{booking['id']}"
    api.post(f"{base}/telehealth/consent")
    moved = api.post(f"{base}/telehealth/check-in", json={"patient_state": "NM"})
    assert_problem(moved, 409, "patient_location_not_covered")
    assert api.post(f"{base}/telehealth/check-in", json={"patient_state": "AZ"}
                    ).status_code == 200
    facts = api.get(f"{base}/telehealth").get_json()
    assert facts["attested_state"] == "AZ" and facts["attested_at"]


def test_a_state_where_the_provider_is_licensed_is_accepted_at_check_in(clinic, api):
    licensed = clinic.add_provider("Dr. Two States", NPIS[1], licenses=[
        {}, {"jurisdiction": "US-CO", "board": "Colorado Medical Board"}])
    booking = clinic.book("consultation", clinic.at(14), provider=licensed).get_json()
    base = f"/api/v1/bookings/{booking['id']}"
    api.post(f"{base}/telehealth/consent")
    response = api.post(f"{base}/telehealth/check-in", json={"patient_state": "CO"})
    assert response.status_code == 200, response.get_json()


def test_telehealth_check_in_is_for_telehealth_visits(clinic, api):
    session = clinic.book("iv-infusion", clinic.at(9)).get_json()
    assert_problem(api.post(f"/api/v1/bookings/{session['id']}/telehealth/check-in",
                            json={"patient_state": "AZ"}), 409, "not_telehealth")


def test_prescribing_a_controlled_substance_without_an_in_person_evaluation_is_flagged(
        clinic, api, app, monkeypatch):
    booking = consultation(clinic)
    path = f"/api/v1/bookings/{booking['id']}/telehealth"
    settings(app, monkeypatch, controlled_substance_cutoff=date(2027, 1, 1))
    marked = api.post(f"{path}/prescribing", json={"controlled_substance": True},
                      role="doc").get_json()
    visit_day = clinic.day
    assert marked["prescribing_controlled_substance"] is True
    assert marked["controlled_substance_flag"] is (visit_day >= date(2027, 1, 1))
    settings(app, monkeypatch, controlled_substance_cutoff=visit_day)
    assert api.get(path).get_json()["controlled_substance_flag"] is True
    evaluated = api.post(f"/api/v1/patients/{clinic.patient['id']}/in-person-evaluations",
                         json={"provider_id": clinic.doctor["id"],
                               "evaluated_on": clinic_today().isoformat()}, role="doc")
    assert evaluated.status_code == 201, evaluated.get_json()
    facts = api.get(path).get_json()
    assert facts["controlled_substance_flag"] is False
    assert facts["in_person_evaluation_on"] == clinic_today().isoformat()
    api.post(f"{path}/prescribing", json={"controlled_substance": False})
    settings(app, monkeypatch, controlled_substance_cutoff=date(2000, 1, 1))
    assert api.get(path).get_json()["controlled_substance_flag"] is False


def test_an_in_person_evaluation_is_recorded_once_per_provider_and_day(clinic, api):
    consultation(clinic)
    path = f"/api/v1/patients/{clinic.patient['id']}/in-person-evaluations"
    body = {"provider_id": clinic.doctor["id"], "evaluated_on": clinic_today().isoformat()}
    assert api.post(path, json=body).status_code == 201
    assert_problem(api.post(path, json=body), 409, "duplicate_evaluation")
    future = {**body, "evaluated_on": (clinic_today() + timedelta(days=2)).isoformat()}
    assert_problem(api.post(path, json=future), 422, "invalid_input")
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    assert_problem(api.post(path, json={**body, "provider_id": other["id"]}, role="doc"), 404,
                   "provider_not_found")


# Access ----------------------------------------------------------------------------------


def test_integration_keys_see_no_clinical_data(clinic, api):
    booking = consultation(clinic)
    for path in (f"/api/v1/bookings/{booking['id']}/screening",
                 f"/api/v1/bookings/{booking['id']}/vitals",
                 f"/api/v1/patients/{clinic.patient['id']}/assessments", "/api/v1/alerts",
                 "/api/v1/tasks"):
        assert_problem(api.get(path, role="integration"), 403, "forbidden")


def test_another_provider_gets_404_for_a_session_not_theirs(clinic, api):
    booking = checked_in_session(clinic, "iv-infusion")
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    api.bind("other-doc", "provider", provider_id=other["id"])
    for path in ("vitals", "side-effects", "holds"):
        assert_problem(api.get(f"/api/v1/bookings/{booking['id']}/{path}", role="other-doc"),
                       404, "booking_not_found")
