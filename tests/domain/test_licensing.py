"""The Arizona licensing rule as a pure function."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.providers.licensing import (
    Credential,
    covered_days,
    covers,
    expiring,
    may_practice,
    state_jurisdiction,
)

DAY = date(2026, 12, 1)


def credential(jurisdiction="US-AZ", kind="license", status="active",
               issued=date(2025, 1, 1), expires=date(2027, 1, 1)) -> Credential:
    return Credential(jurisdiction=jurisdiction, kind=kind, status=status, issued_on=issued,
                      expires_on=expires)


@pytest.mark.parametrize("modality", ["telehealth", "in-person"])
def test_arizona_license_covers_both_modalities(modality):
    assert covers(credential(), on=DAY, modality=modality, patient_state="AZ")


def test_registration_covers_telehealth_only():
    registration = credential(kind="telehealth-registration")
    assert covers(registration, on=DAY, modality="telehealth", patient_state="AZ")
    assert not covers(registration, on=DAY, modality="in-person")


def test_registration_does_not_cover_patient_elsewhere():
    registration = credential(kind="telehealth-registration")
    assert not covers(registration, on=DAY, modality="telehealth", patient_state="CA")


@pytest.mark.parametrize("status", ["expired", "suspended", "revoked"])
def test_inactive_credentials_cover_nothing(status):
    for modality in ("telehealth", "in-person"):
        assert not covers(credential(status=status), on=DAY, modality=modality)


def test_outside_its_dates_covers_nothing():
    c = credential(issued=date(2026, 1, 1), expires=date(2026, 6, 30))
    assert covers(c, on=date(2026, 6, 30), modality="in-person")
    assert not covers(c, on=date(2026, 7, 1), modality="in-person")
    assert not covers(c, on=date(2025, 12, 31), modality="in-person")


def test_other_state_license_covers_telehealth_patient_in_that_state():
    california = credential(jurisdiction="US-CA")
    assert covers(california, on=DAY, modality="telehealth", patient_state="CA")
    assert not covers(california, on=DAY, modality="telehealth", patient_state="AZ")
    assert not covers(california, on=DAY, modality="in-person")


def test_out_of_state_psychiatrist_with_registration():
    held = [credential(jurisdiction="US-CA"), credential(kind="telehealth-registration")]
    assert may_practice(held, on=DAY, modality="telehealth", patient_state="AZ")
    assert may_practice(held, on=DAY, modality="telehealth", patient_state="CA")
    assert not may_practice(held, on=DAY, modality="in-person")
    assert not may_practice(held, on=DAY, modality="telehealth", patient_state="NM")


def test_state_jurisdiction():
    assert state_jurisdiction("az") == "US-AZ" and state_jurisdiction("US-CA") == "US-CA"


def test_expiring_within_days():
    today = date(2026, 11, 25)
    soon = credential(expires=today + timedelta(days=30))
    later = credential(expires=today + timedelta(days=90))
    gone = credential(expires=today - timedelta(days=1))
    suspended = credential(status="suspended", expires=today + timedelta(days=5))
    assert expiring([later, soon, gone, suspended], today=today, within_days=60) == [soon]


def test_covered_days_merges_renewals():
    first = credential(issued=date(2026, 1, 1), expires=date(2026, 6, 30))
    renewal = credential(issued=date(2026, 7, 1), expires=date(2027, 6, 30))
    assert covered_days([renewal, first], first=date(2026, 3, 1), last=date(2026, 9, 1),
                        modality="in-person") == [(date(2026, 3, 1), date(2026, 9, 1))]


@given(
    issued=st.dates(date(2024, 1, 1), date(2028, 1, 1)),
    length=st.integers(0, 800),
    on=st.dates(date(2023, 1, 1), date(2030, 1, 1)),
    kind=st.sampled_from(["license", "telehealth-registration"]),
    status=st.sampled_from(["active", "suspended", "revoked", "expired"]),
    modality=st.sampled_from(["telehealth", "in-person"]),
)
def test_covers_agrees_with_covered_days(issued, length, on, kind, status, modality):
    c = credential(kind=kind, status=status, issued=issued,
                   expires=issued + timedelta(days=length))
    days = covered_days([c], first=on, last=on, modality=modality, patient_state="AZ")
    assert covers(c, on=on, modality=modality, patient_state="AZ") == bool(days)
    if kind == "telehealth-registration" and modality == "in-person":
        assert not days
