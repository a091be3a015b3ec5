"""A transaction the database rolled back to break a deadlock is run again, a bounded number
of times, by the unit of work itself (``uow.run``), for every write use case (the booking
race on PostgreSQL relies on it: see tests/db/test_booking_race.py; a real deadlock:
tests/db/test_messagebus.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from service.domain.errors import InvalidInput
from service.uow import RETRIES, Contention, UnitOfWork

DOMAIN = Path(__file__).resolve().parents[2] / "service" / "domain"

# Modules that commit on their own, outside a use case: the outbox runners claim, send and
# record in several short transactions of their own (a lost race there is a row claimed by
# the next run), and the Idempotency-Key store brackets a use case with its own steps.
COMMITS_OUTSIDE_RUN = {"outbox.py", "idempotency/services.py"}


@pytest.fixture
def uow():
    engine = create_engine("sqlite://")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE marks (attempt INTEGER)"))
    yield UnitOfWork(sessionmaker(engine, expire_on_commit=False), dialect="sqlite")
    engine.dispose()


def _marks(uow: UnitOfWork) -> list[int]:
    with uow:
        return list(uow.session.scalars(text("SELECT attempt FROM marks ORDER BY attempt")))


def test_a_use_case_that_lost_a_deadlock_runs_again_in_a_fresh_transaction(uow):
    sessions = []

    def work():
        sessions.append(uow.session)
        uow.session.execute(text("INSERT INTO marks VALUES (:n)"), {"n": len(sessions)})
        if len(sessions) < RETRIES:
            raise Contention("deadlock")
        return "done"

    assert uow.run(work) == "done"
    assert len(sessions) == RETRIES and len(set(map(id, sessions))) == RETRIES
    assert _marks(uow) == [RETRIES]  # the attempts that lost were rolled back


def test_contention_goes_out_after_the_last_attempt(uow):
    calls = []

    def work():
        calls.append(1)
        uow.session.execute(text("INSERT INTO marks VALUES (1)"))
        raise Contention("deadlock")

    with pytest.raises(Contention):
        uow.run(work)
    assert len(calls) == RETRIES
    assert _marks(uow) == []


def test_other_errors_are_not_retried(uow):
    calls = []

    def work():
        calls.append(1)
        raise InvalidInput("no")

    with pytest.raises(InvalidInput):
        uow.run(work)
    assert calls == [1]


def _commits(path: Path) -> list[int]:
    return [node.lineno for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "commit"]


def test_every_write_use_case_commits_through_uow_run():
    """No use case can forget the retry: the domain commits only inside ``uow.run``."""
    offenders = [f"{path.relative_to(DOMAIN)}:{line}"
                 for path in sorted(DOMAIN.rglob("*.py"))
                 if path.relative_to(DOMAIN).as_posix() not in COMMITS_OUTSIDE_RUN
                 for line in _commits(path)]
    assert offenders == [], ("commit inside uow.run(work) instead of calling commit(): "
                             f"{offenders}")
