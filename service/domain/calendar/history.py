"""Forgetting what no client can ask for any more: old change-feed rows and the delivery log.

A sync token older than the retention window answers 410, so the changes committed before
that window can never be asked for again; finished webhook deliveries (and their attempts)
are kept for a while as a log, then dropped. Open deliveries are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete

from service.domain.calendar.models import (
    OPEN_DELIVERY_STATUSES,
    BookingChange,
    WebhookDelivery,
)
from service.uow import UnitOfWork

DELIVERY_LOG_RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class Purged:
    changes: int
    deliveries: int


def purge_history(uow: UnitOfWork, *, now: datetime, change_retention: timedelta,
                  delivery_retention: timedelta = DELIVERY_LOG_RETENTION) -> Purged:
    def work() -> Purged:
        changes = uow.session.execute(delete(BookingChange).where(
            BookingChange.changed_at < now - change_retention)).rowcount
        deliveries = uow.session.execute(delete(WebhookDelivery).where(
            WebhookDelivery.status.not_in(OPEN_DELIVERY_STATUSES),
            WebhookDelivery.updated_at < now - delivery_retention)).rowcount
        return Purged(changes=changes or 0, deliveries=deliveries or 0)

    return uow.run(work)
