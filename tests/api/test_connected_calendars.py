"""Connected calendars against real servers: an iCalendar feed served over HTTP by a local
server (conditional GET), a CalDAV server (Radicale, started here on a free port) read and
written back to, and the push API. Busy time blocks slots and the booking re-checks it;
freshness is shown and stale sources are named in slot answers; addresses and credentials
never come back out, nor reach the log."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import caldav
import jsonschema
import pytest
from cryptography.fernet import Fernet
from flask import Flask, Response, request
from sqlalchemy import inspect, select, update

from service.db import utcnow
from service.domain.access.actor import Role
from service.domain.calendar.models import WebhookDelivery, WebhookEvent
from service.domain.connections.models import CalendarConnection, ExternalBusy
from service.domain.oncall.models import AlertNotice
from service.domain.webhooks.catalogue import schema as webhook_schema
from service.extensions import unit_of_work
from service.scheduler import calendar_sync, calendar_write_runner
from tests.api.test_directory import assert_problem
from tests.domain.test_busy_feeds import MOVED, WEEKLY, calendar, denver
from tests.factories import NPIS
from tests.http_server import serving
from tests.scenario import Clinic, build_clinic

DENVER = ZoneInfo("America/Denver")


# Servers ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Feed:
    """An iCalendar address served with ETag and Last-Modified (304 when unchanged)."""

    url: str = ""
    document: bytes = b""
    version: int = 0
    answers: list[int] = dataclasses.field(default_factory=list)

    def publish(self, document: bytes) -> None:
        self.document, self.version = document, self.version + 1


@pytest.fixture
def feed() -> Iterator[Feed]:
    served = Feed()
    app = Flask("feed")

    @app.get("/private-0c1d2e3f/basic.ics")
    def calendar_file() -> Response:
        response = Response(served.document, mimetype="text/calendar")
        response.set_etag(f"v{served.version}")
        response.last_modified = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
            hours=served.version)
        response.make_conditional(request)
        served.answers.append(response.status_code)
        return response

    with serving(app, "ics-feed") as base:
        served.url = f"{base}/private-0c1d2e3f/basic.ics"
        yield served


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real CalDAV server (Radicale from PyPI) on a free loopback port."""
    port = _free_port()
    folder = tmp_path_factory.mktemp("radicale")
    process = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--server-hosts", f"127.0.0.1:{port}",
         "--storage-filesystem-folder", str(folder / "collections"), "--auth-type", "none",
         "--logging-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("Radicale did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=10)


def caldav_calendar(base: str, user: str = "ada") -> caldav.Calendar:
    client = caldav.DAVClient(url=base, username=user, password="app-password-1",
                              enable_rfc6764=False)
    return client.principal().make_calendar(name="Work", cal_id=uuid.uuid4().hex)


# The service's side ---------------------------------------------------------------------------


@pytest.fixture
def settings(app):
    """A secret key, and local servers allowed as calendar addresses."""
    before = app.config["SETTINGS"]
    app.config["SETTINGS"] = dataclasses.replace(
        before, calendar_secret_key=Fernet.generate_key().decode(),
        calendar_allow_private_targets=True, calendar_timeout_seconds=5.0)
    yield app.config["SETTINGS"]
    app.config["SETTINGS"] = before


@pytest.fixture
def clinic(api) -> Clinic:
    return build_clinic(api)


def sync(app, settings, now: datetime | None = None):
    return calendar_sync(app.extensions["clinic.database"], settings).run_once(now)


def write_back(app, settings):
    return calendar_write_runner(app.extensions["clinic.database"], settings).run_once()


def connect(api, provider: dict[str, Any], role: str = "staff", **body: Any) -> dict[str, Any]:
    response = api.post(f"/api/v1/providers/{provider['id']}/calendar-connections",
                        json={"label": "Hospital shifts", **body}, role=role)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def path(provider: dict[str, Any], connection: dict[str, Any], tail: str = "") -> str:
    return f"/api/v1/providers/{provider['id']}/calendar-connections/{connection['id']}{tail}"


