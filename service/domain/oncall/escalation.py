"""When each tier of the on-call rota is told of an urgent alert (pure).

Tier numbers give the order only: the first tier on the rota is told when the alert is
raised, and each next tier one escalation period after the one before it, whatever the
numbers in between (tiers 1, 2, 5: at once, after one period, after two).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from service.domain.time import require_aware


def escalation_plan(tiers: Iterable[int], *, raised_at: datetime,
                    escalation: timedelta) -> dict[int, datetime]:
    """Tier -> when its contacts are told (``raised_at``: an aware instant)."""
    require_aware(raised_at, "raised_at")
    if escalation <= timedelta(0):
        raise ValueError("the escalation period must be positive")
    return {tier: raised_at + step * escalation
            for step, tier in enumerate(sorted(set(tiers)))}
