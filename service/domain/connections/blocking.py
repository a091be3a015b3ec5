"""What the slot search and the booking read of connected calendars (queries only).

``search.load_schedule`` calls ``busy_between`` next to where it loads time off: external
busy intervals are one more source that blocks a provider, in the very ``Schedule`` the
search and the booking's re-check share, so a slot offered is a start the booking accepts.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, or_, select, type_coerce

from service.domain.connections.models import CalendarConnection, ExternalBusy, SyncStatus


@dataclass
class ExternalBusyTime:
    """External busy intervals per provider, and the providers with a stale source."""

    intervals: dict[uuid.UUID, list[tuple[datetime, datetime]]]
    stale_providers: set[uuid.UUID]


def busy_between(connection, provider_ids: Sequence[uuid.UUID], start: datetime,  # type: ignore[no-untyped-def]
                 end: datetime) -> ExternalBusyTime:
    """The providers' external busy time overlapping ``[start, end)`` (queries only, on the
    caller's connection), and which of them have a source flagged stale or never synced
    yet: an answer computed with it may offer time that is in fact taken."""
    found = ExternalBusyTime(intervals={}, stale_providers=set())
    if not provider_ids:
        return found
    starts, ends = ExternalBusy.starts_at, ExternalBusy.ends_at
    if connection.dialect.name == "postgresql":  # instants arrive as UTC: no per-row decoding
        starts, ends = (type_coerce(c, DateTime(timezone=True)) for c in (starts, ends))
    for provider_id, first, last in connection.execute(
            select(ExternalBusy.provider_id, starts, ends)
            .join(CalendarConnection, CalendarConnection.id == ExternalBusy.connection_id)
            .where(ExternalBusy.provider_id.in_(list(provider_ids)),
                   CalendarConnection.active.is_(True),
                   ExternalBusy.ends_at > start, ExternalBusy.starts_at < end)).all():
        found.intervals.setdefault(provider_id, []).append((first, last))
    found.stale_providers.update(stale_providers(connection, provider_ids))
    return found


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