def sync_soon(api, provider, connection) -> None:
    response = api.post(path(provider, connection, "/sync"))
    assert response.status_code == 202, response.get_json()


def answer(clinic: Clinic) -> dict[str, Any]:
    response = clinic.api.get("/api/v1/slots", query_string={
        "service_type": clinic.services["consultation"]["id"],
        "start": clinic.day.isoformat(), "end": clinic.day.isoformat()})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def offered(clinic: Clinic) -> set[datetime]:
    return {datetime.fromisoformat(s["start"]) for s in answer(clinic)["slots"]}


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def meeting(uid: str, start: datetime, end: datetime, *extra: str) -> str:
    return ("BEGIN:VEVENT\n" + "\n".join([
        f"UID:{uid}", f"DTSTART:{utc(start)}", f"DTEND:{utc(end)}",
        "SUMMARY:Oncology board", "ATTENDEE:mailto:someone@hospital.example", *extra])
        + "\nEND:VEVENT\n")


# iCalendar addresses ---------------------------------------------------------------------------


def test_a_feed_blocks_slots_the_booking_rechecks_and_a_deleted_event_frees_them(
        app, api, clinic, settings, feed):
    doctor = clinic.doctor
    board = meeting("board@hospital", clinic.at(14), clinic.at(15))
    free = meeting("lunch@home", clinic.at(16), clinic.at(17), "TRANSP:TRANSPARENT")
    feed.publish(calendar(board, free))
    assert clinic.at(14) in offered(clinic)

    connection = connect(api, doctor, kind="ics", url=feed.url)
    assert "url" not in connection and connection["has_secret"] is True
    assert connection["status"] == "pending"
    # Not synced yet: the answer says it was computed without that source.
    assert answer(clinic)["stale_calendar_provider_ids"] == [doctor["id"]]

    assert sync(app, settings)["synced"] == 1
    slots = offered(clinic)
    assert clinic.at(14) not in slots and clinic.at(13, 30) not in slots  # overlaps 14:00
    assert clinic.at(15) in slots and clinic.at(16) in slots  # transparent: free
    assert answer(clinic)["stale_calendar_provider_ids"] == []
    # The booking re-checks the same schedule.
    assert_problem(clinic.book("consultation", clinic.at(14)), 409, "slot_unavailable")
    shown = api.get(path(doctor, connection)).get_json()
    assert (shown["status"], shown["busy_count"], shown["last_error"]) == ("ok", 1, None)
    assert shown["last_synced_at"] is not None

    # Unchanged: a conditional GET answered 304, the intervals kept.
    sync_soon(api, doctor, connection)
    assert sync(app, settings)["not_modified"] == 1
    assert feed.answers == [200, 304]
    assert clinic.at(14) not in offered(clinic)

    # The meeting is deleted: the next sync frees its slot.
    feed.publish(calendar(free))
    sync_soon(api, doctor, connection)
    assert sync(app, settings)["synced"] == 1
    assert clinic.at(14) in offered(clinic)
    assert clinic.book("consultation", clinic.at(14)).status_code == 201


