"""Webhook subscriptions through HTTP: secrets shown once, target checks, access, and the
outbox rows each booking change writes in its own transaction (thin payloads)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from service.domain.bookings.models import Booking
from service.extensions import unit_of_work
from tests.api.test_directory import assert_problem
from tests.api.test_series import book_series
from tests.scenario import build_clinic

HOOK = "https://ehr.example.com/hooks/clinic"
EVENTS = ["booking.created", "booking.rescheduled", "booking.cancelled", "booking.no_show",
          "series.created"]


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def subscribe(api, role: str = "integration", **body):
    payload = {"url": HOOK, "events": EVENTS, **body}
    return api.post("/api/v1/webhooks", json=payload, role=role)


def deliveries(api, hook: dict, role: str = "integration", **params) -> list[dict]:
    response = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries", query_string=params,
                       role=role)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def detail(api, hook: dict, delivery: dict, role: str = "integration") -> dict:
    response = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}",
                       role=role)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_secret_is_shown_once(api):
    response = subscribe(api, description="EHR sync")
    assert response.status_code == 201, response.get_json()
    hook = response.get_json()
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    assert hook["events"] == EVENTS and hook["active"] is True
    assert response.headers["Location"] == f"/api/v1/webhooks/{hook['id']}"
    assert response.headers["ETag"] == '"v1"'
    read = api.get(f"/api/v1/webhooks/{hook['id']}", role="integration").get_json()
    assert "secret" not in read and read["url"] == HOOK
    listed = api.get("/api/v1/webhooks", role="integration").get_json()
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]


@pytest.mark.parametrize("url", [
    "ftp://ehr.example.com/hook", "file:///etc/passwd", "https://user:pw@ehr.example.com/",
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://api.localhost/hook",
    "http://10.1.2.3/hook", "http://192.168.0.10/", "http://169.254.169.254/latest/",
    "http://[::1]/hook", "http://[::ffff:127.0.0.1]/", "http://2130706433/",
    "http://0x7f.1/", "http://0.0.0.0/", "https:///nohost", "http://ehr.example.com:0/",
    "https://ehr.example.com/hook#fragment", "https://" + "a" * 2000 + ".com/"])
def test_only_external_http_targets_are_accepted(api, url):
    assert_problem(subscribe(api, url=url), 422,
                   "webhook_url_not_allowed" if len(url) < 2000 else "validation_failed")


def test_events_are_validated(api):
    assert_problem(subscribe(api, events=["booking.deleted"]), 422, "validation_failed")
    assert_problem(subscribe(api, events=[]), 422, "validation_failed")
    assert_problem(subscribe(api, secret="mine"), 422, "validation_failed")
    hook = subscribe(api, events=["booking.cancelled", "booking.created",
                                  "booking.created"]).get_json()
    assert hook["events"] == ["booking.created", "booking.cancelled"]


def test_who_manages_which_subscriptions(api, clinic):
    ours = subscribe(api).get_json()
    staff_made = subscribe(api, role="staff").get_json()
    other = api.bind("other-integration", "integration")
    assert other
    assert api.get(f"/api/v1/webhooks/{ours['id']}", role="staff").status_code == 200
    assert_problem(api.get(f"/api/v1/webhooks/{ours['id']}", role="other-integration"), 404,
                   "webhook_not_found")
    assert [h["id"] for h in api.get("/api/v1/webhooks", role="integration").get_json()] == [
        ours["id"]]
    assert {h["id"] for h in api.get("/api/v1/webhooks", role="staff").get_json()} == {
        ours["id"], staff_made["id"]}
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    for role in ("me", "doc"):
        assert_problem(subscribe(api, role=role), 403, "forbidden")
        assert_problem(api.get("/api/v1/webhooks", role=role), 403, "forbidden")


def test_update_with_if_match_and_delete(api):
    hook = subscribe(api).get_json()
    path = f"/api/v1/webhooks/{hook['id']}"
    assert_problem(api.patch(path, json={"active": False}, role="integration"), 428,
                   "precondition_required")
    off = api.patch(path, json={"active": False, "events": ["booking.cancelled"]},
                    headers={"If-Match": '"v1"'}, role="integration")
    assert off.status_code == 200, off.get_json()
    assert off.get_json()["active"] is False
    assert off.get_json()["disabled_reason"] == "disabled_by_user"
    assert off.headers["ETag"] == '"v2"'
    on = api.patch(path, json={"active": True}, headers={"If-Match": '"v2"'},
                   role="integration").get_json()
    assert on["active"] is True and on["disabled_reason"] is None
    assert_problem(api.patch(path, json={"url": "http://127.0.0.1/"},
                             headers={"If-Match": '"v3"'}, role="integration"), 422,
                   "webhook_url_not_allowed")
    assert api.request("DELETE", path, role="integration").status_code == 204
    assert_problem(api.get(path, role="integration"), 404, "webhook_not_found")


def test_every_booking_change_queues_a_thin_delivery_in_its_transaction(api, clinic):
    hook = subscribe(api).get_json()
    only_cancel = subscribe(api, events=["booking.cancelled"]).get_json()
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    assert_problem(clinic.book("consultation", clinic.at(14)), 409, "slot_unavailable")
    base = f"/api/v1/bookings/{booking['id']}"
    api.post(f"{base}/reschedule", json={"start": clinic.at(15).isoformat()},
             headers={"If-Match": '"v1"'})
    api.post(f"{base}/cancel", json={"reason": "Patient request"})

    queued = deliveries(api, hook)
    assert [d["event_type"] for d in queued] == [
        "booking.cancelled", "booking.rescheduled", "booking.created"]  # newest first
    assert {d["status"] for d in queued} == {"pending"} and len({d["event_id"] for d in
                                                                  queued}) == 3
    assert [d["event_type"] for d in deliveries(api, only_cancel)] == ["booking.cancelled"]
    assert deliveries(api, only_cancel)[0]["event_id"] == queued[0]["event_id"]

    moved = detail(api, hook, queued[1])
    payload = moved["payload"]
    assert set(payload) == {"id", "type", "occurred_at", "api_version", "data"}
    assert payload["id"] == moved["event_id"] and payload["type"] == "booking.rescheduled"
    assert payload["api_version"] == "v1"
    assert payload["data"] == {
        "booking_id": booking["id"], "status": "booked",
        "start": clinic.at(15).astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "end": clinic.at(16).astimezone(UTC).isoformat().replace("+00:00", "Z")}
    assert moved["log"] == [] and moved["attempts"] == 0
    text = json.dumps([detail(api, hook, d)["payload"] for d in queued])
    for secret in (clinic.patient["first_name"], clinic.patient["last_name"],
                   clinic.patient["email"], clinic.patient["id"], "Telehealth"):
        assert secret not in text
    assert deliveries(api, hook, status="delivered") == []
    assert [d["event_type"] for d in deliveries(api, hook, event_type="booking.created")] == [
        "booking.created"]


def test_a_no_show_is_an_event(api, clinic, app):
    hook = subscribe(api, events=["booking.no_show"]).get_json()
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    with app.app_context(), unit_of_work() as uow:  # the visit started an hour ago
        start = datetime.now(UTC) - timedelta(hours=1)
        uow.session.execute(update(Booking).values(
            starts_at=start, ends_at=start + timedelta(hours=1), provider_starts_at=start,
            provider_ends_at=start + timedelta(hours=1), hold_ends_at=start + timedelta(
                hours=1)))
        uow.commit()
    response = api.post(f"/api/v1/bookings/{booking['id']}/no-show")
    assert response.status_code == 200, response.get_json()
    queued = deliveries(api, hook)
    assert [d["event_type"] for d in queued] == ["booking.no_show"]
    assert detail(api, hook, queued[0])["payload"]["data"]["status"] == "noshow"


def test_a_new_series_is_one_event_listing_its_sessions(api, clinic):
    hook = subscribe(api, events=["series.created"]).get_json()
    response = book_series(clinic, clinic.at(9))
    assert response.status_code == 201, response.get_json()
    series = response.get_json()
    queued = deliveries(api, hook)
    assert [d["event_type"] for d in queued] == ["series.created"]
    data = detail(api, hook, queued[0])["payload"]["data"]
    assert data["series_id"] == series["id"] and data["status"] == "active"
    assert data["planned_sessions"] == 6 and len(data["bookings"]) == 6
    assert set(data["bookings"][0]) == {"booking_id", "start", "end", "status"}


def test_a_disabled_subscription_gets_nothing_new_and_cannot_redeliver(api, clinic, app):
    hook = subscribe(api).get_json()
    clinic.book("consultation", clinic.at(14))
    first = deliveries(api, hook)[0]
    api.patch(f"/api/v1/webhooks/{hook['id']}", json={"active": False},
              headers={"If-Match": '"v1"'}, role="integration")
    clinic.book("consultation", clinic.at(16))
    assert len(deliveries(api, hook)) == 1
    redeliver = f"/api/v1/webhooks/{hook['id']}/deliveries/{first['id']}/redeliver"
    assert_problem(api.post(redeliver, role="integration"), 409, "webhook_inactive")
    api.patch(f"/api/v1/webhooks/{hook['id']}", json={"active": True},
              headers={"If-Match": '"v2"'}, role="integration")
    again = api.post(redeliver, role="integration")
    assert again.status_code == 201, again.get_json()
    body = again.get_json()
    assert body["event_id"] == first["event_id"] and body["redelivery_of"] == first["id"]
    assert body["status"] == "pending"
    missing = f"/api/v1/webhooks/{hook['id']}/deliveries/{hook['id']}/redeliver"
    assert_problem(api.post(missing, role="integration"), 404, "webhook_delivery_not_found")


def test_private_targets_can_be_allowed_for_local_receivers(api, app):
    settings = app.config["SETTINGS"]
    app.config["SETTINGS"] = dataclasses.replace(settings, webhook_allow_private_targets=True)
    try:
        assert subscribe(api, url="http://127.0.0.1:9/hook").status_code == 201
    finally:
        app.config["SETTINGS"] = settings


def test_history_purge_drops_old_finished_deliveries_only(api, clinic, app):
    from service.domain.calendar.history import purge_history
    from service.domain.calendar.models import DeliveryStatus, WebhookDelivery

    hook = subscribe(api).get_json()
    assert clinic.book("consultation", clinic.at(14)).status_code == 201
    assert clinic.book("consultation", clinic.at(16)).status_code == 201
    first, second = deliveries(api, hook)[:2]
    long_ago = datetime.now(UTC) - timedelta(days=45)
    with app.app_context():
        with unit_of_work() as uow:
            for delivery, status in ((first, DeliveryStatus.DELIVERED),
                                     (second, DeliveryStatus.PENDING)):
                uow.session.execute(update(WebhookDelivery).where(
                    WebhookDelivery.id == uuid.UUID(delivery["id"])).values(
                    status=status, updated_at=long_ago))
            uow.commit()
        purged = purge_history(unit_of_work(), now=datetime.now(UTC),
                               change_retention=timedelta(days=30))
    assert purged.deliveries == 1
    assert [d["id"] for d in deliveries(api, hook)] == [second["id"]]  # open ones stay
