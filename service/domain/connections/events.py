"""What happens to connected calendars that other areas act on (ids only: never an address)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from service.domain.events import Event


@dataclass(frozen=True, kw_only=True)
class CalendarWentStale(Event):
    """A connection was not synced for ``CALENDAR_STALE_MULTIPLE`` times its interval: staff
    (and its provider) are alerted once for this stale episode."""

    connection_id: uuid.UUID
    provider_id: uuid.UUID


@dataclass(frozen=True, kw_only=True)
class CalendarStaleEnded(Event):
    """A stale connection synced again, was deactivated or removed: its alert is resolved."""

    connection_id: uuid.UUID
    provider_id: uuid.UUID
