"""Retry backoff of a failing connected calendar: one interval, then twice, then four times
it at most; never shorter than the interval."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from service.domain.connections.polling import MAX_BACKOFF, retry_delay

intervals = st.integers(min_value=300, max_value=24 * 3600)
failures = st.integers(min_value=1, max_value=10_000)


def test_the_wait_doubles_from_one_interval_up_to_four():
    assert [retry_delay(600, n) for n in range(1, 6)] == [
        timedelta(minutes=m) for m in (10, 20, 40, 40, 40)]


@given(intervals, failures)
def test_the_wait_grows_with_failures_between_one_and_four_intervals(interval, n):
    wait = retry_delay(interval, n)
    assert timedelta(seconds=interval) <= wait <= timedelta(seconds=interval * MAX_BACKOFF)
    assert retry_delay(interval, n + 1) >= wait
