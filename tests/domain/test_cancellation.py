"""The cancellation policy's arithmetic (pure): when a cancellation is late, when a patient
may still change their visit, and the fee it costs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from service.domain.clinic.cancellation import CancellationTerms
from service.domain.clinic.models import CancellationOutcome

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                        timezones=st.just(UTC))
outcomes = st.sampled_from(list(CancellationOutcome))


def terms(notice: int, late: int, outcome: CancellationOutcome, fee: int,
          no_show: CancellationOutcome = CancellationOutcome.FLAG) -> CancellationTerms:
    return CancellationTerms.of(SimpleNamespace(
        patient_notice_hours=notice, late_cancel_hours=late, late_cancel_outcome=outcome,
        late_cancel_fee_cents=fee, no_show_outcome=no_show, no_show_fee_cents=fee * 2))


@given(start=instants, before=st.integers(-10_000, 10_000), notice=st.integers(0, 720),
       late=st.integers(0, 336), outcome=outcomes, fee=st.integers(0, 100_000))
def test_late_and_notice_follow_the_hours_before_the_start(start, before, notice, late,
                                                            outcome, fee):
    now = start - timedelta(minutes=before)
    policy = terms(notice, late, outcome, fee)
    assert policy.is_late(start, now) == (outcome is not CancellationOutcome.NONE
                                          and now >= start - timedelta(hours=late))
    assert policy.patient_may_change(start, now) == (now < start - timedelta(hours=notice))
    charged = policy.late_fee_cents(start, now)
    assert charged == (fee if policy.is_late(start, now)
                       and outcome is CancellationOutcome.FEE else None)
    shown = policy.for_visit(start, now)
    assert shown["fee_if_cancelled_now_cents"] == charged
    assert shown["late_from"] <= start and shown["patient_changes_until"] <= start


@given(start=instants, hours=st.integers(1, 336))
def test_a_cancellation_becomes_late_exactly_at_the_window(start, hours):
    policy = terms(0, hours, CancellationOutcome.FEE, 5000)
    edge = start - timedelta(hours=hours)
    assert not policy.is_late(start, edge - timedelta(microseconds=1))
    assert policy.is_late(start, edge) and policy.late_fee_cents(start, edge) == 5000


def test_a_no_show_fee_only_when_the_outcome_is_a_fee():
    assert terms(0, 24, CancellationOutcome.FLAG, 100).no_show_fee() is None
    assert terms(0, 24, CancellationOutcome.FLAG, 100, CancellationOutcome.FEE).no_show_fee() == 200
