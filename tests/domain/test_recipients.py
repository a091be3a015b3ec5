"""A booking change's recipients (webhook subscriptions, write-back calendars): one
statement a transaction, the same answers as reading each on its own, nothing kept once the
transaction ends."""

from __future__ import annotations

import uuid

from sqlalchemy import event, select

from service.domain import recipients
from service.domain.calendar.models import WebhookSubscription
from service.domain.connections.models import CalendarConnection, ConnectionKind
from service.uow import UnitOfWork


def _subscription(events: list[str], *, active: bool = True) -> WebhookSubscription:
    return WebhookSubscription(url="https://hooks.example.com/x", events=events,
                               secret="s" * 40, active=active)


def test_read_once_per_transaction_with_the_same_answers(app) -> None:
    database = app.extensions["clinic.database"]
    uow = UnitOfWork(database.write_sessions, dialect=database.dialect)
    with uow:
        uow.session.add_all([_subscription(["booking.created"]),
                             _subscription(["booking.cancelled", "booking.created"]),
                             _subscription(["booking.created"], active=False)])
        uow.session.commit()
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if "webhook_subscriptions" in statement or "calendar_connections" in statement:
            statements.append(statement)

    provider_id = uuid.uuid4()
    event.listen(database.writer, "before_cursor_execute", count)
    try:
        with uow:
            found = recipients.subscribers(uow, provider_id=provider_id)
            again = recipients.subscribers(uow)
            calendars = recipients.write_back_calendars(uow, provider_id)
            assert len(statements) == 1  # both kinds, once
            expected = [s for s in uow.session.scalars(
                select(WebhookSubscription).where(WebhookSubscription.active.is_(True))
                .order_by(WebhookSubscription.id))]
            assert [(s.id, list(s.events)) for s in found] == [
                (s.id, list(s.events)) for s in expected]
            assert again == found
            assert calendars == frozenset(uow.session.scalars(select(CalendarConnection.id).where(
                CalendarConnection.provider_id == provider_id,
                CalendarConnection.kind == ConnectionKind.CALDAV,
                CalendarConnection.write_back.is_(True), CalendarConnection.active.is_(True))))
            assert [s.wants("booking.cancelled") for s in found] == [
                "booking.cancelled" in s.events for s in expected]
            statements.clear()
            uow.session.add(_subscription(["booking.created"]))
            uow.commit()  # a new transaction reads afresh
            assert len(recipients.subscribers(uow)) == len(found) + 1
            assert len(statements) > 0
    finally:
        event.remove(database.writer, "before_cursor_execute", count)
