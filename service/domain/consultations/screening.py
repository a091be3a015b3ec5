"""Intake screening: which answers block esketamine and which call for a clinician (pure).

The Spravato label's contraindications block an esketamine booking outright: aneurysmal
vascular disease (thoracic and abdominal aorta, intracranial and peripheral arteries),
arteriovenous malformation, a history of intracerebral hemorrhage, and hypersensitivity to
esketamine, ketamine or an excipient. Uncontrolled hypertension, a history of psychosis and
pregnancy do not block by themselves: they put the patient in front of a clinician, whose
decision (cleared, not cleared) then stands.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class Contraindication(enum.StrEnum):
    ANEURYSMAL_VASCULAR_DISEASE = "aneurysmal_vascular_disease"
    ARTERIOVENOUS_MALFORMATION = "arteriovenous_malformation"
    INTRACEREBRAL_HEMORRHAGE_HISTORY = "intracerebral_hemorrhage_history"
    HYPERSENSITIVITY = "hypersensitivity"
    UNCONTROLLED_HYPERTENSION = "uncontrolled_hypertension"
    PSYCHOSIS_HISTORY = "psychosis_history"
    PREGNANCY = "pregnancy"


HARD_FOR_ESKETAMINE = frozenset({
    Contraindication.ANEURYSMAL_VASCULAR_DISEASE,
    Contraindication.ARTERIOVENOUS_MALFORMATION,
    Contraindication.INTRACEREBRAL_HEMORRHAGE_HISTORY,
    Contraindication.HYPERSENSITIVITY,
})

NEEDS_CLINICIAN_REVIEW = frozenset({
    Contraindication.UNCONTROLLED_HYPERTENSION,
    Contraindication.PSYCHOSIS_HISTORY,
    Contraindication.PREGNANCY,
})

ORDER = tuple(Contraindication)


@dataclass(frozen=True)
class ScreeningOutcome:
    hard: tuple[Contraindication, ...]
    review: tuple[Contraindication, ...]

    @property
    def esketamine_contraindicated(self) -> bool:
        return bool(self.hard)

    @property
    def needs_review(self) -> bool:
        return bool(self.review)


def assess(answers: Mapping[Contraindication | str, bool]) -> ScreeningOutcome:
    """What the yes/no answers mean; an unanswered question counts as "no"."""
    present = {Contraindication(name) for name, yes in answers.items() if yes}
    return ScreeningOutcome(
        hard=tuple(c for c in ORDER if c in present and c in HARD_FOR_ESKETAMINE),
        review=tuple(c for c in ORDER if c in present and c in NEEDS_CLINICIAN_REVIEW))


def esketamine_blocked(outcomes: Iterable[ScreeningOutcome]) -> bool:
    """Any screening on record with a hard contraindication blocks esketamine: these are
    conditions of the patient's history, which a later form does not undo (correct a wrong
    answer on the screening itself)."""
    return any(outcome.esketamine_contraindicated for outcome in outcomes)
