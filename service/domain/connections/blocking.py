"""What the slot search and the booking read of connected calendars (queries only).

The slot search's one statement (availability/facts.py) and the booking's
(``placement.load_visit_schedule``) read external busy intervals next to time off: one more
source that blocks a provider, in the very ``Schedule`` the search and the booking's re-check
share, so a slot offered is a start the booking accepts. ``stale_providers`` is what a cached
answer asks of the providers' connected calendars.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import or_, select

from service.domain.connections.models import CalendarConnection, SyncStatus


def stale_providers(connection, provider_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:  # type: ignore[no-untyped-def]
    """The providers with an active connected calendar flagged stale or never synced yet."""
    if not provider_ids:
        return set()
    return set(connection.execute(
        select(CalendarConnection.provider_id).where(
            CalendarConnection.provider_id.in_(list(provider_ids)),
            CalendarConnection.active.is_(True),
            or_(CalendarConnection.stale_since.is_not(None),
                CalendarConnection.status == SyncStatus.PENDING))).scalars())