def test_a_weekly_denver_meeting_over_http_keeps_its_time_across_the_november_change(
        app, api, clinic, settings, feed):
    feed.publish(calendar(WEEKLY, MOVED))
    connection = connect(api, clinic.doctor, kind="ics", url=feed.url)
    fixed = datetime(2026, 10, 15, tzinfo=UTC)  # the sync window covers October-November
    with app.app_context(), unit_of_work() as uow:
        uow.session.execute(update(CalendarConnection).values(next_sync_at=fixed))
        uow.commit()
    assert sync(app, settings, now=fixed)["synced"] == 1
    with app.app_context(), unit_of_work(read_only=True) as uow:
        rows = uow.session.execute(select(ExternalBusy.starts_at, ExternalBusy.ends_at).where(
            ExternalBusy.connection_id == uuid.UUID(connection["id"]))
            .order_by(ExternalBusy.starts_at)).all()
    assert [(s, e) for s, e in rows] == [
        (denver(20, 10, 10), denver(20, 10, 11)),  # 16:00 UTC (MDT)
        (denver(3, 11, 14), denver(3, 11, 15)),  # the overridden occurrence
        (denver(10, 11, 10), denver(10, 11, 11)),  # 17:00 UTC (MST): 27 Oct excluded
        (denver(17, 11, 10), denver(17, 11, 11)),
    ]
    # Only intervals are stored: no title, attendee or description column exists.
    columns = {c.key for c in inspect(ExternalBusy).columns}
    assert columns == {"id", "connection_id", "provider_id", "starts_at", "ends_at"}


def test_a_weekly_meeting_blocks_its_denver_wall_clock_time_on_the_test_day(
        app, api, clinic, settings, feed):
    """Denver keeps summer time and Phoenix does not: 14:00 in Denver is 13:00 or 14:00
    in Phoenix depending on the date; the blocked slot follows."""
    first = datetime.combine(clinic.day - timedelta(days=35), datetime.min.time())
    start = first.replace(hour=14, tzinfo=DENVER)
    weekly = ("BEGIN:VEVENT\nUID:weekly@hospital\n"
              f"DTSTART;TZID=America/Denver:{start:%Y%m%dT%H%M%S}\n"
              f"DTEND;TZID=America/Denver:{start + timedelta(hours=1):%Y%m%dT%H%M%S}\n"
              "RRULE:FREQ=WEEKLY\nEND:VEVENT\n")
    feed.publish(calendar(weekly))
    connect(api, clinic.doctor, kind="ics", url=feed.url)
    assert sync(app, settings)["synced"] == 1
    local = datetime.combine(clinic.day, datetime.min.time()).replace(hour=14, tzinfo=DENVER)
    blocked = local.astimezone(clinic.at(0).tzinfo)
    slots = offered(clinic)
    assert blocked not in slots and blocked - timedelta(minutes=30) not in slots
    assert blocked + timedelta(hours=1) in slots


def test_addresses_and_credentials_are_write_only_encrypted_and_never_logged(
        app, api, clinic, settings, feed, caplog):
    doctor = clinic.doctor
    secret_url = feed.url.replace("private-0c1d2e3f", "private-5ecre7")  # answers 404
    response = api.post(f"/api/v1/providers/{doctor['id']}/calendar-connections",
                        json={"label": "Personal", "kind": "ics", "url": secret_url})
    assert response.status_code == 201 and "5ecre7" not in response.get_data(as_text=True)
    connection = response.get_json()
    listed = api.get(f"/api/v1/providers/{doctor['id']}/calendar-connections")
    assert "5ecre7" not in listed.get_data(as_text=True)
    with app.app_context(), unit_of_work(read_only=True) as uow:
        stored = uow.session.get(CalendarConnection, uuid.UUID(connection["id"]))
        assert stored.secret and "5ecre7" not in stored.secret
    with caplog.at_level(logging.DEBUG):
        assert sync(app, settings)["failed"] == 1
    assert "5ecre7" not in caplog.text and connection["id"] in caplog.text
    shown = api.get(path(doctor, connection)).get_json()
    assert (shown["status"], shown["last_error"]) == ("error", "http_404")

    # A new address replaces the old one (If-Match), and is read at once.
    changed = api.patch(path(doctor, connection), json={"url": feed.url},
                        headers={"If-Match": f'"v{shown["version"]}"'})
    assert changed.status_code == 200, changed.get_json()
    feed.publish(calendar(meeting("x@y", clinic.at(13), clinic.at(14))))
    assert sync(app, settings)["synced"] == 1

    # Internal addresses are refused unless allowed; without a key nothing is stored.
    app.config["SETTINGS"] = dataclasses.replace(settings, calendar_allow_private_targets=False)
    assert_problem(api.post(f"/api/v1/providers/{doctor['id']}/calendar-connections",
                            json={"label": "x", "kind": "ics", "url": feed.url}),
                   422, "calendar_url_not_allowed")
    app.config["SETTINGS"] = dataclasses.replace(settings, calendar_secret_key=None)
    assert_problem(api.post(f"/api/v1/providers/{doctor['id']}/calendar-connections",
                            json={"label": "x", "kind": "ics", "url": feed.url}),
                   409, "calendar_secrets_unavailable")
    assert connect(api, doctor, kind="push")["has_secret"] is False  # push needs no key


