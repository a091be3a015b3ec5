"""What happens to a treatment series, as domain events (see ``service/bootstrap.py``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from service.domain.events import Event


@dataclass(frozen=True, kw_only=True)
class SeriesCreated(Event):
    """A series was booked, all its sessions with it (each also a ``BookingCreated``)."""

    series_id: uuid.UUID
