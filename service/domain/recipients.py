"""Who hears of a change: the active webhook subscriptions and a provider's write-back
calendars, read once per transaction in one statement.

A booking change has two outbox handlers (``service/bootstrap.py``): the webhooks
(``webhooks.enqueue_booking_change``) and the connected calendars
(``connections.writeback.enqueue_writes``). Each used to read its own recipients: two
statements a change. Whichever asks first here reads both (a ``UNION ALL``), and the answer
is kept on the unit of work (``uow.memo``) for the rest of the transaction, so the other
handler, and every later change in the same transaction (a series, a waitlist fill), reads
nothing. The memo lives as long as the transaction: nothing is kept across requests or
processes, so a subscription or a calendar added elsewhere is seen by the next transaction.

On PostgreSQL a booking asks for both in the very query that loads its parties (``COLUMNS``:
two scalar subqueries, the provider's calendars correlated to the provider row) and hands
the answer to ``remember``: the change then reads no recipients at all.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from sqlalchemy import JSON, Text, cast, func, literal, null, select, type_coerce, union_all
from sqlalchemy.dialects.postgresql import aggregate_order_by

from service.domain.calendar.models import WebhookSubscription
from service.domain.connections.models import CalendarConnection, ConnectionKind
from service.domain.providers.models import Provider
from service.uow import UnitOfWork

_SUBSCRIBERS = "recipients.subscribers"


@dataclass(frozen=True)
class Subscriber:
    """An active webhook subscription: its id and the event types it asked for."""

    id: uuid.UUID
    events: tuple[str, ...]

    def wants(self, event_type: str) -> bool:
        return event_type in self.events


def _subscriptions():  # type: ignore[no-untyped-def]
    return (select(literal("webhook").label("kind"), WebhookSubscription.id.label("id"),
                   WebhookSubscription.events.label("events"))
            .where(WebhookSubscription.active.is_(True)))


def _write_back(provider_id: uuid.UUID):  # type: ignore[no-untyped-def]
    return (select(literal("calendar").label("kind"), CalendarConnection.id.label("id"),
                   type_coerce(null(), JSON).label("events"))
            .where(*_write_back_where(provider_id)))


def _write_back_where(provider_id):  # type: ignore[no-untyped-def]
    return (CalendarConnection.provider_id == provider_id,
            CalendarConnection.kind == ConnectionKind.CALDAV,
            CalendarConnection.write_back.is_(True), CalendarConnection.active.is_(True))


# PostgreSQL: the recipients as two text columns of the query that loads a provider row (the
# subscriptions as a JSON array of [id, events] in id order, the provider's write-back
# calendars' ids joined by commas; NULL when there are none). Text, so the row hashes.
COLUMNS = (
    cast(select(func.json_agg(aggregate_order_by(
        func.json_build_array(WebhookSubscription.id, WebhookSubscription.events),
        WebhookSubscription.id)))
        .where(WebhookSubscription.active.is_(True)).scalar_subquery(), Text)
    .label("recipients_subscribers"),
    select(func.string_agg(cast(CalendarConnection.id, Text), ","))
    .where(*_write_back_where(Provider.id)).scalar_subquery().label("recipients_write_back"),
)


def remember(uow: UnitOfWork, provider_id: uuid.UUID, subscribers_json: str | None,
             write_back_ids: str | None) -> None:
    """Keep for the transaction the recipients read with the provider (``COLUMNS``)."""
    found = [Subscriber(id=uuid.UUID(id_), events=tuple(events or ()))
             for id_, events in json.loads(subscribers_json or "[]")]
    found.sort(key=lambda s: s.id)
    uow.memo[_SUBSCRIBERS] = found
    uow.memo[("recipients.write_back", provider_id)] = frozenset(
        uuid.UUID(id_) for id_ in (write_back_ids or "").split(",") if id_)


def _load(uow: UnitOfWork, provider_id: uuid.UUID | None) -> None:
    """Read what the memo lacks: the subscriptions, the provider's write-back calendars, or
    both in one statement."""
    memo = uow.memo
    parts = []
    if _SUBSCRIBERS not in memo:
        parts.append(_subscriptions())
    calendars_key = ("recipients.write_back", provider_id)
    if provider_id is not None and calendars_key not in memo:
        parts.append(_write_back(provider_id))
    if not parts:
        return
    statement = parts[0] if len(parts) == 1 else union_all(*parts)
    subscribers: list[Subscriber] = []
    calendars: set[uuid.UUID] = set()
    uow.flush()  # (as the session's autoflush would before its query)
    for row in uow.connection().execute(statement):
        if row.kind == "webhook":
            subscribers.append(Subscriber(id=row.id, events=tuple(row.events or ())))
        else:
            calendars.add(row.id)
    if _SUBSCRIBERS not in memo:
        subscribers.sort(key=lambda s: s.id)  # the order deliveries are written in
        memo[_SUBSCRIBERS] = subscribers
    if provider_id is not None and calendars_key not in memo:
        memo[calendars_key] = frozenset(calendars)


def subscribers(uow: UnitOfWork, *, provider_id: uuid.UUID | None = None) -> list[Subscriber]:
    """The active webhook subscriptions, in id order. ``provider_id``: the provider of the
    booking that changed, whose write-back calendars are read in the same statement."""
    _load(uow, provider_id)
    return uow.memo[_SUBSCRIBERS]  # type: ignore[return-value]


def write_back_calendars(uow: UnitOfWork, provider_id: uuid.UUID) -> frozenset[uuid.UUID]:
    """The ids of the provider's active write-back (CalDAV) calendars."""
    _load(uow, provider_id)
    return uow.memo[("recipients.write_back", provider_id)]  # type: ignore[return-value]