# CalDAV ----------------------------------------------------------------------------------------


def test_caldav_busy_time_blocks_and_visits_are_written_back_once(
        app, api, clinic, settings, radicale):
    doctor = clinic.doctor
    remote = caldav_calendar(radicale)
    remote.add_event(ical=calendar(meeting("shift@hospital", clinic.at(14), clinic.at(15)))
                     .decode())
    earlier = clinic.book("consultation", clinic.at(13))  # before the calendar was connected
    assert earlier.status_code == 201, earlier.get_json()
    connection = connect(api, doctor, kind="caldav", url=str(remote.url), username="ada",
                         password="app-password-1", write_back=True)
    assert not {"username", "password", "url"} & set(connection)
    assert sync(app, settings)["synced"] == 1
    assert clinic.at(14) not in offered(clinic)
    assert write_back(app, settings).written == 1  # the visit booked before
    assert "SUMMARY:Video visit (60 min)" in remote.event_by_uid(earlier.get_json()["id"]).data

    booked = clinic.book("consultation", clinic.at(16))
    assert booked.status_code == 201, booked.get_json()
    booking = booked.get_json()
    assert write_back(app, settings).written == 1
    copy = remote.event_by_uid(booking["id"]).data
    assert "SUMMARY:Video visit (60 min)" in copy and f"DTSTART:{utc(clinic.at(16))}" in copy
    assert clinic.patient["first_name"] not in copy and "STATUS:CONFIRMED" in copy
    assert not write_back(app, settings).counts  # nothing due: never written twice

    # Our own visit, read back, is not outside busy time.
    sync_soon(api, doctor, connection)
    assert sync(app, settings)["synced"] == 1
    assert api.get(path(doctor, connection)).get_json()["busy_count"] == 1  # the shift only

    moved = api.post(f"/api/v1/bookings/{booking['id']}/reschedule",
                     json={"start": clinic.at(15).isoformat()},
                     headers={"If-Match": booked.headers["ETag"]})
    assert moved.status_code == 200, moved.get_json()
    assert write_back(app, settings).written == 1
    copy = remote.event_by_uid(booking["id"]).data
    assert f"DTSTART:{utc(clinic.at(15))}" in copy
    assert len(remote.events()) == 3  # the shift, the earlier visit, one copy of this one

    cancelled = api.post(f"/api/v1/bookings/{booking['id']}/cancel",
                         json={"reason": "Patient asked"})
    assert cancelled.status_code == 200, cancelled.get_json()
    assert write_back(app, settings).written == 1
    assert "STATUS:CANCELLED" in remote.event_by_uid(booking["id"]).data
    assert len(remote.events()) == 3

    # The shift is deleted on the server: the next sync frees its time.
    remote.event_by_uid("shift@hospital").delete()
    sync_soon(api, doctor, connection)
    assert sync(app, settings)["synced"] == 1
    assert clinic.at(14) in offered(clinic)
    assert api.get(path(doctor, connection)).get_json()["busy_count"] == 0


