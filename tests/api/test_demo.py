"""The demo clinic a newcomer clicks through: seeded once, usable with the README's keys."""

from __future__ import annotations

from datetime import timedelta

from service.demo import DEMO_KEYS, seed_demo
from service.extensions import unit_of_work
from tests.api.test_waitlist import run_job
from tests.factories import clinic_today


def test_demo_seed_is_complete_and_idempotent(app, client):
    with app.app_context():
        assert seed_demo(unit_of_work, today=clinic_today()) is True
        # never twice, never over real data
        assert seed_demo(unit_of_work, today=clinic_today()) is False
    staff = {"Authorization": f"Bearer {DEMO_KEYS['staff']}"}
    providers = client.get("/api/v1/providers", headers=staff).get_json()
    assert {p["credential"] for p in providers} == {"MD", "PA", "NP"}
    expiring = client.get("/api/v1/licenses/expiring?within_days=60", headers=staff).get_json()
    assert len(expiring) == 1
    codes = {t["code"] for t in client.get("/api/v1/service-types", headers=staff).get_json()}
    assert codes == {"consultation", "iv-infusion", "esketamine", "follow-up",
                     "oral-in-clinic", "sublingual-in-clinic", "sublingual-home"}
    patients = client.get("/api/v1/patients", headers=staff).get_json()
    assert "America/Denver" in {p["timezone"] for p in patients}
    statuses = [b["status"] for b in client.get("/api/v1/bookings?page_size=50",
                                                 headers=staff).get_json()]
    # 4 held (2 consultations, an esketamine and a sublingual dose), 2 visits and 6 video
    # check-ins of a home protocol ahead
    assert sorted(statuses) == ["booked"] * 8 + ["fulfilled"] * 4
    consultation = next(t for t in client.get("/api/v1/service-types", headers=staff).get_json()
                        if t["code"] == "consultation")
    start = clinic_today() + timedelta(days=3)
    slots = client.get("/api/v1/slots", headers=staff, query_string={
        "service_type": consultation["id"], "start": start.isoformat(),
        "end": (start + timedelta(days=7)).isoformat()}).get_json()
    assert slots["slots"]
    patient = {"Authorization": f"Bearer {DEMO_KEYS['patient']}"}
    assert len(client.get("/api/v1/patients", headers=patient).get_json()) == 1


def test_demo_has_a_cleared_patient_one_needing_review_and_an_esketamine_session(app, client):
    with app.app_context():
        assert seed_demo(unit_of_work, today=clinic_today()) is True
    staff = {"Authorization": f"Bearer {DEMO_KEYS['staff']}"}
    patients = {p["last_name"]: p for p in
                client.get("/api/v1/patients", headers=staff).get_json()}

    def standing(name):
        decisions = client.get(f"/api/v1/patients/{patients[name]['id']}/clearance-decisions",
                               headers=staff).get_json()
        return decisions[0]["decision"] if decisions else None

    assert standing("Nguyen") == "cleared" and patients["Nguyen"]["cleared_for_treatment"]
    assert standing("Rivera") == "needs_review"
    assert not patients["Rivera"]["cleared_for_treatment"]
    types = {t["id"]: t["code"] for t in
             client.get("/api/v1/service-types", headers=staff).get_json()}
    session = next(b for b in client.get("/api/v1/bookings", headers=staff).get_json()
                   if types[b["service_type_id"]] == "esketamine")
    assert session["status"] == "fulfilled"
    readings = client.get(f"/api/v1/bookings/{session['id']}/vitals", headers=staff).get_json()
    phases = [r["phase"] for r in readings]
    assert phases[0] == "pre" and phases[-1] == "discharge" and readings[-1][
        "ride_home_confirmed"]
    assert any(r["minutes_after_dose"] == 40 for r in readings)
    tasks = client.get("/api/v1/tasks", headers=staff).get_json()
    assert [t["booking_id"] for t in tasks] == [session["id"]]


