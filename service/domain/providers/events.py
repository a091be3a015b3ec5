"""What happens to a provider that other areas react to (see ``service/bootstrap.py``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from service.domain.events import Event


@dataclass(frozen=True, kw_only=True)
class LicenseChanged(Event):
    """One of the provider's licenses changed (status, dates, where it is valid)."""

    provider_id: uuid.UUID
