"""What happens in a consultation that other areas react to (see ``service/bootstrap.py``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from service.domain.consultations.models import ClearanceStatus
from service.domain.events import Event


@dataclass(frozen=True, kw_only=True)
class ClearanceChanged(Event):
    """A new decision on the patient's readiness for treatment now stands (a clinician's, or
    "needs review" set by screening answers)."""

    patient_id: uuid.UUID
    decision: ClearanceStatus

    @property
    def cleared(self) -> bool:
        return self.decision is ClearanceStatus.CLEARED


@dataclass(frozen=True, kw_only=True)
class ScreeningChanged(Event):
    """A screening's answers were recorded or changed (a contraindication may now stand)."""

    patient_id: uuid.UUID


@dataclass(frozen=True, kw_only=True)
class AlertRaised(Event):
    """An alert for clinic staff and providers was raised (``urgent``: the on-call clinicians
    are told at once, and the next on the rota while nobody acknowledges it)."""

    alert_id: uuid.UUID
    urgent: bool


@dataclass(frozen=True, kw_only=True)
class AlertAcknowledged(Event):
    """Someone took an alert in hand: escalation stops."""

    alert_id: uuid.UUID
