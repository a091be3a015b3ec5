"""Vital signs as pure rules: plausible values, the blood pressure hold, esketamine readings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.consultations.vitals import (
    LIMITS,
    MOAAS,
    Phase,
    Reading,
    Threshold,
    WatchLimits,
    beyond_limits,
    holds_session,
    implausible,
    missing_for_esketamine,
    not_alert_for_discharge,
)


def reading(phase="pre", systolic=128, diastolic=82, heart_rate=72, spo2=98, minutes=None):
    return Reading(phase=Phase(phase), systolic=systolic, diastolic=diastolic,
                   heart_rate=heart_rate, spo2=spo2, minutes_after_dose=minutes)


def test_a_normal_reading_is_plausible():
    assert implausible(reading()) == {}
    assert implausible(reading("during", minutes=40)) == {}


@pytest.mark.parametrize(("field", "value"), [
    ("systolic", 400), ("systolic", 20), ("diastolic", 0), ("heart_rate", 0),
    ("heart_rate", 400), ("spo2", 101), ("spo2", 10)])
def test_physiologically_impossible_values_are_named(field, value):
    assert field in implausible(reading(**{field: value}))


def test_diastolic_above_systolic_is_impossible():
    assert "diastolic" in implausible(reading(systolic=90, diastolic=120))


def test_minutes_after_dose_belong_to_readings_during_monitoring():
    assert "minutes_after_dose" in implausible(reading("during"))
    assert "minutes_after_dose" in implausible(reading("pre", minutes=5))
    assert "minutes_after_dose" in implausible(reading("during", minutes=-1))


@given(st.integers(*LIMITS["systolic"]), st.integers(*LIMITS["diastolic"]))
def test_only_a_pre_dose_pressure_above_the_threshold_holds(systolic, diastolic):
    threshold = Threshold(160, 100)
    expected = systolic > 160 or diastolic > 100
    assert holds_session(reading(systolic=systolic, diastolic=diastolic), threshold) is expected
    assert not holds_session(reading("during", systolic=systolic, diastolic=diastolic,
                                     minutes=40), threshold)


def test_the_threshold_itself_does_not_hold():
    assert not holds_session(reading(systolic=160, diastolic=100), Threshold())
    assert holds_session(reading(systolic=161, diastolic=80), Threshold())
    assert holds_session(reading(systolic=150, diastolic=101), Threshold())


def test_esketamine_needs_pre_about_40_minutes_and_discharge():
    assert missing_for_esketamine([]) == ["pre", "about_40_minutes", "discharge"]
    early = reading("during", minutes=10)
    assert missing_for_esketamine([reading(), early, reading("discharge")]) == [
        "about_40_minutes"]
    assert missing_for_esketamine([reading(), reading("during", minutes=42),
                                   reading("discharge")]) == []


# Sedation (MOAA/S 0-5) ----------------------------------------------------------------------


def scored(phase: str, score: int | None, minutes: int | None = None) -> Reading:
    return Reading(phase=Phase(phase), systolic=128, diastolic=82, heart_rate=72, spo2=98,
                   minutes_after_dose=minutes, sedation_moaas=score)


@pytest.mark.parametrize("score", [-1, 6])
def test_a_sedation_score_is_a_moaas_from_0_to_5(score):
    assert "sedation_moaas" in implausible(scored("during", score, 40))


@given(st.integers(*MOAAS), st.integers(0, 4))
def test_deep_sedation_during_monitoring_is_beyond_the_limits(score, alert_at):
    limits = WatchLimits(moaas_alert=alert_at)
    assert ("sedation" in beyond_limits(scored("during", score, 40), limits)) == (
        score <= alert_at)
    assert beyond_limits(scored("pre", score), limits) == []  # the hold's to judge


def test_responding_only_to_prodding_is_deep_sedation_and_a_lethargic_answer_is_not():
    assert beyond_limits(scored("during", 2, 40), WatchLimits()) == ["sedation"]
    assert beyond_limits(scored("during", 3, 40), WatchLimits()) == []
    assert beyond_limits(scored("during", None, 40), WatchLimits()) == []


@given(st.integers(*MOAAS))
def test_discharge_needs_the_patient_alert_when_a_score_is_given(score):
    why = not_alert_for_discharge(scored("discharge", score), [], WatchLimits())
    assert (why is None) == (score == 5)


def test_after_sedation_the_discharge_reading_gives_a_score():
    limits = WatchLimits()
    assert not_alert_for_discharge(scored("discharge", None), [4, None], limits) == (
        "sedation_score_required")
    assert not_alert_for_discharge(scored("discharge", None), [5, None], limits) is None
    assert not_alert_for_discharge(scored("discharge", 5), [1], limits) is None
