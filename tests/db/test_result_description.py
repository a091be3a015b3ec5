"""The service's PostgreSQL cursors describe a result only when asked (``DescribedLazily``):
what SQLAlchemy and a caller read of a description is what psycopg's own cursor gives."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import select, text

from service.db import DescribedLazily
from service.domain.audit.models import AuditEvent
from tests.conftest import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "postgresql", reason="psycopg's cursors")

QUERY = ("SELECT 1 AS one, 'two'::text AS two, now() AS three, "
         "gen_random_uuid() AS four, NULL::numeric(5, 2) AS five")


def _columns(description) -> list[tuple]:
    return [(c.name, c.type_code, c.display_size, c.internal_size, c.precision, c.scale,
             c.null_ok, c.type_display) for c in description]


def test_a_description_is_psycopgs_own(app):
    engine = app.extensions["clinic.database"].writer
    with engine.connect() as connection:
        dbapi = connection.connection.dbapi_connection
        cursor = dbapi.cursor()
        assert isinstance(cursor, DescribedLazily)
        plain = psycopg.Cursor(dbapi)
        cursor.execute(QUERY)
        plain.execute(QUERY)
        described = cursor.description
        cursor.execute("SELECT 1 AS other")  # the cursor moves on: the first stays as it was
        assert len(described) == 5
        assert _columns(described) == _columns(plain.description)
        assert described[-2:][0].name == "four" and described[0][1] == plain.description[0][1]
        assert [c.name for c in cursor.description] == ["other"]
        cursor.execute("CREATE TEMPORARY TABLE described_nothing (x int)")
        assert cursor.description is None
        cursor.execute("SELECT")  # no columns, but a result
        assert cursor.description is not None and len(cursor.description) == 0
        cursor.close()
        plain.close()


def test_sqlalchemy_results_read_as_before(app):
    engine = app.extensions["clinic.database"].writer
    with engine.connect() as connection:
        for _ in range(3):  # the first run describes; the next ones use the cached metadata
            row = connection.execute(text(QUERY)).one()
            assert (row.one, row.two, row._mapping["five"]) == (1, "two", None)
            assert list(connection.execute(text(QUERY)).keys()) == [
                "one", "two", "three", "four", "five"]
            found = connection.execute(
                select(AuditEvent.id, AuditEvent.request_id).where(AuditEvent.id == -1)).all()
            assert found == []