def test_a_caldav_calendar_that_cannot_be_read_is_an_error_the_connection_shows(
        app, api, clinic, settings, radicale):
    remote = caldav_calendar(radicale, user="bea")
    connection = connect(api, clinic.doctor, kind="caldav", url=str(remote.url) + "missing/",
                         username="bea", password="app-password-2")
    assert sync(app, settings)["failed"] == 1
    shown = api.get(path(clinic.doctor, connection)).get_json()
    assert shown["status"] == "error" and shown["last_error"].startswith(("http_", "caldav_"))
    assert shown["last_synced_at"] is None


# Push ------------------------------------------------------------------------------------------


def test_a_push_source_replaces_its_window_and_the_same_push_twice_changes_nothing(
        app, api, clinic, settings):
    doctor = clinic.doctor
    connection = connect(api, doctor, kind="push", label="EHR shifts")
    window = {"start": clinic.at(0).isoformat(), "end": (clinic.at(0) + timedelta(days=1))
              .isoformat()}
    body = {**window, "intervals": [
        {"start": clinic.at(13).isoformat(), "end": clinic.at(13, 30).isoformat()},
        {"start": clinic.at(13, 30).isoformat(), "end": clinic.at(14).isoformat()}]}
    first = api.put(path(doctor, connection, "/busy"), json=body, role="integration")
    assert first.status_code == 200, first.get_json()
    assert (first.get_json()["stored"], first.get_json()["connection"]["status"]) == (1, "ok")
    assert clinic.at(13) not in offered(clinic) and clinic.at(14) in offered(clinic)
    again = api.put(path(doctor, connection, "/busy"), json=body, role="integration")
    assert (again.get_json()["removed"], again.get_json()["stored"]) == (1, 1)
    assert again.get_json()["connection"]["busy_count"] == 1

    cleared = api.put(path(doctor, connection, "/busy"), json={**window, "intervals": []},
                      role="integration")
    assert cleared.get_json()["connection"]["busy_count"] == 0
    assert clinic.at(13) in offered(clinic)

    outside = {**window, "intervals": [{"start": clinic.at(13, day=clinic.day + timedelta(
        days=3)).isoformat(), "end": clinic.at(14, day=clinic.day + timedelta(days=3))
        .isoformat()}]}
    assert_problem(api.put(path(doctor, connection, "/busy"), json=outside,
                           role="integration"), 422, "busy_outside_window")
    other = clinic.add_provider("Dr. Bea Lin", NPIS[1])
    api.bind("other-doctor", Role.PROVIDER, provider_id=other["id"])
    assert_problem(api.put(path(doctor, connection, "/busy"), json=body,
                           role="other-doctor"), 404, "provider_not_found")


# Freshness -------------------------------------------------------------------------------------


def test_a_stale_source_is_flagged_for_staff_and_named_in_slot_answers(
        app, api, clinic, settings, caplog):
    doctor = clinic.doctor
    connection = connect(api, doctor, kind="push", interval_minutes=5)
    body = {"start": clinic.at(0).isoformat(),
            "end": (clinic.at(0) + timedelta(days=1)).isoformat(), "intervals": []}
    assert api.put(path(doctor, connection, "/busy"), json=body).status_code == 200
    assert answer(clinic)["stale_calendar_provider_ids"] == []

    with caplog.at_level(logging.WARNING):  # 3 x 5 minutes without a push
        assert sync(app, settings, now=utcnow() + timedelta(minutes=16))["stale"] == 1
    assert "is stale" in caplog.text
    shown = api.get(path(doctor, connection)).get_json()
    assert shown["stale"] is True and shown["stale_since"] is not None
    assert answer(clinic)["stale_calendar_provider_ids"] == [doctor["id"]]
    alert = api.get("/api/v1/calendar-connections", query_string={"stale": "true"})
    assert [c["id"] for c in alert.get_json()] == [connection["id"]]
    assert api.get("/api/v1/calendar-connections", role="integration").status_code == 403

    assert api.put(path(doctor, connection, "/busy"), json=body).status_code == 200
    assert api.get(path(doctor, connection)).get_json()["stale"] is False
    assert answer(clinic)["stale_calendar_provider_ids"] == []


