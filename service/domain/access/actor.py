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


CLINIC_STAFF = frozenset({Role.ADMIN, Role.STAFF})


@dataclass(frozen=True)
class Actor:
    key_id: uuid.UUID | None
    role: Role
    provider_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None

    @property
    def is_clinic_staff(self) -> bool:
        return self.role in CLINIC_STAFF

    @property
    def sees_every_patient(self) -> bool:
        """Staff, admins and integrations see every patient; others only their own."""
        return self.role in CLINIC_STAFF or self.role is Role.INTEGRATION


SYSTEM = Actor(key_id=None, role=Role.ADMIN)
"""The actor for command-line and scheduler work done by the clinic itself."""
