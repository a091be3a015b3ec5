"""PHQ-9 and GAD-7 scoring as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.consultations.scoring import (
    Band,
    Instrument,
    band_of,
    max_total,
    score,
)
from service.domain.errors import InvalidInput


def answers(instrument: Instrument, size: int | None = None):
    n = size if size is not None else {Instrument.PHQ9: 9, Instrument.GAD7: 7}[instrument]
    return st.lists(st.integers(0, 3), min_size=n, max_size=n)


@pytest.mark.parametrize(("total", "band"), [
    (0, Band.MINIMAL), (4, Band.MINIMAL), (5, Band.MILD), (9, Band.MILD),
    (10, Band.MODERATE), (14, Band.MODERATE), (15, Band.MODERATELY_SEVERE),
    (19, Band.MODERATELY_SEVERE), (20, Band.SEVERE), (27, Band.SEVERE)])
def test_phq9_bands_follow_the_published_cut_offs(total, band):
    assert band_of(Instrument.PHQ9, total) is band


@pytest.mark.parametrize(("total", "band"), [
    (0, Band.MINIMAL), (4, Band.MINIMAL), (5, Band.MILD), (9, Band.MILD),
    (10, Band.MODERATE), (14, Band.MODERATE), (15, Band.SEVERE), (21, Band.SEVERE)])
def test_gad7_bands_follow_the_published_cut_offs(total, band):
    assert band_of(Instrument.GAD7, total) is band


@given(answers(Instrument.PHQ9))
def test_phq9_total_is_the_sum_and_item_9_is_urgent(items):
    result = score("PHQ-9", items)
    assert result.total == sum(items) <= max_total(Instrument.PHQ9) == 27
    assert result.band is band_of(Instrument.PHQ9, sum(items))
    assert result.urgent is (items[8] > 0)


@given(answers(Instrument.GAD7))
def test_gad7_is_never_urgent(items):
    result = score(Instrument.GAD7, items)
    assert result.total == sum(items) <= 21
    assert result.urgent is False


def test_item_9_alone_is_urgent_even_with_a_minimal_total():
    result = score("PHQ-9", [0, 0, 0, 0, 0, 0, 0, 0, 1])
    assert result.band is Band.MINIMAL and result.urgent


@given(st.integers(0, 12).filter(lambda n: n != 9))
def test_a_wrong_number_of_items_is_refused(size):
    with pytest.raises(InvalidInput) as refused:
        score("PHQ-9", [0] * size)
    assert refused.value.code == "invalid_answers"


@pytest.mark.parametrize("bad", [-1, 4, 1.5, True, "2", None])
def test_an_answer_outside_0_to_3_is_refused(bad):
    with pytest.raises(InvalidInput):
        score("GAD-7", [0, 0, 0, 0, 0, 0, bad])


def test_an_impossible_total_has_no_band():
    with pytest.raises(ValueError):
        band_of(Instrument.GAD7, 22)
