"""Arizona-licensed availability: may this provider be booked on this date, for this visit?

Pure rules over plain values, so they are tested without a database:

- an active Arizona (``US-AZ``) license covers telehealth and in-person visits;
- an active A.R.S. 36-3606 telehealth registration covers telehealth visits only;
- a license of another state covers a telehealth visit of a patient located in that state;
- an expired, suspended or revoked credential covers nothing, nor does one outside its dates.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

ARIZONA = "US-AZ"


class Modality(enum.StrEnum):
    TELEHEALTH = "telehealth"
    IN_PERSON = "in-person"


@dataclass(frozen=True)
class Credential:
    """The licensing facts that matter for a booking (a License row, or a test value)."""

    jurisdiction: str
    kind: str  # "license" or "telehealth-registration"
    status: str  # "active", "suspended", "revoked", "expired"
    issued_on: date
    expires_on: date


def state_jurisdiction(state: str) -> str:
    """``AZ`` or ``US-AZ`` -> ``US-AZ``."""
    state = state.strip().upper()
    return state if state.startswith("US-") else f"US-{state}"


def _valid_on(credential: Credential, on: date) -> bool:
    return credential.status == "active" and credential.issued_on <= on <= credential.expires_on


def covers(credential: Credential, *, on: date, modality: Modality | str,
           patient_state: str | None = None) -> bool:
    """Does this one credential allow a visit on this date for a patient in this state?

    ``patient_state`` is where the patient is physically located at the visit; for an
    in-person visit at an Arizona clinic it is Arizona, whatever is passed.
    """
    if not _valid_on(credential, on):
        return False
    modality = Modality(modality)
    where = ARIZONA if modality is Modality.IN_PERSON or not patient_state else (
        state_jurisdiction(patient_state)
    )
    if credential.kind == "license":
        return credential.jurisdiction == where
    if credential.kind == "telehealth-registration":
        # A 36-3606 registration lets an out-of-state provider see Arizona patients by
        # telehealth; it never makes in-person slots.
        return modality is Modality.TELEHEALTH and where == ARIZONA and (
            credential.jurisdiction == ARIZONA
        )
    return False


def may_practice(credentials: Iterable[Credential], *, on: date, modality: Modality | str,
                 patient_state: str | None = None) -> bool:
    """May a provider holding these credentials be booked on this date for this visit?"""
    return any(
        covers(c, on=on, modality=modality, patient_state=patient_state) for c in credentials
    )


def covered_days(credentials: Iterable[Credential], *, first: date, last: date,
                 modality: Modality | str, patient_state: str | None = None
                 ) -> list[tuple[date, date]]:
    """The inclusive date ranges within [first, last] on which the provider may practice."""
    ranges = sorted(
        (max(c.issued_on, first), min(c.expires_on, last))
        for c in credentials
        if covers(c, on=max(c.issued_on, first), modality=modality, patient_state=patient_state)
        and max(c.issued_on, first) <= min(c.expires_on, last)
    )
    merged: list[tuple[date, date]] = []
    for start, end in ranges:
        if merged and start.toordinal() <= merged[-1][1].toordinal() + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def expiring(credentials: Iterable[Credential], *, today: date, within_days: int
             ) -> list[Credential]:
    """Active credentials that expire between today and today + within_days."""
    return sorted(
        (c for c in credentials
         if c.status == "active" and today <= c.expires_on
         and (c.expires_on - today).days <= within_days),
        key=lambda c: c.expires_on,
    )