def test_disconnecting_frees_the_time_at_once(app, api, clinic, settings):
    doctor = clinic.doctor
    connection = connect(api, doctor, kind="push")
    body = {"start": clinic.at(0).isoformat(),
            "end": (clinic.at(0) + timedelta(days=1)).isoformat(),
            "intervals": [{"start": clinic.at(15).isoformat(),
                           "end": clinic.at(16).isoformat()}]}
    assert api.put(path(doctor, connection, "/busy"), json=body).status_code == 200
    assert clinic.at(15) not in offered(clinic)
    assert api.request("DELETE", path(doctor, connection)).status_code == 204
    assert clinic.at(15) in offered(clinic)
    assert_problem(api.get(path(doctor, connection)), 404, "calendar_connection_not_found")


# The staff alert of a stale source, and retry backoff --------------------------------------------


def calendar_alerts(api, role: str = "staff", **query: Any) -> list[dict[str, Any]]:
    response = api.get("/api/v1/alerts", role=role, query_string=query)
    assert response.status_code == 200, response.get_json()
    return [a for a in response.get_json() if a["kind"] == "calendar_stale"]


def test_a_stale_source_raises_one_alert_for_staff_and_its_provider_resolved_by_a_sync(
        app, api, clinic, settings):
    doctor, other = clinic.doctor, clinic.add_provider("Dr. Bea Lin", NPIS[1])
    api.bind("doctor", Role.PROVIDER, provider_id=doctor["id"])
    api.bind("other-doctor", Role.PROVIDER, provider_id=other["id"])
    before = app.config["SETTINGS"]
    app.config["SETTINGS"] = dataclasses.replace(before, webhook_allow_private_targets=True)
    try:
        hook = api.post("/api/v1/webhooks", role="integration", json={
            "url": "http://127.0.0.1:9/hooks", "events": ["alert.raised"]})
    finally:
        app.config["SETTINGS"] = before
    assert hook.status_code == 201, hook.get_json()
    connection = connect(api, doctor, kind="push", interval_minutes=5)
    body = {"start": clinic.at(0).isoformat(),
            "end": (clinic.at(0) + timedelta(days=1)).isoformat(), "intervals": []}
    assert api.put(path(doctor, connection, "/busy"), json=body).status_code == 200
    assert calendar_alerts(api) == []

    later = utcnow() + timedelta(minutes=16)  # 3 x 5 minutes without a push
    assert sync(app, settings, now=later)["stale"] == 1
    [alert] = calendar_alerts(api)
    assert (alert["patient_id"], alert["provider_id"], alert["connection_id"]) == (
        None, doctor["id"], connection["id"])
    assert (alert["urgent"], alert["resolved_at"], alert["acknowledged_at"]) == (
        False, None, None)
    # Its provider sees it, another provider does not; nobody on the rota is paged.
    assert [a["id"] for a in calendar_alerts(api, role="doctor")] == [alert["id"]]
    assert calendar_alerts(api, role="other-doctor") == []
    assert_problem(api.post(f"/api/v1/alerts/{alert['id']}/acknowledge",
                            role="other-doctor"), 404, "alert_not_found")
    with app.app_context(), unit_of_work(read_only=True) as uow:
        assert uow.session.scalars(select(AlertNotice)).all() == []
        [delivery] = uow.session.scalars(select(WebhookDelivery)).all()
    sent = json.loads(delivery.payload)
    jsonschema.validate(sent, webhook_schema(WebhookEvent.ALERT_RAISED))
    assert (sent["data"]["alert_id"], sent["data"]["urgent"]) == (alert["id"], False)
    assert doctor["id"] not in delivery.payload

    # Still stale at the next runs, even with the flag cleared behind the scheduler's back:
    # the same episode, the same open alert.
    assert sync(app, settings, now=later + timedelta(minutes=5))["stale"] == 0
    with app.app_context(), unit_of_work() as uow:
        uow.session.execute(update(CalendarConnection).values(stale_since=None))
        uow.commit()
    assert sync(app, settings, now=later + timedelta(minutes=6))["stale"] == 1
    assert [a["id"] for a in calendar_alerts(api)] == [alert["id"]]

    # A push: fresh again, the alert resolved (listed only with the closed ones).
    assert api.put(path(doctor, connection, "/busy"), json=body).status_code == 200
    assert calendar_alerts(api) == [] and calendar_alerts(api, role="doctor") == []
    [closed] = calendar_alerts(api, include_acknowledged="true")
    assert closed["id"] == alert["id"] and closed["resolved_at"] is not None
    # The next stale episode is a new alert; acknowledging it reads through the audit trail.
    assert sync(app, settings, now=utcnow() + timedelta(minutes=16))["stale"] == 1
    [second] = calendar_alerts(api)
    assert second["id"] != alert["id"]
    acknowledged = api.post(f"/api/v1/alerts/{second['id']}/acknowledge", role="doctor")
    assert acknowledged.status_code == 200, acknowledged.get_json()
    assert calendar_alerts(api) == []


