"""A repeated slot search made cheap (issue 14): the query string read once per process
(``resources/slots/arguments.py``), the stored entry's header decoded once, the versions read
in one statement with one text parameter, on PostgreSQL straight through the driver on a
pooled connection (``versions.read_pooled``). None of it may change an answer: a change still
bumps the versions and the next search computes; errors are the parser's own, every time; a
database failure during the read answers as from any other read (503)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from service import db
from service.domain.access import services as keys
from service.domain.availability import answers, cache, versions
from service.extensions import unit_of_work
from service.resources.slots import arguments
from service.resources.slots.routes import blp
from service.resources.slots.schemas import SlotQueryArgsSchema
from tests.scenario import build_clinic


@pytest.fixture
def clinic(api):
    return build_clinic(api)


@pytest.fixture(autouse=True)
def _memory_store() -> Iterator[None]:
    cache.configure(None)
    yield
    cache.configure(None)


def outcomes() -> tuple[float, float]:
    def value(outcome: str) -> float:
        return REGISTRY.get_sample_value("slot_cache_requests_total",
                                         {"outcome": outcome}) or 0.0
    return value("hit"), value("miss")


def query(clinic, **params) -> dict:
    return {"service_type": clinic.services["consultation"]["id"],
            "start": clinic.day.isoformat(),
            "end": (clinic.day + timedelta(days=1)).isoformat(), **params}


def body(api, params: dict) -> bytes:
    response = api.get("/api/v1/slots", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_data()


def computed(api, params: dict) -> bytes:
    """The answer computed afresh (no store at all)."""
    previous = cache.use(cache.NullStore())
    try:
        return body(api, params)
    finally:
        cache.use(previous)


def test_a_change_bumps_the_versions_and_the_next_search_computes(api, clinic):
    params = query(clinic)
    first = body(api, params)
    hits, misses = outcomes()
    assert body(api, params) == first == computed(api, params)  # stored, byte for byte
    assert outcomes()[0] == hits + 1
    response = clinic.book("consultation", clinic.at(14))
    assert response.status_code == 201, response.get_json()
    hits, misses = outcomes()
    after = body(api, params)  # the provider's version moved: computed, not the stored one
    assert outcomes() == (hits, misses + 1)
    assert after != first and after == computed(api, params)
    assert clinic.at(14).isoformat() not in {s["start"] for s in json.loads(after)["slots"]}
    hits, misses = outcomes()
    assert body(api, params) == after  # and stored again
    assert outcomes() == (hits + 1, misses)


def test_each_query_string_reads_to_its_own_arguments(api, clinic):
    three, five = query(clinic, limit=3), query(clinic, limit=5)
    for _ in range(2):
        assert len(json.loads(body(api, three))["slots"]) == 3
        assert len(json.loads(body(api, five))["slots"]) == 5
        zoned = json.loads(body(api, query(clinic, limit=3, timezone="America/New_York")))
        assert zoned["slots"][0]["start"].endswith("-05:00") or zoned["slots"][0][
            "start"].endswith("-04:00")


@pytest.mark.parametrize("params, status, code", [
    ({"limit": "0"}, 422, '"field": "limit"'),
    ({"limit": "x"}, 422, '"field": "limit"'),
    ({"start": "2026-13-01"}, 422, '"field": "start"'),
    ({"timezone": "Mars/Olympus"}, 422, '"field": "timezone"'),
])
def test_a_refused_query_string_is_refused_the_same_every_time(api, clinic, params, status,
                                                               code):
    answers_given = []
    for _ in range(3):
        response = api.get("/api/v1/slots", query_string=query(clinic, **params))
        assert response.status_code == status
        assert response.mimetype == "application/problem+json"
        answer = response.get_json()
        answer.pop("request_id", None)
        answers_given.append(answer)
    assert answers_given[0] == answers_given[1] == answers_given[2]
    assert code in json.dumps(answers_given[0])


def test_a_duplicate_parameter_is_refused_after_the_same_query_without_it(api, clinic):
    params = query(clinic)
    body(api, params)
    response = api.get("/api/v1/slots", query_string=[*params.items(), ("limit", "3"),
                                                      ("limit", "4")])
    assert response.status_code == 422
    assert "duplicate_parameter" in json.dumps(response.get_json())


def test_the_arguments_given_are_a_copy(app):
    parser = blp.ARGUMENTS_PARSER
    assert isinstance(parser, arguments.RepeatedQueryParser)
    some_id = "7f0c1e43-3c44-4c1b-9a59-2b2c7a0e8d11"
    url = (f"/api/v1/slots?service_type={some_id}&start=2030-01-01&end=2030-01-02"
           f"&provider_id={some_id}")
    with app.test_request_context(url):
        first = parser.parse(SlotQueryArgsSchema, location="query")
        first["provider_id"].append("changed")
        first["limit"] = 1
        second = parser.parse(SlotQueryArgsSchema, location="query")
    assert second["limit"] == 200 and second["provider_id"] == [uuid.UUID(some_id)]


def test_an_entry_header_decodes_the_same_from_memory(app, clinic, api):
    params = query(clinic)
    body(api, params)
    key = answers.request_key(
        service_type_id=uuid.UUID(params["service_type"]),
        start=clinic.day, end=clinic.day + timedelta(days=1),
        default_zone=app.config["SETTINGS"].clinic_timezone, zone_name=None,
        provider_ids=None, location_id=None, patient_state=None, limit=200)
    stored = cache.store().get(key)
    assert stored is not None
    answers._HEADERS.clear()
    fresh = answers.Entry.decode(stored)
    again = answers.Entry.decode(bytes(stored))  # equal bytes, another object
    assert fresh is not None and again == fresh
    assert answers.Entry.decode(b"SA1" + (3).to_bytes(4, "big") + b"{}x") is None


def test_the_versions_are_read_in_one_statement_whatever_their_number(app):
    scopes = [versions.provider_scope(uuid.uuid4()) for _ in range(60)]
    with app.app_context(), unit_of_work() as uow:
        versions.bump(uow.session, scopes[:2])
        uow.commit()
    with app.app_context(), unit_of_work(read_only=True) as uow:
        read = versions.read(uow.session, [versions.CATALOG, *scopes])
    assert read[scopes[0]] >= 1 and read[scopes[1]] >= 1
    assert all(read[s] == 0 for s in scopes[2:])
    assert set(read) == {versions.CATALOG, versions.ALL, *scopes}


def test_a_scope_name_holding_the_separator_is_refused(app):
    if app.extensions["clinic.database"].dialect != "postgresql":
        pytest.skip("the scopes travel as one text parameter on PostgreSQL only")
    with app.app_context(), unit_of_work(read_only=True) as uow, pytest.raises(ValueError):
        versions.read(uow.session, ["provider:a,b"])


# The versions read through the pool (``versions.read_pooled``) ----------------------------
#
# The suite's app looks every key up (api_key_cache_seconds=0), in the request's session, so
# its hits read the versions in that session's transaction. With the key cached, as the
# service runs, nothing else touches the database: the read goes through the pool.


@pytest.fixture
def keys_cached(app) -> Iterator[None]:
    settings = app.config["SETTINGS"]
    app.config["SETTINGS"] = dataclasses.replace(settings, api_key_cache_seconds=60.0)
    keys.forget_key()
    yield
    app.config["SETTINGS"] = settings
    keys.forget_key()


def postgresql_only(app) -> None:
    if app.extensions["clinic.database"].dialect != "postgresql":
        pytest.skip("SQLite reads in the session (versions.read)")


@pytest.fixture
def statements(app, monkeypatch) -> dict[str, list[str]]:
    """Every statement run, as SQLAlchemy's engines see them and as the driver runs them."""
    seen: dict[str, list[str]] = {"engines": [], "driver": []}
    database = app.extensions["clinic.database"]
    engines = list({id(e): e for e in (database.writer, database.reader)}.values())

    def on_engine(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        seen["engines"].append(statement)

    execute = psycopg.Cursor.execute

    def on_driver(cursor, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen["driver"].append(str(query))
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", on_driver)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", on_engine)
    yield seen
    for engine in engines:
        event.remove(engine, "before_cursor_execute", on_engine)


def test_a_hit_with_the_key_cached_reads_through_the_pool_and_never_goes_stale(
        app, api, clinic, keys_cached, statements):
    postgresql_only(app)
    params = query(clinic)
    first = body(api, params)
    assert body(api, params) == first  # the key is cached from here on
    statements["engines"].clear()
    statements["driver"].clear()
    hits, misses = outcomes()
    assert body(api, params) == first
    assert outcomes()[0] == hits + 1
    # The hit: one statement, by the driver, none through the request's session.
    assert len(statements["driver"]) == 1 and "schedule_versions" in statements["driver"][0]
    assert statements["engines"] == []
    assert first == computed(api, params)
    pool = app.extensions["clinic.database"].writer.pool
    assert pool.checkedout() == 0
    # A change: the read through the pool sees the bumped version, the search computes.
    response = clinic.book("consultation", clinic.at(14))
    assert response.status_code == 201, response.get_json()
    hits, misses = outcomes()
    after = body(api, params)
    assert outcomes() == (hits, misses + 1)
    assert after != first and after == computed(api, params)
    hits, misses = outcomes()
    assert body(api, params) == after and outcomes() == (hits + 1, misses)


def test_the_versions_read_through_the_pool_are_the_versions_read(app):
    scopes = [versions.provider_scope(uuid.uuid4()) for _ in range(5)]
    wanted = [versions.CATALOG, versions.chairs_scope(uuid.uuid4()), *scopes]
    with app.app_context(), unit_of_work() as uow:
        versions.bump(uow.session, [*scopes[:2], scopes[0] + "x"])
        uow.commit()
    with app.app_context(), unit_of_work() as uow:
        versions.bump(uow.session, scopes[:1])
        uow.commit()
    database = app.extensions["clinic.database"]
    with database.request_sessions() as fresh:  # no transaction: through the pool
        pooled = versions.read_pooled(fresh, wanted)
        assert fresh.in_transaction() is (database.dialect != "postgresql")  # SQLite: read
    with database.request_sessions() as session:
        read = versions.read(session, wanted)
        assert session.in_transaction()
        assert versions.read_pooled(session, wanted) == read  # in its transaction
    assert pooled == read
    assert read[scopes[0]] == 2 and read[scopes[1]] == 1 and read[scopes[2]] == 0
    assert set(read) == {*wanted, versions.ALL}


def test_the_pooled_connection_goes_back_out_of_autocommit(app, database_url):
    postgresql_only(app)
    engine = create_engine(db.normalize_url(database_url), pool_size=1, max_overflow=0)
    try:
        with Session(engine) as session:
            versions.read_pooled(session, [versions.CATALOG])
        with engine.connect() as connection:  # the same, only, connection
            assert connection.connection.driver_connection.autocommit is False
            connection.exec_driver_sql("SELECT 1")
            assert connection.in_transaction()
    finally:
        engine.dispose()


class _Lost(psycopg.OperationalError):
    """What the driver raises when the server is gone mid-statement."""


def test_a_failed_read_through_the_pool_answers_503_and_drops_its_connection(
        app, api, clinic, keys_cached, monkeypatch, caplog):
    postgresql_only(app)
    params = query(clinic)
    first = body(api, params)
    body(api, params)
    pool = app.extensions["clinic.database"].writer.pool

    def lost(connection, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise _Lost("server closed the connection unexpectedly")

    with monkeypatch.context() as patched:
        patched.setattr(psycopg.Connection, "execute", lost)
        response = api.get("/api/v1/slots", query_string=params)
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.get_json()["code"] == "database_unavailable"
        assert response.headers["Retry-After"]
        with app.app_context(), app.extensions["clinic.database"].request_sessions() as fresh, \
                pytest.raises(sa_exc.OperationalError) as raised:
            versions.read_pooled(fresh, [versions.CATALOG])
        assert isinstance(raised.value.orig, _Lost) and db.is_unavailable(raised.value)
    assert pool.checkedout() == 0
    assert "server closed" not in caplog.text  # the message (which may quote data) never
    assert body(api, params) == first  # and the next search is answered
