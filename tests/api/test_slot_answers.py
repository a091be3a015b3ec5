"""Slot answers cached by request (availability/answers.py, issue 14): a repeated search is
answered with the bytes rendered for it last time after one query of versions, so every
change an answer depends on must reach the next search: the catalog (service types,
locations, providers), connected calendars turning stale or fresh, the clock. The rendered
bytes are the very bytes the schema gives."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, timedelta

import pytest
from flask import jsonify
from prometheus_client import REGISTRY
from sqlalchemy import event

from service.db import utcnow
from service.domain.access.actor import Actor, Role
from service.domain.availability import answers, cache
from service.domain.availability.search import find_open_slots
from service.domain.clinic.cancellation import CancellationTerms
from service.domain.connections.models import CalendarConnection
from service.extensions import unit_of_work
from service.rendering import render_in
from service.resources.slots.schemas import SlotListSchema
from tests.factories import NPIS
from tests.scenario import build_clinic


@pytest.fixture
def clinic(api):
    return build_clinic(api)


@pytest.fixture(autouse=True)
def _memory_store() -> Iterator[None]:
    cache.configure(None)
    yield
    cache.configure(None)


def hits() -> float:
    return REGISTRY.get_sample_value("slot_cache_requests_total", {"outcome": "hit"}) or 0.0


def query(clinic, service: str = "consultation", **params) -> dict:
    return {"service_type": clinic.services[service]["id"], "start": clinic.day.isoformat(),
            "end": (clinic.day + timedelta(days=1)).isoformat(), **params}


def get(api, params: dict) -> bytes:
    response = api.get("/api/v1/slots", query_string=params)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/json"
    return response.get_data()


def schema_answer(app, params: dict) -> bytes:
    """The answer as the schema and ``jsonify`` write it (what the route returned before
    it rendered its own bytes)."""
    zone = params.get("timezone")
    with app.test_request_context():
        render_in(zone)
        actor = Actor(role=Role.STAFF, key_id=uuid.uuid4())
        found = find_open_slots(
            unit_of_work(read_only=True), actor,
            service_type_id=uuid.UUID(params["service_type"]),
            start=date.fromisoformat(params["start"]), end=date.fromisoformat(params["end"]),
            now=utcnow(),
            default_zone=app.config["SETTINGS"].clinic_timezone, zone_name=zone,
            location_id=uuid.UUID(params["location_id"]) if "location_id" in params else None,
            limit=int(params.get("limit", 200)))
        terms = CancellationTerms.of(found.service_type)
        return jsonify(SlotListSchema().dump({
            "service_type_id": found.service_type.id, "timezone": found.timezone,
            "truncated": found.truncated, "cancellation_policy": terms,
            "stale_calendar_provider_ids": list(found.stale_sources),
            "slots": [{"start": s.start, "end": s.end, "provider_id": s.provider_id,
                       "location_id": s.location_id, "late_cancel_from": terms.late_from(s.start),
                       "patient_changes_until": terms.patient_changes_until(s.start)}
                      for s in found.slots]})).get_data()


@pytest.mark.parametrize("service, extra", [
    ("consultation", {}),
    ("consultation", {"timezone": "America/New_York"}),
    ("consultation", {"limit": 3}),
    ("iv-infusion", {}),
    ("iv-infusion", {"timezone": "Europe/Paris", "limit": 5}),
])
def test_the_rendered_answer_is_the_schema_answer_computed_or_cached(app, api, clinic, service,
                                                                      extra):
    params = query(clinic, service, **extra)
    expected = schema_answer(app, params)
    assert json.loads(expected)["slots"]
    before = hits()
    assert get(api, params) == expected  # computed
    assert get(api, params) == expected  # stored
    assert hits() >= before + 1


def test_the_location_zone_is_rendered_as_the_schema_renders_it(app, api, clinic):
    params = query(clinic, location_id=clinic.virtual["id"])
    assert get(api, params) == schema_answer(app, params) == get(api, params)


def test_a_hit_reads_one_statement(app, api, clinic):
    params = query(clinic)
    get(api, params)
    database = app.extensions["clinic.database"]
    engines = {id(e): e for e in (database.writer, database.reader)}.values()
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        before = hits()
        get(api, params)
        assert hits() == before + 1
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
    versions_read = [s for s in statements if "schedule_versions" in s]
    assert len(versions_read) == 1
    assert not [s for s in statements if "api_keys" not in s and "schedule_versions" not in s
                and s.strip().upper() not in ("BEGIN", "BEGIN IMMEDIATE")]


def _patch(api, path: str, changes: dict) -> None:
    etag = api.get(path).headers["ETag"]
    response = api.patch(path, json=changes, headers={"If-Match": etag})
    assert response.status_code == 200, response.get_json()


def test_catalog_changes_reach_a_repeated_search(app, api, clinic):
    params = query(clinic)
    first = json.loads(get(api, params))
    before = hits()
    assert json.loads(get(api, params)) == first and hits() == before + 1
    # The service type's terms.
    _patch(api, f"/api/v1/service-types/{clinic.services['consultation']['id']}",
           {"late_cancel_hours": 7})
    changed = json.loads(get(api, params))
    assert changed["cancellation_policy"]["late_cancel_hours"] == 7
    assert changed == json.loads(schema_answer(app, params))
    # A second provider joins the answer.
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    assert other["id"] in {s["provider_id"] for s in json.loads(get(api, params))["slots"]}
    # ...and leaves it when deactivated.
    _patch(api, f"/api/v1/providers/{other['id']}", {"active": False})
    assert other["id"] not in {s["provider_id"] for s in json.loads(get(api, params))["slots"]}
    # The location closes: nothing is offered there.
    _patch(api, f"/api/v1/locations/{clinic.virtual['id']}", {"active": False})
    assert json.loads(get(api, params))["slots"] == []
    assert get(api, params) == schema_answer(app, params)


def test_catalog_changes_reach_a_computed_search(app, api, clinic):
    """Every search computes (no stored answer): the catalog rows a computed search keeps
    under the catalog's version (search.py) are never used once it moved."""
    cache.use(cache.NullStore())
    params = query(clinic)
    first = get(api, params)
    assert get(api, params) == first == schema_answer(app, params)
    _patch(api, f"/api/v1/service-types/{clinic.services['consultation']['id']}",
           {"late_cancel_hours": 7, "duration_minutes": 45})
    changed = json.loads(get(api, params))
    assert changed["cancellation_policy"]["late_cancel_hours"] == 7
    assert changed == json.loads(schema_answer(app, params)) != json.loads(first)
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    assert other["id"] in {s["provider_id"] for s in json.loads(get(api, params))["slots"]}
    _patch(api, f"/api/v1/providers/{other['id']}", {"active": False})
    assert other["id"] not in {s["provider_id"] for s in json.loads(get(api, params))["slots"]}
    _patch(api, f"/api/v1/locations/{clinic.virtual['id']}", {"timezone": "Europe/Paris"})
    assert get(api, params) == schema_answer(app, params)
    _patch(api, f"/api/v1/locations/{clinic.virtual['id']}", {"active": False})
    assert json.loads(get(api, params))["slots"] == []


