"""A transaction the database rolled back to break a deadlock is run again, a bounded number
of times (the booking race on PostgreSQL relies on it: see tests/db/test_booking_race.py)."""

from __future__ import annotations

import pytest

from service.uow import RETRIES, Contention, retry_on_contention


def test_a_use_case_that_lost_a_deadlock_runs_again():
    calls = []

    @retry_on_contention
    def use_case():
        calls.append(1)
        if len(calls) < RETRIES:
            raise Contention("deadlock")
        return "done"

    assert use_case() == "done" and len(calls) == RETRIES


def test_contention_goes_out_after_the_last_attempt():
    calls = []

    @retry_on_contention
    def use_case():
        calls.append(1)
        raise Contention("deadlock")

    with pytest.raises(Contention):
        use_case()
    assert len(calls) == RETRIES