def test_demo_has_the_pill_in_clinic_and_a_home_protocol_with_its_check_ins(app, client):
    with app.app_context():
        assert seed_demo(unit_of_work, today=clinic_today()) is True
    staff = {"Authorization": f"Bearer {DEMO_KEYS['staff']}"}
    types = {t["code"]: t for t in client.get("/api/v1/service-types",
                                                headers=staff).get_json()}
    routes = {code: (t["route"], t["at_home"], t["modality"]) for code, t in types.items()}
    assert routes["iv-infusion"] == ("iv", False, "in-person")
    assert routes["esketamine"] == ("intranasal", False, "in-person")
    assert routes["oral-in-clinic"] == ("oral", False, "in-person")
    assert routes["sublingual-in-clinic"] == ("sublingual", False, "in-person")
    assert routes["sublingual-home"] == ("sublingual", True, "telehealth")
    assert types["sublingual-in-clinic"]["needs_chair"]
    assert types["sublingual-in-clinic"]["recovery_minutes"] >= 60
    assert types["sublingual-home"]["contraindications"]
    patients = {p["last_name"]: p for p in
                client.get("/api/v1/patients", headers=staff).get_json()}
    okafor = patients["Okafor"]["id"]
    bookings = client.get(f"/api/v1/bookings?patient_id={okafor}&page_size=50",
                          headers=staff).get_json()
    by_type = {}
    for booking in bookings:
        code = next(c for c, t in types.items() if t["id"] == booking["service_type_id"])
        by_type.setdefault(code, []).append(booking)
    [first_dose] = by_type["sublingual-in-clinic"]
    assert first_dose["status"] == "fulfilled"
    phases = [r["phase"] for r in client.get(f"/api/v1/bookings/{first_dose['id']}/vitals",
                                             headers=staff).get_json()]
    assert phases == ["pre", "during", "during", "discharge"]
    check_ins = by_type["sublingual-home"]
    assert len(check_ins) == 6 and {b["status"] for b in check_ins} == {"booked"}
    [series] = client.get(f"/api/v1/series?patient_id={okafor}", headers=staff).get_json()
    assert series["protocol"] == "home-check-ins"
    steps = client.get(f"/api/v1/bookings/{check_ins[0]['id']}/instructions",
                       headers=staff).get_json()
    assert steps["at_home"] and not steps["ride_home_required"]
    assert steps["after_care"] == ["No driving until the next day after a home dose."]


def test_the_demo_console_has_one_open_urgent_alert_and_an_on_call_rota(app, client):
    with app.app_context():
        assert seed_demo(unit_of_work, today=clinic_today()) is True
    staff = {"Authorization": f"Bearer {DEMO_KEYS['staff']}"}
    [alert] = client.get("/api/v1/alerts", headers=staff).get_json()
    rivera = next(p for p in client.get("/api/v1/patients", headers=staff).get_json()
                  if p["last_name"] == "Rivera")
    assert (alert["kind"], alert["urgent"], alert["patient_id"]) == (
        "phq9_item_9", True, rivera["id"])
    assert alert["acknowledged_at"] is None
    rota = client.get("/api/v1/on-call-contacts", headers=staff).get_json()
    assert [c["tier"] for c in rota] == [1, 2]
    # Both tiers were told overnight (email and SMS each); nobody acknowledged yet.
    assert alert["escalation"] == "every_tier_told"
    assert sorted((n["tier"], n["channel"], n["status"]) for n in alert["notices"]) == [
        (1, "email", "sent"), (1, "sms", "sent"), (2, "email", "sent"), (2, "sms", "sent")]


def test_the_walk_through_cancellation_offers_the_slot_to_the_waitlisted_demo_patient(
        app, client):
    """README: Jordan Rivera cancels his consultation with his own key; the scheduler's
    waitlist job offers the slot to Ava Begay, who waits for one with Dr. Whitfield."""
    with app.app_context():
        assert seed_demo(unit_of_work, today=clinic_today()) is True
    staff = {"Authorization": f"Bearer {DEMO_KEYS['staff']}"}
    patient = {"Authorization": f"Bearer {DEMO_KEYS['patient']}"}
    [visit] = client.get("/api/v1/bookings?status=booked", headers=patient).get_json()
    [entry] = client.get("/api/v1/waitlist", headers=staff).get_json()
    assert entry["status"] == "waiting"
    assert visit["cancellation"]["late_if_cancelled_now"] is False
    cancelled = client.post(f"/api/v1/bookings/{visit['id']}/cancel", headers=patient,
                            json={"reason": "Schedule conflict"})
    assert cancelled.status_code == 200, cancelled.get_json()
    assert run_job(app).offered == 1
    [offer] = client.get("/api/v1/waitlist/offers", headers=staff).get_json()
    assert (offer["patient_id"], offer["status"]) == (entry["patient_id"], "offered")
    assert offer["start"] == client.get(f"/api/v1/bookings/{visit['id']}",
                                        headers=staff).get_json()["start"]
