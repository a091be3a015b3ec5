"""Who is asking: the role of an API key and the one provider or patient it is bound to."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass


class Role(enum.StrEnum):
    ADMIN = "admin"
    STAFF = "staff"
    PROVIDER = "provider"
    PATIENT = "patient"
    INTEGRATION = "integration"


@dataclass(frozen=True)
class Actor:
    key_id: uuid.UUID | None
    role: Role
    provider_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None


SYSTEM = Actor(key_id=None, role=Role.ADMIN)
"""The actor for command-line and scheduler work done by the clinic itself."""
