"""The booking change feed: a gap-free change sequence, and sync tokens over it.

Why not an autoincrement id: it is assigned at INSERT, not at COMMIT, so a reader can see
change 10 committed while change 9 is still in flight, move its token past 9, and never see
it. Here every transaction that changed bookings numbers its changes right before it commits
(``number_changes``: the message bus's final handler of the booking events, run after every
other handler, see ``service/bootstrap.py``), by an upsert of the ``sync_counters`` row.
That row stays locked until the commit, so the next writer gets its numbers only after this
one committed: changes become visible in sequence order. A reader that sees change n
therefore sees every change below n. The lock is held only between the upsert and the
commit (the bookings and webhook rows were flushed before; on PostgreSQL the history rows
and planned reminders ride the upsert's statement, rows only this transaction's bookings
are referenced from), so writers queue for microseconds and no writer can wait on a booking
lock while holding it (no deadlock with the exclusion constraints). SQLite has one writer at
a time (BEGIN IMMEDIATE): the same counter is trivially in order.

Reading: ``upper`` = the highest committed number, read FIRST; then the changes in
``(position, upper]``. Everything up to ``upper`` is committed, so nothing is skipped; what
commits after ``upper`` is in the next answer. The full sync reads ``upper`` first too, then
the bookings: a booking changed meanwhile may come again in the next incremental answer
(at-least-once, the current state each time), never not at all.

Tokens are opaque to clients (base64url of a small JSON: mode, position, filters, issue
time); they expire after ``SYNC_TOKEN_RETENTION_DAYS``. A token that cannot be read, comes
from the future, or expired answers ``sync_token_expired`` (410): sync again from scratch.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Connection, Insert, bindparam, func, insert, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.db import DirectStatement
from service.domain import json_rows
from service.domain.access.actor import Actor
from service.domain.bookings import history as booking_history
from service.domain.bookings.events import BookingChanged
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.bookings.policy import policy as booking_policy
from service.domain.calendar.models import BookingChange, SyncCounter
from service.domain.errors import Gone, InvalidInput
from service.domain.reminders import deferred as planned_reminders
from service.uow import UnitOfWork

SEQUENCE = "booking_changes"
TOKEN_VERSION = 1
MAX_TOKEN_LENGTH = 512


# Writing: number the changes of a transaction right before it commits --------------------


def _advance(connection: Connection, count: int) -> int:
    """Add ``count`` to the counter (creating it), returning the new last number. The row
    stays locked (PostgreSQL) until this transaction ends."""
    dialect = connection.dialect.name
    table = SyncCounter.__table__
    module = postgresql if dialect == "postgresql" else sqlite
    statement = (module.insert(table).values(name=SEQUENCE, value=count)
                 .on_conflict_do_update(index_elements=[table.c.name],
                                        set_={"value": table.c.value + count})
                 .returning(table.c.value))
    return int(connection.execute(statement).scalar_one())


def number_changes(uow: UnitOfWork, changes: Sequence[BookingChanged]) -> None:
    """Number the transaction's booking changes, in the order they happened, and add them to
    the change feed. The bus runs this last, once, right before the commit: everything else
    is flushed first, so the counter lock is the last lock the transaction takes. Its
    statements run on the transaction's connection (``UnitOfWork.connection``: a booking
    made without a session asks for none)."""
    uow.flush()
    connection = uow.connection()
    if connection.dialect.name == "postgresql":
        _NUMBERED_DIRECT.execute(connection, {
            "count": len(changes), "changes": json_rows.parameter([
                {"booking_id": c.booking_id, "kind": c.kind.value, "changed_at": c.occurred_at}
                for c in changes]),
            **booking_history.take_deferred(uow.memo),
            **planned_reminders.take_deferred(uow.memo)})
        return
    last = _advance(connection, len(changes))
    first = last - len(changes) + 1
    connection.execute(insert(BookingChange.__table__), [
        {"seq": first + index, "booking_id": change.booking_id, "kind": change.kind.value,
         "changed_at": change.occurred_at}
        for index, change in enumerate(changes)])


@functools.cache
def _numbered_in_one_statement() -> Insert:
    """PostgreSQL: the counter's upsert and the changes' rows in one statement (the upsert
    a data-modifying WITH whose new value numbers the rows, given as JSON rows in the order
    the changes happened, ``json_rows.py``): the same numbers, the same lock, one round trip
    fewer. The bookings' history rows and planned reminders of the transaction ride along
    (``bookings/history.py``, ``reminders/deferred.py``: CTEs inserting rows of tables only
    this transaction's bookings are referenced from, so they wait on no lock). Built once,
    with parameters only, so its compiled form is cached."""
    table, count = SyncCounter.__table__, bindparam("count", type_=BigInteger)
    counter = (postgresql.insert(table).values(name=SEQUENCE, value=count)
               .on_conflict_do_update(index_elements=[table.c.name],
                                      set_={"value": table.c.value + count})
               .returning(table.c.value).cte("counter"))
    rows = json_rows.rows_of(BookingChange.__table__, "changes", alias="change")
    return insert(BookingChange.__table__).from_select(
        ["seq", "booking_id", "kind", "changed_at"],
        select(counter.c.value - count + rows.c[json_rows.ORDER], rows.c.booking_id,
               rows.c.kind, rows.c.changed_at).select_from(counter).join(rows, true())).add_cte(
        counter, booking_history.written_with_the_feed(),
        planned_reminders.written_with_the_feed())


# Run on the session's connection without SQLAlchemy's per-execution machinery
# (``DirectStatement``): the last statement of every booking change. The session's
# ``do_orm_execute`` hooks do not see it, and need not: it writes only rows that follow a
# booking change this transaction already flushed or inserted (which the audit saw).
_NUMBERED_DIRECT = DirectStatement(_numbered_in_one_statement())


# Tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncToken:
    """Where a client stands: ``full`` (paging through a full sync: the bookings after
    ``after``, then a sync token at ``position``) or ``incremental`` (changes after
    ``position``), with the filters of the sync that issued it."""

    mode: str
    position: int
    issued_at: datetime
    after: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None

    def encode(self) -> str:
        data: dict[str, Any] = {"v": TOKEN_VERSION, "m": self.mode[0], "p": self.position,
                                "t": int(self.issued_at.timestamp())}
        for key, value in (("a", self.after), ("pr", self.provider_id),
                           ("pa", self.patient_id)):
            if value is not None:
                data[key] = value.hex
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def token_expired(detail: str = "The sync token is expired or invalid; sync again from "
                                "scratch, without a token.") -> Gone:
    return Gone(detail, code="sync_token_expired")


def decode_token(text: str, *, now: datetime, retention: timedelta) -> SyncToken:
    if not text or len(text) > MAX_TOKEN_LENGTH:
        raise token_expired()
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if data.get("v") != TOKEN_VERSION or data.get("m") not in ("f", "i"):
            raise ValueError
        token = SyncToken(
            mode="full" if data["m"] == "f" else "incremental", position=int(data["p"]),
            issued_at=datetime.fromtimestamp(int(data["t"]), UTC),
            after=uuid.UUID(data["a"]) if "a" in data else None,
            provider_id=uuid.UUID(data["pr"]) if "pr" in data else None,
            patient_id=uuid.UUID(data["pa"]) if "pa" in data else None)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError,
            OverflowError, AttributeError):
        raise token_expired() from None
    if token.position < 0 or token.issued_at > now + timedelta(minutes=5):
        raise token_expired()
    if now - token.issued_at > retention:
        raise token_expired("The sync token is older than the retention window; sync again "
                            "from scratch, without a token.")
    return token


# Reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncPage:
    bookings: list[Booking]
    next_page_token: str | None
    next_sync_token: str | None


def sync_bookings(uow: UnitOfWork, actor: Actor, *, now: datetime, retention: timedelta,
                  page_size: int, sync_token: str | None = None, page_token: str | None = None,
                  provider_id: uuid.UUID | None = None,
                  patient_id: uuid.UUID | None = None) -> SyncPage:
    """One page of the changes feed, scoped to what the actor may see.

    Without a token: a full sync of the bookings that are not cancelled (paged with
    ``next_page_token``; the last page carries ``next_sync_token``). With ``sync_token``
    (or an incremental ``page_token``): every visible booking changed since, cancelled ones
    included (the caller shows them as tombstones), in the order of their latest change.
    """
    if sync_token and page_token:
        raise InvalidInput("Send either sync_token or page_token, not both.",
                           code="sync_token_with_filters")
    text = sync_token or page_token
    if text and (provider_id or patient_id):
        raise InvalidInput("A sync token carries the filters of the sync that issued it; "
                           "send it without provider_id or patient_id.",
                           code="sync_token_with_filters")
    if text:
        token = decode_token(text, now=now, retention=retention)
        if sync_token and token.mode != "incremental":
            raise token_expired("This is a page token: send it as page_token.")
    else:
        token = SyncToken(mode="full", position=0, issued_at=now, provider_id=provider_id,
                          patient_id=patient_id)

    def scoped(query):  # type: ignore[no-untyped-def]
        query = booking_policy.visible(actor, query)
        if token.provider_id is not None:
            query = query.where(Booking.provider_id == token.provider_id)
        if token.patient_id is not None:
            query = query.where(Booking.patient_id == token.patient_id)
        return query

    with uow:
        session = uow.session
        upper = session.scalar(select(func.coalesce(func.max(BookingChange.seq), 0)))
        if text is None:
            token = SyncToken(mode="full", position=int(upper or 0), issued_at=now,
                              provider_id=provider_id, patient_id=patient_id)
        elif token.position > (upper or 0):
            raise token_expired()  # from another database, or forged
        if token.mode == "full":
            return _full_page(session, scoped, token, page_size=page_size, now=now)
        return _incremental_page(session, scoped, token, upper=int(upper or 0),
                                 page_size=page_size, now=now)


def _full_page(session: Session, scoped, token: SyncToken, *, page_size: int,  # type: ignore[no-untyped-def]
               now: datetime) -> SyncPage:
    query = scoped(select(Booking)).where(Booking.status != BookingStatus.CANCELLED)
    if token.after is not None:
        query = query.where(Booking.id > token.after)
    rows = list(session.scalars(query.order_by(Booking.id).limit(page_size + 1)))
    if len(rows) > page_size:
        rows = rows[:page_size]
        following = SyncToken(mode="full", position=token.position, issued_at=now,
                              after=rows[-1].id, provider_id=token.provider_id,
                              patient_id=token.patient_id)
        return SyncPage(rows, next_page_token=following.encode(), next_sync_token=None)
    final = SyncToken(mode="incremental", position=token.position, issued_at=now,
                      provider_id=token.provider_id, patient_id=token.patient_id)
    return SyncPage(rows, next_page_token=None, next_sync_token=final.encode())


def _incremental_page(session: Session, scoped, token: SyncToken, *, upper: int,  # type: ignore[no-untyped-def]
                      page_size: int, now: datetime) -> SyncPage:
    latest = func.max(BookingChange.seq).label("latest")
    changed = scoped(
        select(BookingChange.booking_id, latest)
        .join(Booking, Booking.id == BookingChange.booking_id)
        .where(BookingChange.seq > token.position, BookingChange.seq <= upper)
        .group_by(BookingChange.booking_id)
        .order_by(latest)
        .limit(page_size + 1))
    found = list(session.execute(changed))
    more = len(found) > page_size
    found = found[:page_size]
    bookings = {b.id: b for b in session.scalars(
        select(Booking).where(Booking.id.in_([row.booking_id for row in found])))}
    ordered = [bookings[row.booking_id] for row in found]
    # With more to come, the next page starts after this page's last change: every booking
    # whose latest change is at or below it is on this page.
    position = found[-1].latest if more else upper
    following = SyncToken(mode="incremental", position=int(position), issued_at=now,
                          provider_id=token.provider_id, patient_id=token.patient_id)
    if more:
        return SyncPage(ordered, next_page_token=following.encode(), next_sync_token=None)
    return SyncPage(ordered, next_page_token=None, next_sync_token=following.encode())
