"""A READ ONLY transaction ends with COMMIT (``BoundedConnection.rollback``), so a read
(a slot search, a list, the API key lookup) does not make psycopg forget the pooled
connection's prepared statements; every other transaction still rolls back.

A ROLLBACK makes psycopg clear its prepared statements (and send DEALLOCATE ALL): the next
requests on that connection would have their statements parsed and planned again.
"""

from __future__ import annotations

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.db import BoundedConnection
from tests.conftest import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "postgresql",
                                reason="psycopg's prepared statements: PostgreSQL only")

REPEATED = text("SELECT CAST(:n AS integer) + 1")


def _prepare(engine) -> None:
    """Run one statement often enough (psycopg's prepare_threshold) to have it prepared."""
    with engine.connect() as connection:
        for n in range(8):
            connection.execute(REPEATED, {"n": n})
        connection.commit()


def _prepared(engine) -> tuple[int, int]:
    """(statements psycopg holds as prepared, the server's own) on the pooled connection."""
    with engine.connect() as connection:
        driver = connection.connection.dbapi_connection
        assert isinstance(driver, BoundedConnection)
        held = len(driver._prepared._names)
        server = connection.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
        connection.commit()
        return held, server


@pytest.fixture
def engine(app):
    writer = app.extensions["clinic.database"].writer
    writer.dispose()  # one pooled connection used by the test alone, from the start
    yield writer
    writer.dispose()


def test_a_read_only_transaction_keeps_the_prepared_statements(engine):
    _prepare(engine)
    assert _prepared(engine) == (1, 1)
    with engine.execution_options(postgresql_readonly=True).connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
        assert connection.execute(text("SHOW transaction_read_only")).scalar() == "on"
    # closed without a commit (as a read's unit of work ends): the pool's rollback
    assert _prepared(engine) == (1, 1)


def test_a_writing_transaction_still_rolls_back_and_forgets_them(engine):
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS read_only_end (n integer)"))
        connection.execute(text("DELETE FROM read_only_end"))
    try:
        _prepare(engine)
        with engine.connect() as connection:
            connection.execute(text("INSERT INTO read_only_end VALUES (1)"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM read_only_end")).scalar() == 0
            connection.commit()
        assert _prepared(engine) == (0, 0)  # psycopg's own rule after a ROLLBACK
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE read_only_end"))


def test_a_failed_read_only_transaction_rolls_back(engine):
    with engine.execution_options(postgresql_readonly=True).connect() as connection:
        with pytest.raises(DBAPIError):
            connection.execute(text("SELECT 1/0"))
        driver = connection.connection.dbapi_connection
        assert driver.pgconn.transaction_status == TransactionStatus.INERROR
        connection.rollback()
        assert driver.pgconn.transaction_status == TransactionStatus.IDLE
        assert connection.execute(text("SELECT 2")).scalar() == 2


def test_a_read_only_transaction_cannot_have_written_what_its_commit_keeps(engine):
    with engine.execution_options(postgresql_readonly=True).connect() as connection:
        with pytest.raises(DBAPIError, match="read-only transaction"):
            connection.execute(text("CREATE TABLE read_only_end_never (n integer)"))
    with engine.connect() as connection:
        assert connection.execute(
            text("SELECT to_regclass('read_only_end_never')")).scalar() is None
