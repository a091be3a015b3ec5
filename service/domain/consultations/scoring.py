"""PHQ-9 and GAD-7: the service scores the item answers itself (pure).

Each item is answered 0 ("not at all") to 3 ("nearly every day"). The total is the sum; the
band follows the instruments' published cut-offs:

- PHQ-9 (9 items, 0-27): 0-4 minimal, 5-9 mild, 10-14 moderate, 15-19 moderately severe,
  20-27 severe;
- GAD-7 (7 items, 0-21): 0-4 minimal, 5-9 mild, 10-14 moderate, 15-21 severe.

PHQ-9 item 9 asks about thoughts of being better off dead or of self-harm: any answer above
0 is urgent, whatever the total.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from service.domain.errors import InvalidInput

ITEM_MIN, ITEM_MAX = 0, 3


class Instrument(enum.StrEnum):
    PHQ9 = "PHQ-9"
    GAD7 = "GAD-7"


class Band(enum.StrEnum):
    MINIMAL = "minimal"
    MILD = "mild"
    MODERATE = "moderate"
    MODERATELY_SEVERE = "moderately_severe"
    SEVERE = "severe"


ITEMS: dict[Instrument, int] = {Instrument.PHQ9: 9, Instrument.GAD7: 7}

# (lowest total of the band, band), highest first.
BANDS: dict[Instrument, tuple[tuple[int, Band], ...]] = {
    Instrument.PHQ9: ((20, Band.SEVERE), (15, Band.MODERATELY_SEVERE), (10, Band.MODERATE),
                      (5, Band.MILD), (0, Band.MINIMAL)),
    Instrument.GAD7: ((15, Band.SEVERE), (10, Band.MODERATE), (5, Band.MILD),
                      (0, Band.MINIMAL)),
}

# The PHQ-9 item about self-harm (1-based, as printed on the form).
SELF_HARM_ITEM = 9

# What a patient who reports thoughts of self-harm (PHQ-9 item 9 above 0) reads at once, in
# the answer to their questionnaire, while the on-call clinicians are alerted.
CRISIS_RESOURCES = (
    "If you are in crisis or thinking about harming yourself, call or text 988 (the 988 "
    "Suicide & Crisis Lifeline, 24/7, free and confidential) or chat at 988lifeline.org. "
    "If you are in immediate danger, call 911. Our clinical team has been alerted and "
    "will contact you.")


@dataclass(frozen=True)
class Score:
    instrument: Instrument
    total: int
    band: Band
    urgent: bool  # PHQ-9 item 9 answered above 0


def max_total(instrument: Instrument) -> int:
    return ITEMS[instrument] * ITEM_MAX


def band_of(instrument: Instrument, total: int) -> Band:
    if not 0 <= total <= max_total(instrument):
        raise ValueError(f"{instrument.value} totals run from 0 to {max_total(instrument)}")
    return next(band for lowest, band in BANDS[instrument] if total >= lowest)


def score(instrument: Instrument | str, answers: Sequence[int]) -> Score:
    """Score one completed questionnaire; refuses a wrong number of items or a value
    outside 0-3 (``invalid_answers``)."""
    instrument = Instrument(instrument)
    expected = ITEMS[instrument]
    if len(answers) != expected:
        raise InvalidInput(f"{instrument.value} has {expected} items; {len(answers)} answers "
                           "were given.", code="invalid_answers", expected_items=expected)
    if any(isinstance(a, bool) or not isinstance(a, int) or not ITEM_MIN <= a <= ITEM_MAX
           for a in answers):
        raise InvalidInput(f"Each {instrument.value} answer is a whole number from {ITEM_MIN} "
                           f"to {ITEM_MAX}.", code="invalid_answers", expected_items=expected)
    total = sum(answers)
    urgent = instrument is Instrument.PHQ9 and answers[SELF_HARM_ITEM - 1] > 0
    return Score(instrument=instrument, total=total, band=band_of(instrument, total),
                 urgent=urgent)
