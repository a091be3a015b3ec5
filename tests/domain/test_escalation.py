"""When each tier of the on-call rota is told of an urgent alert (pure, hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.oncall.escalation import EscalationState, escalation_plan, escalation_state

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                        timezones=st.just(UTC))
periods = st.integers(1, 240).map(lambda minutes: timedelta(minutes=minutes))
rotas = st.lists(st.integers(1, 9), min_size=1, max_size=12)


@given(rotas, instants, periods)
def test_the_first_tier_is_told_at_once_and_each_next_one_period_later(tiers, raised, period):
    plan = escalation_plan(tiers, raised_at=raised, escalation=period)
    order = sorted(set(tiers))
    assert set(plan) == set(tiers)
    assert plan[order[0]] == raised
    for before, after in zip(order, order[1:], strict=False):
        assert plan[after] - plan[before] == period


def test_gaps_in_the_tier_numbers_do_not_delay_anyone():
    raised = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
    plan = escalation_plan([5, 1, 2, 1], raised_at=raised, escalation=timedelta(minutes=10))
    assert plan == {1: raised, 2: raised + timedelta(minutes=10),
                    5: raised + timedelta(minutes=20)}


def test_a_naive_instant_or_no_period_is_refused():
    with pytest.raises(ValueError):
        escalation_plan([1], raised_at=datetime(2026, 11, 30, 17), escalation=timedelta(1))
    with pytest.raises(ValueError):
        escalation_plan([1], raised_at=datetime(2026, 11, 30, tzinfo=UTC),
                        escalation=timedelta(0))


@dataclass
class _Notice:
    tier: int
    escalated: bool
    status: str
    due_at: datetime


def test_where_an_alert_s_escalation_stands():
    raised = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    first = _Notice(1, False, "sent", raised)
    second = _Notice(2, True, "planned", raised + timedelta(minutes=10))
    third = _Notice(3, True, "planned", raised + timedelta(minutes=20))
    state = escalation_state
    assert state(urgent=True, acknowledged=False, notices=[first, second, third]) == (
        EscalationState.ESCALATING, second.due_at)
    assert state(urgent=True, acknowledged=True, notices=[first, second]) == (
        EscalationState.STOPPED_ON_ACKNOWLEDGEMENT, None)
    told = _Notice(2, True, "failed", second.due_at)
    assert state(urgent=True, acknowledged=False, notices=[first, told]) == (
        EscalationState.EVERY_TIER_TOLD, None)
    # The first tier still being sent, nobody after it: nothing to escalate to.
    assert state(urgent=True, acknowledged=False, notices=[_Notice(1, False, "planned", raised)]
                 ) == (EscalationState.ESCALATING, None)
    assert state(urgent=True, acknowledged=False, notices=[]) == (
        EscalationState.NOBODY_ON_CALL, None)
    assert state(urgent=False, acknowledged=False, notices=[]) == (
        EscalationState.NOT_URGENT, None)
