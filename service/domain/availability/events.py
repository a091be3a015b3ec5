"""What happens to a provider's schedule that others react to (the waitlist)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from service.domain.events import Event


@dataclass(frozen=True, kw_only=True)
class ScheduleOpened(Event):
    """Time the provider could not be booked may now be bookable: time off removed
    (``cause`` "time_off_removed", its window) or the working hours replaced ("hours_changed",
    the weeks ahead)."""

    provider_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    cause: str