def test_disconnecting_or_switching_off_a_stale_source_resolves_its_alert(
        app, api, clinic, settings):
    doctor = clinic.doctor
    kept = connect(api, doctor, kind="push", interval_minutes=5, label="Kept")
    removed = connect(api, doctor, kind="push", interval_minutes=5, label="Removed")
    assert sync(app, settings, now=utcnow() + timedelta(minutes=16))["stale"] == 2
    assert len(calendar_alerts(api)) == 2
    shown = api.get(path(doctor, kept)).get_json()
    off = api.patch(path(doctor, kept), json={"active": False},
                    headers={"If-Match": f'"v{shown["version"]}"'})
    assert off.status_code == 200, off.get_json()
    assert [a["connection_id"] for a in calendar_alerts(api)] == [removed["id"]]
    assert api.request("DELETE", path(doctor, removed)).status_code == 204
    assert calendar_alerts(api) == []
    assert {a["connection_id"] for a in calendar_alerts(api, include_acknowledged="true")} == {
        kept["id"], removed["id"]}


def test_a_failing_source_is_retried_later_and_later_until_it_syncs(
        app, api, clinic, settings, feed):
    doctor = clinic.doctor
    feed.publish(calendar())
    connection = connect(api, doctor, kind="ics", url=feed.url + "-gone",
                         interval_minutes=10)

    def next_sync() -> datetime:
        return datetime.fromisoformat(api.get(path(doctor, connection)).get_json()
                                      ["next_sync_at"])

    at = (utcnow() + timedelta(seconds=1)).replace(microsecond=0)
    waits = []
    for _ in range(4):
        assert sync(app, settings, now=at)["failed"] == 1
        waits.append(next_sync() - at)
        at = next_sync()
    assert waits == [timedelta(minutes=m) for m in (10, 20, 40, 40)]

    shown = api.get(path(doctor, connection)).get_json()
    fixed = api.patch(path(doctor, connection), json={"url": feed.url},
                      headers={"If-Match": f'"v{shown["version"]}"'})
    assert fixed.status_code == 200, fixed.get_json()
    assert sync(app, settings, now=at)["synced"] == 1
    assert next_sync() - at == timedelta(minutes=10)
    # A success starts over: the next failure waits one interval again.
    shown = api.get(path(doctor, connection)).get_json()
    broken = api.patch(path(doctor, connection), json={"url": feed.url + "-gone"},
                       headers={"If-Match": f'"v{shown["version"]}"'})
    assert broken.status_code == 200, broken.get_json()
    at += timedelta(minutes=10)
    assert sync(app, settings, now=at)["failed"] == 1
    assert next_sync() - at == timedelta(minutes=10)
