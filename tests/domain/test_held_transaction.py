"""A held unit of work (``UnitOfWork(hold=True)`` on a shared session): its commit only
flushes, the request commits the whole transaction later (with an Idempotency-Key's answer,
``service/resources/idempotency.py``). Each held unit of work keeps or gives up exactly what
its own commit would have: a later one that fails leaves the earlier ones' changes."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from service.domain.errors import InvalidInput
from service.uow import RETRIES, Contention, UnitOfWork


@pytest.fixture
def sessions(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'held.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE marks (n INTEGER)"))
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def _marks(sessions) -> list[int]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return list(session.scalars(text("SELECT n FROM marks ORDER BY n")))


def _mark(uow: UnitOfWork, n: int) -> None:
    uow.session.execute(text("INSERT INTO marks VALUES (:n)"), {"n": n})


def test_held_units_of_work_commit_with_the_request_and_fail_alone(sessions):
    held = sessions()
    try:
        uow = UnitOfWork(None, shared=held, hold=True)
        uow.run(lambda: _mark(uow, 1))
        assert _marks(sessions) == []  # held: not committed yet

        def fails() -> None:
            _mark(uow, 2)
            raise InvalidInput("no")

        with pytest.raises(InvalidInput):
            uow.run(fails)
        with uow:  # never committed: nothing of it is kept
            _mark(uow, 3)
        uow.run(lambda: _mark(uow, 4))
        assert _marks(sessions) == []
        held.commit()
    finally:
        held.close()
    assert _marks(sessions) == [1, 4]


def test_a_held_unit_of_work_that_lost_a_deadlock_runs_again(sessions):
    held = sessions()
    attempts = []
    try:
        uow = UnitOfWork(None, shared=held, hold=True)
        uow.run(lambda: _mark(uow, 1))

        def work() -> None:
            attempts.append(1)
            _mark(uow, 10 + len(attempts))
            if len(attempts) < RETRIES:
                raise Contention("deadlock")

        uow.run(work)
        held.commit()
    finally:
        held.close()
    assert _marks(sessions) == [1, 10 + RETRIES]


def test_a_first_held_unit_of_work_that_fails_leaves_nothing(sessions):
    held = sessions()
    try:
        uow = UnitOfWork(None, shared=held, hold=True)

        def fails() -> None:
            _mark(uow, 1)
            raise InvalidInput("no")

        with pytest.raises(InvalidInput):
            uow.run(fails)
        held.commit()
    finally:
        held.close()
    assert _marks(sessions) == []


def test_only_a_shared_session_can_be_held(sessions):
    with pytest.raises(ValueError, match="shared"):
        UnitOfWork(sessions, hold=True)


def test_a_held_unit_of_work_that_committed_keeps_its_change_when_it_raises_after(sessions):
    held = sessions()
    try:
        uow = UnitOfWork(None, shared=held, hold=True)
        uow.run(lambda: _mark(uow, 1))
        with pytest.raises(InvalidInput), uow:
            _mark(uow, 2)
            uow.commit()
            raise InvalidInput("after the commit")
        held.commit()
    finally:
        held.close()
    assert _marks(sessions) == [1, 2]
