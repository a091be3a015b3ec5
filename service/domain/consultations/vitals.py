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
from datetime import datetime, timedelta


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
# The sedation score: MOAA/S (Modified Observer's Assessment of Alertness/Sedation), the
# scale the esketamine (Spravato) trials and label use to watch sedation:
#   5 responds readily to their name in a normal tone (alert)
#   4 lethargic response to their name in a normal tone
#   3 responds only after their name is called loudly or repeatedly
#   2 responds only after mild prodding or shaking
#   1 responds only after a painful trapezius squeeze
#   0 no response after a painful trapezius squeeze
MOAAS = (0, 5)
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
    sedation_moaas: int | None = None  # MOAA/S 0-5, when assessed


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
    low, high = MOAAS
    if reading.sedation_moaas is not None and not low <= reading.sedation_moaas <= high:
        problems["sedation_moaas"] = f"must be between {low} and {high} (MOAA/S)"
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


def missing_for_treatment(readings: Iterable[Reading]) -> list[str]:
    """What any in-clinic treatment still lacks before it can be completed: ``pre``,
    ``during`` and ``discharge`` readings."""
    phases = {r.phase for r in readings}
    return [phase.value for phase in (Phase.PRE, Phase.DURING, Phase.DISCHARGE)
            if phase not in phases]


# Watched doses ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchLimits:
    """The readings during and after dosing (``during``, ``discharge``) a clinician must see at
    once: a blood pressure or heart rate above these, or an oxygen saturation below
    ``spo2_min``, raises an urgent alert and marks the session."""

    systolic_max: int = 180
    diastolic_max: int = 110
    heart_rate_max: int = 120
    spo2_min: int = 92
    # A MOAA/S at or below it: deep sedation (responds only to prodding, or not at all).
    moaas_alert: int = 2
    # Discharge after sedation: a MOAA/S at least this (5: alert, answers in a normal tone).
    discharge_moaas: int = 5


def beyond_limits(reading: Reading, limits: WatchLimits) -> list[str]:
    """The values of a reading during or after dosing beyond the clinic's limits (a pre-dose
    reading is the blood pressure hold's to judge)."""
    if reading.phase is Phase.PRE:
        return []
    beyond = [name for name, over in (
        ("systolic", reading.systolic > limits.systolic_max),
        ("diastolic", reading.diastolic > limits.diastolic_max),
        ("heart_rate", reading.heart_rate > limits.heart_rate_max),
        ("spo2", reading.spo2 < limits.spo2_min),
        ("sedation", reading.sedation_moaas is not None
         and reading.sedation_moaas <= limits.moaas_alert),
    ) if over]
    return beyond


def not_alert_for_discharge(reading: Reading, recorded_scores: Iterable[int | None],
                            limits: WatchLimits) -> str | None:
    """Why a discharge reading cannot discharge on the sedation score (None: it can). A
    score given at discharge must be at least ``discharge_moaas``; after any score below it
    during the session, the discharge reading must give one (the sedation is seen to have
    resolved, not assumed)."""
    if reading.phase is not Phase.DISCHARGE:
        return None
    score = reading.sedation_moaas
    if score is not None:
        if score < limits.discharge_moaas:
            return "sedation"
        return None
    if any(s is not None and s < limits.discharge_moaas for s in recorded_scores):
        return "sedation_score_required"
    return None


# A dose is one moment: readings during monitoring place it (taken_at - minutes_after_dose)
# within this many minutes of each other.
DOSE_TOLERANCE_MINUTES = 10


@dataclass(frozen=True)
class Timed:
    """A reading already recorded, as far as its order goes."""

    phase: Phase
    taken_at: datetime
    minutes_after_dose: int | None = None

    @property
    def dosed_at(self) -> datetime | None:
        if self.phase is not Phase.DURING or self.minutes_after_dose is None:
            return None
        return self.taken_at - timedelta(minutes=self.minutes_after_dose)


def out_of_order(new: Timed, recorded: Iterable[Timed]) -> str | None:
    """Why a reading cannot come where it says it was taken (None: it can). Readings go in
    the order of the session: before the dose, during monitoring at their minutes after the
    one dose, discharge last."""
    recorded = list(recorded)
    if any(r.phase is Phase.DISCHARGE for r in recorded):
        return "The discharge reading is the session's last one."
    doses = [d for d in (r.dosed_at for r in recorded) if d is not None]
    pres = [r.taken_at for r in recorded if r.phase is Phase.PRE]
    if new.phase is Phase.PRE and doses and new.taken_at > min(doses):
        return "A reading before dosing is taken before the dose."
    if new.phase is Phase.DURING:
        dose = new.dosed_at
        assert dose is not None
        if pres and dose < max(pres):
            return ("A reading during monitoring comes after the dose, and the dose after the "
                    "readings before it (minutes_after_dose counts from the dose).")
        tolerance = timedelta(minutes=DOSE_TOLERANCE_MINUTES)
        if doses and any(abs(dose - d) > tolerance for d in doses):
            return ("Its minutes after the dose place the dose elsewhere than the session's "
                    "other readings during monitoring do.")
    if new.phase is Phase.DISCHARGE and recorded and new.taken_at < max(
            r.taken_at for r in recorded):
        return "The discharge reading comes after every other reading of the session."
    return None


def discharge_from(recorded: Iterable[Timed], monitoring_minutes: int) -> datetime | None:
    """The earliest discharge after the dose the readings place: the dose plus the service
    type's monitoring time (120 minutes after esketamine). None: no dose placed yet."""
    doses = [d for d in (r.dosed_at for r in recorded) if d is not None]
    if not doses:
        return None
    return min(doses) + timedelta(minutes=monitoring_minutes)
