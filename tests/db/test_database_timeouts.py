"""The database's own limits answer 503 database_unavailable fast, on the test database.

A busy SQLite (another writer holds the lock past the busy timeout), a PostgreSQL lock held
past lock_timeout, a statement past statement_timeout and an exhausted connection pool: each
is a request answered 503 with Retry-After within seconds, never a 500 or a hang; a
scheduler job logs an outage in one line. (A stopped or paused server:
tests/db/test_database_faults.py.)
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import OperationalError

from service.app import create_app
from service.db import describe_failure, is_unavailable
from service.extensions import unit_of_work
from service.scheduler import _guarded
from tests.conftest import BACKEND
from tests.factories import patient_payload, provider_payload

PROBLEM = "application/problem+json"


@pytest.fixture
def make_app(app, database_url, monkeypatch) -> Iterator:
    """Another app on the test database (the ``app`` fixture made its schema and cleans its
    tables), built with the given environment."""
    built = []

    def build(**env: str):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        application = create_app({"DATABASE_URL": database_url, "TESTING": True})
        built.append(application)
        return application

    yield build
    for application in built:
        application.extensions["clinic.database"].dispose()


def assert_unavailable(response, seconds: float, bound: float) -> None:
    assert response.status_code == 503, response.get_json()
    assert response.mimetype == PROBLEM
    assert response.get_json()["code"] == "database_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert seconds < bound, seconds


def timed(call):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


@pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's write lock")
def test_sqlite_database_is_locked_answers_503(make_app, api, database_url):
    application = make_app(SQLITE_BUSY_TIMEOUT_SECONDS="0.3")
    client = application.test_client()
    headers = {**api.headers("staff"), "Content-Type": "application/json"}
    holder = sqlite3.connect(make_url(database_url).database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        response, seconds = timed(lambda: client.post(
            "/api/v1/providers", json=provider_payload(), headers=headers))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_unavailable(response, seconds, bound=3)
    assert client.post("/api/v1/providers", json=provider_payload(),
                       headers=headers).status_code == 201


@pytest.mark.skipif(BACKEND != "postgresql", reason="PostgreSQL's lock_timeout")
def test_a_lock_held_past_lock_timeout_answers_503(make_app, api):
    application = make_app(DATABASE_LOCK_TIMEOUT_SECONDS="0.5")
    client = application.test_client()
    engine = application.extensions["clinic.database"].writer
    with engine.connect() as holder:
        holder.execute(text("LOCK TABLE providers IN ACCESS EXCLUSIVE MODE"))
        response, seconds = timed(lambda: client.get("/api/v1/providers",
                                                     headers=api.headers("staff")))
        holder.rollback()
    assert_unavailable(response, seconds, bound=5)
    assert client.get("/api/v1/providers", headers=api.headers("staff")).status_code == 200


@pytest.mark.skipif(BACKEND != "postgresql", reason="PostgreSQL's statement_timeout")
def test_a_statement_past_statement_timeout_is_a_database_outage(make_app):
    application = make_app(DATABASE_STATEMENT_TIMEOUT_SECONDS="0.5")
    started = time.monotonic()
    with application.app_context(), pytest.raises(OperationalError) as caught:
        with unit_of_work() as uow:
            uow.session.execute(text("SELECT pg_sleep(5)"))
    assert time.monotonic() - started < 3
    assert is_unavailable(caught.value)
    assert describe_failure(caught.value) == "QueryCanceled (57014)"


def test_an_exhausted_connection_pool_answers_503(make_app, api):
    application = make_app(DATABASE_POOL_TIMEOUT_SECONDS="0.5")
    client = application.test_client()
    reader = application.extensions["clinic.database"].reader  # the key check's engine
    held = [reader.connect() for _ in range(reader.pool.size() + reader.pool._max_overflow)]
    try:
        response, seconds = timed(lambda: client.get("/api/v1/providers",
                                                     headers=api.headers("staff")))
    finally:
        for connection in held:
            connection.close()
    assert_unavailable(response, seconds, bound=5)
    assert client.get("/api/v1/providers", headers=api.headers("staff")).status_code == 200


def test_a_bug_is_not_an_outage(app):
    """A broken statement stays a 500-class bug: only failures of the database count."""
    with app.app_context(), pytest.raises(Exception) as caught:
        with unit_of_work() as uow:
            uow.session.execute(text("SELECT * FROM no_such_table"))
    assert not is_unavailable(caught.value)


def test_an_audit_row_the_database_cannot_take_withholds_the_answer_as_503(make_app, api,
                                                                         database_url):
    """The read succeeds, its audit row cannot be written (another writer holds the lock):
    the patient data is withheld with 503 database_unavailable, not a 500."""
    patient = api.create("/api/v1/patients", patient_payload(first_name="Robin"))
    application = make_app(SQLITE_BUSY_TIMEOUT_SECONDS="0.3", DATABASE_LOCK_TIMEOUT_SECONDS="0.5")
    client = application.test_client()
    path = f"/api/v1/patients/{patient['id']}"
    if BACKEND == "sqlite":
        holder = sqlite3.connect(make_url(database_url).database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # reads still go through (WAL); writes wait
        try:
            response, seconds = timed(lambda: client.get(path, headers=api.headers("staff")))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    else:
        with application.extensions["clinic.database"].writer.connect() as holder:
            holder.execute(text("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE"))
            response, seconds = timed(lambda: client.get(path, headers=api.headers("staff")))
            holder.rollback()
    assert_unavailable(response, seconds, bound=5)
    assert "Robin" not in response.get_data(as_text=True)
    assert client.get(path, headers=api.headers("staff")).status_code == 200


def test_a_scheduler_job_logs_an_outage_in_one_line(caplog):
    def job():
        raise OperationalError("SELECT ...", {}, psycopg.OperationalError("refused"))

    caplog.set_level(logging.INFO, logger="service.scheduler")
    _guarded("reminders", job)()
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "job reminders: database unavailable: OperationalError"
