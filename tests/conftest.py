"""Test fixtures: a real database (SQLite by default, PostgreSQL with TEST_DATABASE=postgresql),
its schema built by running the Alembic migrations, and an HTTP client with API keys.

PostgreSQL runs get a fresh database of their own, dropped at the end. When CI=true and
PostgreSQL cannot be reached, the run fails instead of skipping.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from service import migrate
from service.app import create_app
from service.domain.access import services as keys
from service.domain.access.actor import Role
from service.extensions import unit_of_work
from service.models import Base
from tests import contract
from tests.factories import Api

BACKEND = os.environ.get("TEST_DATABASE", "sqlite")
ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def pytest_report_header(config: pytest.Config) -> str:
    return f"database backend: {BACKEND}"


def _postgres_database() -> Iterator[str]:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"clinic_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        message = f"PostgreSQL is not reachable at {ADMIN_URL}: {type(exc).__name__}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.exit(message, returncode=3)
        pytest.skip(message)
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if BACKEND == "postgresql":
        yield from _postgres_database()
    elif BACKEND == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "clinic.sqlite3"
        yield f"sqlite:///{path}"
    else:
        raise pytest.UsageError(f"TEST_DATABASE must be sqlite or postgresql, not {BACKEND}")


@pytest.fixture(scope="session")
def app(database_url: str):
    migrate.upgrade(database_url)
    # Tests book days ahead (minimum notice) and check in at once: check-in opens a year
    # before the visit here; the clinic's window is tested in tests/api/test_watched_doses.py.
    # Rate limits off for the shared app (one client address for the whole suite); their
    # own tests (tests/api/test_rate_limits.py) build apps with them on.
    application = create_app({"DATABASE_URL": database_url, "TESTING": True,
                              "RATELIMIT_ENABLED": False})
    application.config["SETTINGS"] = dataclasses.replace(
        application.config["SETTINGS"], check_in_opens_minutes=366 * 24 * 60)
    # Tests change keys behind the service's back (an expiry rewritten in the database): every
    # request looks its key up; the per-worker key cache has its own tests (test_key_cache.py).
    application.config["SETTINGS"] = dataclasses.replace(
        application.config["SETTINGS"], api_key_cache_seconds=0)
    contract.install(application)
    yield application
    application.extensions["clinic.database"].dispose()


@pytest.fixture(autouse=True)
def _answers_keep_the_contract() -> Iterator[None]:
    """Every JSON answer a test got has the members its documented schema requires."""
    contract.MISSING.clear()
    yield
    assert not contract.MISSING, contract.MISSING[:5]


@pytest.fixture(autouse=True)
def _clean_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts from empty tables (the schema stays: migrations ran once)."""
    yield
    if "app" not in request.fixturenames:
        return
    application = request.getfixturevalue("app")
    engine = application.extensions["clinic.database"].writer
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # DELETE on small tables is far cheaper than TRUNCATE (which rewrites files);
            # the audit trail refuses DELETE by trigger, so it alone is truncated.
            connection.execute(text("TRUNCATE audit_events"))
            for table in tables:
                if table != "audit_events":
                    connection.execute(text(f"DELETE FROM {table}"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def api(app, client) -> Api:
    """An HTTP client holding one fresh key per role (provider/patient keys bound later)."""
    with app.app_context():
        tokens = {
            role: keys.issue_key(unit_of_work(), role=role, label=f"test {role}").key
            for role in (Role.ADMIN, Role.STAFF, Role.INTEGRATION)
        }
    return Api(app=app, client=client, tokens=tokens)
