"""The demo clinic a newcomer clicks through: seeded once, usable with the README's keys."""

from __future__ import annotations

from datetime import date, timedelta

from service.demo import DEMO_KEYS, seed_demo
from service.extensions import unit_of_work


def test_demo_seed_is_complete_and_idempotent(app, client):
    with app.app_context():
        assert seed_demo(unit_of_work) is True
        assert seed_demo(unit_of_work) is False  # never twice, never over real data
    staff = {"Authorization": f"Bearer {DEMO_KEYS['staff']}"}
    providers = client.get("/api/v1/providers", headers=staff).get_json()
    assert {p["credential"] for p in providers} == {"MD", "PA", "NP"}
    expiring = client.get("/api/v1/licenses/expiring?within_days=60", headers=staff).get_json()
    assert len(expiring) == 1
    codes = {t["code"] for t in client.get("/api/v1/service-types", headers=staff).get_json()}
    assert codes == {"consultation", "iv-infusion", "esketamine", "follow-up"}
    patients = client.get("/api/v1/patients", headers=staff).get_json()
    assert "America/Denver" in {p["timezone"] for p in patients}
    assert len(client.get("/api/v1/bookings", headers=staff).get_json()) == 2
    consultation = next(t for t in client.get("/api/v1/service-types", headers=staff).get_json()
                        if t["code"] == "consultation")
    start = date.today() + timedelta(days=3)
    slots = client.get("/api/v1/slots", headers=staff, query_string={
        "service_type": consultation["id"], "start": start.isoformat(),
        "end": (start + timedelta(days=7)).isoformat()}).get_json()
    assert slots["slots"]
    patient = {"Authorization": f"Bearer {DEMO_KEYS['patient']}"}
    assert len(client.get("/api/v1/patients", headers=patient).get_json()) == 1
