"""What happens to a patient that other areas react to (see ``service/bootstrap.py``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from service.domain.events import Event


@dataclass(frozen=True, kw_only=True)
class RemsEnrolmentChanged(Event):
    """The patient's Spravato REMS enrolment was given or withdrawn."""

    patient_id: uuid.UUID
    enrolled: bool
