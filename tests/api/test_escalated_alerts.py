"""Escalated alerts: an urgent alert (PHQ-9 item 9 above 0, a reading beyond the limits
during a dose) tells the on-call rota at once through the reminder channels, in words that
name nobody; it escalates to the next tier when nobody acknowledges it in time, and stops
when someone does; it reaches the webhooks; the patient who reported thoughts of self-harm
reads the 988 Suicide & Crisis Lifeline text at once. Time is simulated by passing ``now``
to the scheduler's runners (``OutboxRunner.run_once``)."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import jsonschema
import pytest
from sqlalchemy import select

from service.config import Settings
from service.db import utcnow
from service.domain.calendar.models import WebhookEvent
from service.domain.oncall.dispatch import NOTICE_SUBJECT, notice_text
from service.domain.oncall.models import AlertNotice
from service.domain.outbox import OutboxRunner
from service.domain.reminders.content import forbidden_words
from service.domain.webhooks.catalogue import schema
from service.extensions import unit_of_work
from service.scheduler import alert_notice_runner, webhook_runner
from tests.api.test_consultations import checked_in_session, vitals
from tests.api.test_directory import assert_problem
from tests.api.test_watched_doses import at
from tests.db.test_dispatch import Sinks, live_settings, running_sinks
from tests.db.test_webhook_dispatch import Receiver
from tests.scenario import build_clinic

ESCALATION = timedelta(minutes=Settings().alert_escalation_minutes)
WHITFIELD = {"name": "Dr. Whitfield", "tier": 1, "email": "oncall.whitfield@clinic.test",
             "phone": "+16025550190"}
NURSE = {"name": "Charge nurse", "tier": 2, "phone": "+16025550191"}
SELF_HARM = [1, 1, 1, 1, 1, 1, 1, 1, 1]


@pytest.fixture
def clinic(api):
    scenario = build_clinic(api)
    api.bind("doc", "provider", provider_id=scenario.doctor["id"])
    api.bind("me", "patient", patient_id=scenario.patient["id"])
    return scenario


@pytest.fixture(name="sinks")
def _sinks():
    """A local SMTP server and SMS gateway (tests/db/test_dispatch.py)."""
    with running_sinks() as started:
        yield started


@pytest.fixture(name="receiver")
def _receiver(app):
    """An integrator's webhook endpoint (tests/db/test_webhook_dispatch.py), on 127.0.0.1."""
    server = Receiver()
    server.thread.start()
    settings = app.config["SETTINGS"]
    app.config["SETTINGS"] = dataclasses.replace(settings, webhook_allow_private_targets=True)
    try:
        yield server
    finally:
        app.config["SETTINGS"] = settings
        server.server.shutdown()
        server.server.server_close()


