"""When each tier of the on-call rota is told of an urgent alert (pure).

Tier numbers give the order only: the first tier on the rota is told when the alert is
raised, and each next tier one escalation period after the one before it, whatever the
numbers in between (tiers 1, 2, 5: at once, after one period, after two).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from service.domain.time import require_aware


def escalation_plan(tiers: Iterable[int], *, raised_at: datetime,
                    escalation: timedelta) -> dict[int, datetime]:
    """Tier -> when its contacts are told (``raised_at``: an aware instant)."""
    require_aware(raised_at, "raised_at")
    if escalation <= timedelta(0):
        raise ValueError("the escalation period must be positive")
    return {tier: raised_at + step * escalation
            for step, tier in enumerate(sorted(set(tiers)))}


class EscalationState(enum.StrEnum):
    NOT_URGENT = "not_urgent"  # only urgent alerts are sent to the rota
    NOBODY_ON_CALL = "nobody_on_call"  # urgent, raised with nobody on the rota
    ESCALATING = "escalating"  # notices still to send: the next tier is told when due
    STOPPED_ON_ACKNOWLEDGEMENT = "stopped_on_acknowledgement"
    EVERY_TIER_TOLD = "every_tier_told"  # nothing left to send, not acknowledged


OPEN = ("planned", "sending")


class NoticeLike(Protocol):
    tier: int
    escalated: bool
    status: str
    due_at: datetime


def escalation_state(*, urgent: bool, acknowledged: bool,
                     notices: Sequence[NoticeLike]) -> tuple[EscalationState, datetime | None]:
    """Where an alert's escalation stands, and when the next tier is told (None: nobody
    more will be, or the alert is acknowledged)."""
    if not urgent:
        return EscalationState.NOT_URGENT, None
    if not notices:
        return EscalationState.NOBODY_ON_CALL, None
    if acknowledged:
        return EscalationState.STOPPED_ON_ACKNOWLEDGEMENT, None
    waiting = [n for n in notices if n.status in OPEN]
    if not waiting:
        return EscalationState.EVERY_TIER_TOLD, None
    escalations = [n.due_at for n in waiting if n.escalated]
    return EscalationState.ESCALATING, min(escalations) if escalations else None
