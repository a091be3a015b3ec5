"""Vital signs of a treatment session: what is physiologically possible, the blood pressure
that holds a session, and the readings an esketamine session needs (pure).

Readings are taken before dosing (``pre``), during monitoring (``during``, with the minutes
since the dose) and at discharge. The Spravato REMS asks for blood pressure before dosing,
about 40 minutes after it, and until the patient is clinically stable at discharge.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Phase(enum.StrEnum):
    PRE = "pre"
    DURING = "during"
    DISCHARGE = "discharge"


# Inclusive bounds of a reading a living patient can give (outside: a typing error).
LIMITS: dict[str, tuple[int, int]] = {
    "systolic": (50, 300),
    "diastolic": (20, 200),
    "heart_rate": (20, 250),
    "spo2": (50, 100),
}
MINUTES_AFTER_DOSE = (0, 360)
# "About 40 minutes after the dose": a reading in this window counts.
ABOUT_FORTY_MINUTES = (30, 50)


@dataclass(frozen=True)
class Reading:
    phase: Phase
    systolic: int
    diastolic: int
    heart_rate: int
    spo2: int
    minutes_after_dose: int | None = None


@dataclass(frozen=True)
class Threshold:
    """The clinic's blood pressure above which a session is held (mmHg)."""

    systolic: int = 160
    diastolic: int = 100


def implausible(reading: Reading) -> dict[str, str]:
    """Field -> why the value cannot be right (empty: the reading is plausible)."""
    problems: dict[str, str] = {}
    for name, (low, high) in LIMITS.items():
        value = getattr(reading, name)
        if not low <= value <= high:
            problems[name] = f"must be between {low} and {high}"
    if "systolic" not in problems and "diastolic" not in problems and (
            reading.diastolic >= reading.systolic):
        problems["diastolic"] = "must be lower than the systolic pressure"
    minutes = reading.minutes_after_dose
    if reading.phase is Phase.DURING:
        low, high = MINUTES_AFTER_DOSE
        if minutes is None:
            problems["minutes_after_dose"] = "is required for a reading during monitoring"
        elif not low <= minutes <= high:
            problems["minutes_after_dose"] = f"must be between {low} and {high}"
    elif minutes is not None:
        problems["minutes_after_dose"] = "is only given for a reading during monitoring"
    return problems


def holds_session(reading: Reading, threshold: Threshold) -> bool:
    """A pre-dose blood pressure above the threshold (either number) holds the session."""
    return reading.phase is Phase.PRE and (
        reading.systolic > threshold.systolic or reading.diastolic > threshold.diastolic)


def missing_for_esketamine(readings: Iterable[Reading]) -> list[str]:
    """What an esketamine session still lacks before it can be completed:
    ``pre``, ``about_40_minutes`` and ``discharge`` readings."""
    readings = list(readings)
    low, high = ABOUT_FORTY_MINUTES
    have = {
        "pre": any(r.phase is Phase.PRE for r in readings),
        "about_40_minutes": any(r.phase is Phase.DURING and r.minutes_after_dose is not None
                                and low <= r.minutes_after_dose <= high for r in readings),
        "discharge": any(r.phase is Phase.DISCHARGE for r in readings),
    }
    return [name for name, present in have.items() if not present]