def test_a_calendar_turning_stale_or_fresh_reaches_a_repeated_search(app, api, clinic):
    params = query(clinic)
    doctor = clinic.doctor["id"]
    response = api.post(f"/api/v1/providers/{doctor}/calendar-connections",
                        json={"label": "Shifts", "kind": "push"})
    assert response.status_code == 201, response.get_json()
    connection_id = uuid.UUID(response.get_json()["id"])
    assert json.loads(get(api, params))["stale_calendar_provider_ids"] == [doctor]  # pending
    get(api, params)

    def change(**values) -> None:
        with app.app_context(), unit_of_work() as uow:
            record = uow.session.get(CalendarConnection, connection_id)
            for name, value in values.items():
                setattr(record, name, value)
            uow.commit()

    change(status="ok")  # synced: fresh
    assert json.loads(get(api, params))["stale_calendar_provider_ids"] == []
    get(api, params)
    change(stale_since=utcnow())  # flagged stale by the freshness job
    assert json.loads(get(api, params))["stale_calendar_provider_ids"] == [doctor]
    change(active=False)  # switched off: no longer a source
    assert json.loads(get(api, params))["stale_calendar_provider_ids"] == []
    for _ in range(2):
        assert get(api, params) == schema_answer(app, params)


def test_a_stored_answer_holds_only_while_the_clock_leaves_it_unchanged(app, clinic):
    """The bookable window moves with the clock (minimum notice: 2 hours here): the stored
    answer serves while no start leaves the window, then the search computes again."""
    service_type_id = uuid.UUID(clinic.services["consultation"]["id"])
    actor = Actor(role=Role.STAFF, key_id=uuid.uuid4())
    rendered: list[list[str]] = []

    def render(found) -> bytes:  # type: ignore[no-untyped-def]
        rendered.append([s.start.isoformat() for s in found.slots])
        return json.dumps(rendered[-1]).encode()

    def search(now) -> list[str]:  # type: ignore[no-untyped-def]
        with app.app_context():
            return json.loads(answers.answer_open_slots(
                unit_of_work(read_only=True), actor, render=render,
                service_type_id=service_type_id, start=clinic.day, end=clinic.day,
                now=now, default_zone="America/Phoenix"))

    def computed(now) -> list[str]:  # type: ignore[no-untyped-def]
        previous = cache.use(cache.NullStore())
        try:
            return search(now)
        finally:
            cache.use(previous)

    notice = timedelta(hours=2)
    first = search(clinic.at(11) - notice)  # earliest 11:00, hours from 13:00
    assert first[0] == clinic.at(13).astimezone(UTC).isoformat()
    count = len(rendered)
    assert search(clinic.at(12) - notice) == first  # earliest 12:00: nothing left
    assert search(clinic.at(13) - notice) == first  # earliest 13:00: still there
    assert len(rendered) == count  # both stored
    later = search(clinic.at(13, 10) - notice)  # 13:00 is gone
    assert later == computed(clinic.at(13, 10) - notice) == first[1:]
    assert search(clinic.at(13, 20) - notice) == later