def add_contact(api, **body: Any) -> dict[str, Any]:
    response = api.post("/api/v1/on-call-contacts", role="admin", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.fixture
def rota(api, clinic) -> dict[str, dict[str, Any]]:
    return {"first": add_contact(api, **WHITFIELD, provider_id=clinic.doctor["id"]),
            "second": add_contact(api, **NURSE)}


def phq9(api, clinic, answers: list[int], role: str = "me") -> dict[str, Any]:
    response = api.post(f"/api/v1/patients/{clinic.patient['id']}/assessments", role=role,
                        json={"instrument": "PHQ-9", "answers": answers})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def the_alert(api) -> dict[str, Any]:
    [alert] = [a for a in api.get("/api/v1/alerts").get_json() if a["urgent"]]
    return alert


def notices(app, alert: dict[str, Any]) -> list[AlertNotice]:
    with app.app_context():
        uow = unit_of_work(read_only=True)
        with uow:
            return list(uow.session.scalars(
                select(AlertNotice).where(AlertNotice.alert_id == uuid.UUID(alert["id"]))
                .order_by(AlertNotice.due_at, AlertNotice.channel)))


def runner(app, sinks: Sinks, **overrides: Any) -> OutboxRunner:
    return alert_notice_runner(app.extensions["clinic.database"],
                               live_settings(sinks, **overrides))


def sent(sinks: Sinks) -> list[tuple[str, str]]:
    """(address, text) of every message the channels received."""
    return ([(m["to"][0], m["body"].strip()) for m in sinks.mail.messages]
            + [(r["to"], r["body"]) for r in sinks.sms.requests])


# The patient -------------------------------------------------------------------------------


def test_a_patient_reporting_thoughts_of_self_harm_reads_the_988_lifeline_at_once(api, clinic):
    answer = phq9(api, clinic, SELF_HARM)
    assert answer["urgent"] is True
    assert "988" in answer["crisis_resources"]
    assert "Suicide & Crisis Lifeline" in answer["crisis_resources"]
    calm = phq9(api, clinic, [1, 1, 1, 1, 1, 1, 1, 1, 0])
    assert calm["crisis_resources"] is None


# The rota is told, once, in words that name nobody -----------------------------------------


def test_an_urgent_alert_tells_the_first_tier_at_once_on_each_of_its_channels(
        app, api, clinic, rota, sinks):
    phq9(api, clinic, SELF_HARM)
    report = runner(app, sinks).run_once(now=utcnow() + timedelta(seconds=1))
    assert report.sent == 2
    assert sorted(address for address, _ in sent(sinks)) == sorted(
        [WHITFIELD["email"], WHITFIELD["phone"]])
    assert sinks.mail.messages[0]["subject"] == NOTICE_SUBJECT
    # Sent, and not again on the next run.
    assert runner(app, sinks).run_once(now=utcnow() + timedelta(seconds=2)).sent == 0
    assert len(sent(sinks)) == 2


def test_the_notice_names_no_patient_no_reading_and_no_clinical_word(
        app, api, clinic, rota, sinks):
    phq9(api, clinic, SELF_HARM)
    session = checked_in_session(clinic)
    assert vitals(clinic, session, "pre", taken_at=at(60)).status_code == 201
    assert vitals(clinic, session, "during", minutes_after_dose=40, taken_at=at(15),
                  systolic=192, diastolic=118, heart_rate=128, spo2=93).status_code == 201
    runner(app, sinks).run_once(now=utcnow() + timedelta(seconds=1))
    texts = [text for _, text in sent(sinks)]
    assert len(texts) == 4  # two alerts, email and SMS each
    expected = notice_text(clinic_name=Settings().clinic_name, escalated=False)
    patient = clinic.patient
    for text in texts:
        assert text == expected
        assert patient["first_name"] not in text and patient["last_name"] not in text
        assert not {"192", "118", "128", "93", "PHQ"} & set(text.replace(":", " ").split())
        assert forbidden_words(text) == []


def test_two_schedulers_running_at_once_send_each_notice_once(app, api, clinic, sinks):
    for n in range(4):
        add_contact(api, name=f"Clinician {n}", tier=1, email=f"c{n}@clinic.test",
                    phone=f"+160255502{n:02d}")
    for _ in range(3):
        phq9(api, clinic, SELF_HARM)
    with app.app_context():
        uow = unit_of_work(read_only=True)
        with uow:
            expected = list(uow.session.scalars(select(AlertNotice.dedupe_key)))
    assert len(expected) == 24
    sinks.sms.delay = 0.001
    workers = [runner(app, sinks, reminder_batch_size=5) for _ in range(2)]
    barrier = threading.Barrier(2)
    now = utcnow() + timedelta(seconds=1)

    def drain(worker: OutboxRunner) -> None:
        barrier.wait()
        worker.run_once(now=now)

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    keys = [m["message_id"].strip("<>").split("@")[0] for m in sinks.mail.messages]
    keys += sinks.sms.keys()
    assert sorted(keys) == sorted(expected)  # each once, none missing
    with app.app_context():
        uow = unit_of_work(read_only=True)
        with uow:
            statuses = Counter(s.value for s in uow.session.scalars(select(AlertNotice.status)))
    assert statuses == Counter({"sent": 24})


# Escalation --------------------------------------------------------------------------------


def test_nobody_acknowledging_in_time_escalates_to_the_next_tier(app, api, clinic, rota,
                                                                 sinks):
    phq9(api, clinic, SELF_HARM)
    raised = datetime.fromisoformat(the_alert(api)["raised_at"])
    runner(app, sinks).run_once(now=raised + timedelta(seconds=1))
    assert len(sent(sinks)) == 2
    runner(app, sinks).run_once(now=raised + ESCALATION - timedelta(seconds=30))
    assert len(sent(sinks)) == 2  # not yet
    runner(app, sinks).run_once(now=raised + ESCALATION + timedelta(seconds=1))
    assert sent(sinks)[2:] == [(NURSE["phone"], notice_text(
        clinic_name=Settings().clinic_name, escalated=True))]


def test_acknowledging_the_alert_stops_the_escalation(app, api, clinic, rota, sinks):
    phq9(api, clinic, SELF_HARM)
    alert = the_alert(api)
    raised = datetime.fromisoformat(alert["raised_at"])
    runner(app, sinks).run_once(now=raised + timedelta(seconds=1))
    acknowledged = api.post(f"/api/v1/alerts/{alert['id']}/acknowledge")
    assert acknowledged.status_code == 200
    runner(app, sinks).run_once(now=raised + 3 * ESCALATION)
    assert len(sent(sinks)) == 2  # the first tier only
    assert Counter((n.tier, n.status.value) for n in notices(app, alert)) == Counter(
        {(1, "sent"): 2, (2, "cancelled"): 1})


def test_an_alert_acknowledged_before_the_scheduler_ran_tells_nobody(app, api, clinic, rota,
                                                                     sinks):
    phq9(api, clinic, SELF_HARM)
    alert = the_alert(api)
    assert api.post(f"/api/v1/alerts/{alert['id']}/acknowledge").status_code == 200
    runner(app, sinks).run_once(now=utcnow() + 3 * ESCALATION)
    assert sent(sinks) == []


def test_a_contact_taken_off_the_rota_after_the_alert_is_skipped(app, api, clinic, rota,
                                                                 sinks):
    phq9(api, clinic, SELF_HARM)
    off = api.post(f"/api/v1/on-call-contacts/{rota['second']['id']}/deactivate",
                   role="admin")
    assert off.status_code == 200
    runner(app, sinks).run_once(now=utcnow() + 2 * ESCALATION)
    assert sorted(address for address, _ in sent(sinks)) == sorted(
        [WHITFIELD["email"], WHITFIELD["phone"]])
    assert {(n.tier, n.status.value, n.reason) for n in notices(app, the_alert(api))} == {
        (1, "sent", None), (2, "skipped", "contact_unavailable")}


def answer_notices(alert: dict[str, Any]) -> list[tuple[int, str, str]]:
    return sorted((n["tier"], n["channel"], n["status"]) for n in alert["notices"])


def test_the_alert_answer_shows_the_notices_and_when_it_escalates(app, api, clinic, rota,
                                                                  sinks):
    phq9(api, clinic, SELF_HARM)
    alert = the_alert(api)
    raised = datetime.fromisoformat(alert["raised_at"])
    assert alert["escalation"] == "escalating"
    assert datetime.fromisoformat(alert["next_escalation_at"]) == raised + ESCALATION
    assert answer_notices(alert) == [(1, "email", "planned"), (1, "sms", "planned"),
                                     (2, "sms", "planned")]
    runner(app, sinks).run_once(now=raised + timedelta(seconds=1))
    read = api.get(f"/api/v1/alerts/{alert['id']}")
    assert read.status_code == 200, read.get_json()
    alert = read.get_json()
    assert answer_notices(alert) == [(1, "email", "sent"), (1, "sms", "sent"),
                                     (2, "sms", "planned")]
    assert all(n["sent_at"] for n in alert["notices"] if n["tier"] == 1)
    assert [n["escalated"] for n in alert["notices"]] == [False, False, True]
    # No addresses, no contact, nothing about the patient in a notice.
    text = json.dumps(alert["notices"])
    assert WHITFIELD["email"] not in text and NURSE["phone"] not in text
    assert {key for n in alert["notices"] for key in n} == {
        "tier", "channel", "escalated", "status", "reason", "due_at", "sent_at"}
    runner(app, sinks).run_once(now=raised + ESCALATION + timedelta(seconds=1))
    told = api.get(f"/api/v1/alerts/{alert['id']}").get_json()
    assert (told["escalation"], told["next_escalation_at"]) == ("every_tier_told", None)


def test_the_alert_answer_shows_escalation_stopped_on_acknowledgement(app, api, clinic, rota,
                                                                      sinks):
    phq9(api, clinic, SELF_HARM)
    alert = the_alert(api)
    runner(app, sinks).run_once(now=datetime.fromisoformat(alert["raised_at"])
                                + timedelta(seconds=1))
    acknowledged = api.post(f"/api/v1/alerts/{alert['id']}/acknowledge").get_json()
    assert acknowledged["escalation"] == "stopped_on_acknowledgement"
    assert acknowledged["next_escalation_at"] is None
    assert answer_notices(acknowledged) == [(1, "email", "sent"), (1, "sms", "sent"),
                                            (2, "sms", "cancelled")]
    assert [n["reason"] for n in acknowledged["notices"] if n["tier"] == 2] == ["acknowledged"]
    listed = api.get("/api/v1/alerts", query_string={"include_acknowledged": True}).get_json()
    assert [a["escalation"] for a in listed] == ["stopped_on_acknowledgement"]


def test_a_patient_cannot_read_an_alert_and_an_unknown_one_is_not_found(api, clinic, rota):
    phq9(api, clinic, SELF_HARM)
    alert = the_alert(api)
    assert_problem(api.get(f"/api/v1/alerts/{alert['id']}", role="me"), 403, "forbidden")
    assert_problem(api.get(f"/api/v1/alerts/{uuid.uuid4()}"), 404, "alert_not_found")


def test_the_escalation_time_is_a_setting():
    assert Settings.from_env({}).alert_escalation_minutes == 10
    assert Settings.from_env({"ALERT_ESCALATION_MINUTES": "5"}).alert_escalation_minutes == 5
    with pytest.raises(ValueError):
        Settings.from_env({"ALERT_ESCALATION_MINUTES": "0"})


# Which alerts, and who is told -------------------------------------------------------------


def test_a_reading_beyond_the_limits_during_a_dose_tells_the_rota_too(app, api, clinic, rota,
                                                                     sinks):
    session = checked_in_session(clinic)
    assert vitals(clinic, session, "pre", taken_at=at(60)).status_code == 201
    assert vitals(clinic, session, "during", minutes_after_dose=40, taken_at=at(15),
                  spo2=88).status_code == 201
    alert = the_alert(api)
    assert alert["kind"] == "vitals_out_of_range"
    assert [(n.tier, n.escalated) for n in notices(app, alert)] == [
        (1, False), (1, False), (2, True)]


def test_an_alert_that_is_not_urgent_pages_nobody(app, api, clinic, rota):
    # A booked session flagged for attention (its clearance withdrawn): an alert for the
    # console, not a page.
    patient = clinic.add_cleared_patient(first_name="Kai", rems_enrolled=True)
    booking = clinic.book("esketamine", clinic.at(9), patient=patient)
    assert booking.status_code == 201, booking.get_json()
    withdrawn = api.post(f"/api/v1/patients/{patient['id']}/clearance-decisions", role="doc",
                         json={"decision": "not_cleared", "reason": "New cardiac history."})
    assert withdrawn.status_code == 201, withdrawn.get_json()
    [alert] = api.get("/api/v1/alerts").get_json()
    assert (alert["kind"], alert["urgent"]) == ("booking_attention", False)
    assert notices(app, alert) == []
    assert (alert["notices"], alert["escalation"]) == ([], "not_urgent")


def test_with_nobody_on_the_rota_the_alert_still_stands(app, api, clinic):
    phq9(api, clinic, SELF_HARM)
    assert notices(app, the_alert(api)) == []
    assert the_alert(api)["escalation"] == "nobody_on_call"


# Webhooks ----------------------------------------------------------------------------------


def test_alert_raised_and_acknowledged_reach_the_webhooks_without_patient_data(
        app, api, clinic, receiver):
    hook = api.post("/api/v1/webhooks", role="integration", json={
        "url": receiver.url, "events": ["alert.raised", "alert.acknowledged"]})
    assert hook.status_code == 201, hook.get_json()
    receiver.secret = hook.get_json()["secret"]
    phq9(api, clinic, SELF_HARM)
    alert = the_alert(api)
    assert api.post(f"/api/v1/alerts/{alert['id']}/acknowledge").status_code == 200
    settings = Settings.from_env({"WEBHOOK_ALLOW_PRIVATE_TARGETS": "1"})
    webhook_runner(app.extensions["clinic.database"], settings).run_once(
        now=utcnow() + timedelta(seconds=1))
    bodies = [json.loads(r["body"]) for r in receiver.accepted()]
    assert [b["type"] for b in bodies] == ["alert.raised", "alert.acknowledged"]
    for body in bodies:
        jsonschema.validate(body, schema(WebhookEvent(body["type"])))
        assert body["data"]["alert_id"] == alert["id"]
        text = json.dumps(body)
        assert clinic.patient["id"] not in text and clinic.patient["first_name"] not in text
    assert bodies[0]["data"]["urgent"] is True


# The rota ------------------------------------------------------------------------------------


def test_only_an_administrator_keeps_the_rota_and_clinicians_read_it(api, clinic):
    refused = api.post("/api/v1/on-call-contacts", role="staff", json=NURSE)
    assert_problem(refused, 403, "forbidden")
    second = add_contact(api, **NURSE)
    first = add_contact(api, **WHITFIELD)
    listed = api.get("/api/v1/on-call-contacts", role="doc")
    assert [c["id"] for c in listed.get_json()] == [first["id"], second["id"]]  # tier order
    moved = api.patch(f"/api/v1/on-call-contacts/{second['id']}", role="admin",
                      json={"tier": 3}, headers={"If-Match": '"v1"'})
    assert moved.status_code == 200 and moved.get_json()["tier"] == 3
    assert api.get("/api/v1/on-call-contacts", role="me").status_code == 403


def test_a_contact_needs_somewhere_to_reach_them(api, clinic):
    assert_problem(api.post("/api/v1/on-call-contacts", role="admin",
                            json={"name": "Nobody", "tier": 1}),
                   422, "contact_address_required")
    contact = add_contact(api, **NURSE)
    cleared = api.patch(f"/api/v1/on-call-contacts/{contact['id']}", role="admin",
                        json={"phone": None}, headers={"If-Match": '"v1"'})
    assert_problem(cleared, 422, "contact_address_required")


def test_a_provider_on_call_sees_and_acknowledges_urgent_alerts_of_any_patient(
        app, api, clinic):
    other = api.create("/api/v1/providers", {
        "name": "Dr. Covering", "credential": "MD", "npi": "1245319599",
        "timezone": "America/Phoenix"})
    api.bind("covering", "provider", provider_id=other["id"])
    phq9(api, clinic, SELF_HARM)
    alert = the_alert(api)
    assert api.get("/api/v1/alerts", role="covering").get_json() == []
    assert api.post(f"/api/v1/alerts/{alert['id']}/acknowledge",
                    role="covering").status_code == 404
    add_contact(api, **WHITFIELD, provider_id=other["id"])  # now on call
    assert [a["id"] for a in api.get("/api/v1/alerts", role="covering").get_json()] == [
        alert["id"]]
    assert api.post(f"/api/v1/alerts/{alert['id']}/acknowledge",
                    role="covering").status_code == 200
