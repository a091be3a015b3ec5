"""A read request's own connection (``service.transactions.request_connection``): the Core
statements taken on it directly and the request's session's reads run on one connection,
whichever comes first, as when every statement went through the session."""

from __future__ import annotations

from flask import g
from sqlalchemy import select, text

from service.domain.access.models import ApiKey
from service.transactions import (
    end_request_transaction,
    request_connection,
    request_session,
    request_unit_of_work,
)


def _checked_out(app) -> int:
    database = app.extensions["clinic.database"]  # the request sessions' engine
    engine = database.writer if database.request_autocommit else database.reader
    return engine.pool.checkedout()


def _driver_connection(connection):
    return connection.connection.dbapi_connection


def test_the_connection_first_then_the_sessions_reads_on_it(app):
    before = _checked_out(app)
    with app.test_request_context("/"):
        connection = request_connection()
        session = request_session()
        session.execute(select(ApiKey.id).limit(1)).all()  # an ORM read after it
        assert session.connection() is connection
        assert request_connection() is connection
        assert _checked_out(app) == before + 1
        end_request_transaction()
        assert connection.closed
    assert _checked_out(app) == before


def test_the_sessions_reads_first_then_the_connection_is_theirs(app):
    before = _checked_out(app)
    with app.test_request_context("/"):
        session = request_session()
        session.execute(select(ApiKey.id).limit(1)).all()  # the session's own connection
        own = session.connection()
        assert _driver_connection(request_connection()) is _driver_connection(own)
        assert _checked_out(app) == before + 1
        session.rollback()  # gives its connection back: the next one is kept for the request
        connection = request_connection()
        session.execute(select(ApiKey.id).limit(1)).all()
        assert session.connection() is connection
        assert _checked_out(app) == before + 1
        end_request_transaction()
    assert _checked_out(app) == before


def test_a_unit_of_work_in_the_request_runs_its_statements_on_that_connection(app):
    with app.test_request_context("/"):
        uow = request_unit_of_work()
        with uow:
            connection = uow.connection()
            assert connection is request_connection()
            assert connection.execute(text("SELECT 1")).scalar() == 1
            assert uow.session.connection() is connection
        end_request_transaction()


def test_the_request_unit_of_work_opens_its_session_only_when_asked(app):
    """``UnitOfWork.session`` of the request's unit of work is made on first use: a unit of
    work that only runs statements on the connection leaves no session behind; one that
    asks gets the request's, bound to that connection."""
    with app.test_request_context("/"):
        with request_unit_of_work() as uow:
            assert uow.connection().execute(text("SELECT 1")).scalar() == 1
        assert g.get("clinic.request_session") is None
        with request_unit_of_work() as uow:
            session = uow.session
            assert session is request_session()
            assert session.connection() is request_connection()
        end_request_transaction()
