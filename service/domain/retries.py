"""How long an outbox (reminders, webhook deliveries) waits before trying a failed send again."""

from __future__ import annotations

from datetime import timedelta

MAX_BACKOFF = timedelta(hours=1)


def backoff(attempts: int, base_seconds: float, cap: timedelta = MAX_BACKOFF) -> timedelta:
    """Exponential backoff after the ``attempts``-th failed attempt: base, 2x, 4x, ... capped."""
    # Cap before building the timedelta: 2 ** 40 attempts' worth overflows it.
    return timedelta(seconds=min(cap.total_seconds(), base_seconds * 2 ** max(0, attempts - 1)))
