"""Intake screening answers as a pure rule: what blocks esketamine, what needs review."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.domain.consultations.screening import (
    HARD_FOR_ESKETAMINE,
    NEEDS_CLINICIAN_REVIEW,
    Contraindication,
    assess,
    esketamine_blocked,
)


def test_hard_contraindications_block_esketamine():
    for condition in ("aneurysmal_vascular_disease", "arteriovenous_malformation",
                      "intracerebral_hemorrhage_history", "hypersensitivity"):
        outcome = assess({condition: True})
        assert outcome.esketamine_contraindicated and not outcome.needs_review, condition


def test_hypertension_psychosis_and_pregnancy_flag_for_review_without_blocking():
    for condition in ("uncontrolled_hypertension", "psychosis_history", "pregnancy"):
        outcome = assess({condition: True})
        assert outcome.needs_review and not outcome.esketamine_contraindicated, condition


def test_no_answers_or_all_no_is_clear():
    assert assess({}) == assess({c: False for c in Contraindication})
    assert not assess({}).needs_review and not assess({}).esketamine_contraindicated


@given(st.dictionaries(st.sampled_from(list(Contraindication)), st.booleans()))
def test_every_yes_lands_in_exactly_one_list(answers):
    outcome = assess(answers)
    yes = {c for c, v in answers.items() if v}
    assert set(outcome.hard) == yes & HARD_FOR_ESKETAMINE
    assert set(outcome.review) == yes & NEEDS_CLINICIAN_REVIEW
    assert HARD_FOR_ESKETAMINE | NEEDS_CLINICIAN_REVIEW == set(Contraindication)


def test_any_screening_with_a_hard_contraindication_blocks():
    clear = assess({})
    blocked = assess({"arteriovenous_malformation": True})
    assert esketamine_blocked([clear, blocked]) and not esketamine_blocked([clear])
