"""One runner for every outbox: claim due rows with a lease, send, record each outcome, back off.

An outbox is a table of messages written in the same transaction as the change that causes
them (reminders, webhook deliveries). Each area supplies an ``Outbox``: which rows are due
(its table and statuses), what a claimed row needs (``load``), what must not change while
a message is checked and sent (``guard``), how one message is checked and rendered and
through which adapter it goes (``prepare``), and what an outcome means for the row
(``record``). ``OutboxRunner.run_once`` does the rest, batch after batch:

1. Claim (one short transaction): the oldest open rows whose ``next_attempt_at`` has come
   (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so several schedulers split the work; SQLite:
   every write transaction is ``BEGIN IMMEDIATE``) become ``sending`` under this batch's
   claim token, with ``attempts + 1`` and a lease (``next_attempt_at = lease_until``), so the
   rows of a sender that died are claimed again once the lease ends.
2. Send, one message at a time (or, on PostgreSQL, up to ``send_concurrency`` at once
   through a thread pool whose threads keep adapters of their own), each outcome recorded
   in its own short transaction that commits right after the channel accepted (or refused)
   the message (pooled: the outcomes that returned while the last ones were written go in
   one write: rows given the same values under one claim in one UPDATE, ``id = ANY``, the
   others one UPDATE per row sent in one pipeline; the next batch is claimed while the
   current one's last messages are sent). A sender killed at any instant has at most one
   message (pooled: at most the sends in flight, ``send_concurrency``, and those returned
   but not yet written) sent but not recorded; those go out again after the lease, under
   the same dedupe key, which the channel can use to drop them. A batch stopped early by an
   error gives its rows not yet attempted back at once: they never wait for the lease.

   A *guarded* outbox (reminders) has what its check reads locked (``FOR SHARE``: the
   booking, the patient) from before the check until after the send, so a cancellation or
   an opt-out waits for the sends in flight and is seen by the next ones. On PostgreSQL
   the guard is a transaction on a second connection, renewed every ``GUARD_SECONDS``,
   while the outcomes commit one by one on the first (pooled: two guards open at once on
   connections of their own, each over one chunk, never over the same row, so a change
   waits for one guard: see ``_PooledRun``); on SQLite (one writer at a time)
   each message is checked, sent and recorded in one ``BEGIN IMMEDIATE`` transaction.
   Unguarded outboxes (webhooks, whose sends may take seconds) send with no transaction
   open.

   A message is only sent while the lease has time left for it (``send_timeout_seconds``
   before its end, or half the lease when the lease is shorter than that); the rest of the
   batch is given back, as on ``request_stop`` (SIGTERM): the send in flight finishes, the
   others are released at once without counting an attempt.
3. Failures: the outbox decides what a refusal means (failed for good, or again at
   ``retry_at``, from ``service.domain.retries.backoff``). A channel (``Send.circuit``) that
   failed transiently is not tried again in the same batch: its other messages wait one
   backoff step, without counting an attempt (``Postponed``).

Adapters (SMTP, SMS gateway, HTTP) live outside the domain, in ``service.adapters``; the
scheduler hands them to the outboxes. They raise ``DeliveryError`` with a machine reason,
never an address, a number or message text.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import ARRAY, Connection, any_, bindparam, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from service.db import Database, utcnow
from service.domain.retries import backoff
from service.uow import UnitOfWork

log = logging.getLogger(__name__)


# What adapters see ------------------------------------------------------------------------


class DeliveryError(Exception):
    """A channel refused a message or could not be reached."""

    def __init__(self, reason: str, *, permanent: bool, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason[:64]
        self.permanent = permanent  # True: trying again cannot help
        self.status_code = status_code


class Adapter(Protocol):
    """A channel: ``send`` returns when the peer accepted the message (with its status code,
    if the channel has one) and raises ``DeliveryError`` otherwise; ``close`` drops any
    connection kept open across a batch."""

    name: str

    def send(self, message: Any) -> int | None: ...

    def close(self) -> None: ...


# What an outbox supplies and receives -----------------------------------------------------


@dataclass(frozen=True)
class Table:
    """An outbox table. Its mapped class has ``id``, ``status``, ``next_attempt_at``,
    ``attempts``, ``claim_token``, ``lease_until`` and ``updated_at``."""

    model: Any
    open: tuple[Any, ...]  # statuses a row may be claimed in (``sending``: a lost lease)
    sending: Any
    waiting: Any  # the status a row is given back in


class Claimed(Protocol):
    """What an outbox's claimed item carries, at least."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def token(self) -> uuid.UUID: ...

    @property
    def attempt(self) -> int: ...  # the number of this attempt (1 for the first)


@dataclass(frozen=True)
class Due:
    """A row selected for this batch: its id and the number of the attempt it is about to
    get."""

    id: uuid.UUID
    attempt: int


@dataclass(frozen=True)
class Send:
    """One message to send through ``adapter``. ``circuit``: what fails together (a channel,
    a subscription). ``refused``: the outbox refused it before it left (nothing is sent; it
    is recorded as a failed attempt). ``row``: what ``prepare`` read, handed to ``record``."""

    message: Any
    adapter: Adapter
    circuit: Hashable
    refused: DeliveryError | None = None
    row: Any = None


@dataclass(frozen=True)
class Done:
    """Settled without a send: ``outcome`` ("cancelled", "skipped", "deferred"...) with its
    ``reason``, and for a deferral the time it is due again (``until``). ``record`` writes
    it like any outcome."""

    outcome: str
    reason: str | None = None
    until: datetime | None = None
    row: Any = None


@dataclass(frozen=True)
class Attempt:
    """What one send came to."""

    channel: str  # the adapter's name
    error: str | None  # None: the channel accepted the message
    permanent: bool = False
    status_code: int | None = None
    duration_ms: int = 0
    retry_at: datetime | None = None  # when a failed attempt may be tried again (backoff)

    @property
    def accepted(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Postponed:
    """Not attempted (its circuit failed earlier in the batch): try at ``until``; the attempt
    is not counted."""

    until: datetime
    reason: str


Result = Attempt | Postponed | Done


@dataclass(frozen=True)
class RowUpdate:
    """What a result means for the outbox row: the ``values`` of its UPDATE (plain values by
    column name; the runner adds ``claim_token`` and ``lease_until`` = NULL and writes them
    only while the claim still holds), the ``outcome`` counted, and ``then``: more writes in
    the same transaction (an attempt log...), only for unguarded outboxes."""

    outcome: str
    values: dict[str, Any]
    then: Callable[[Session, Report], None] | None = None


ItemT = TypeVar("ItemT", bound=Claimed)

GUARD_SECONDS = 0.5
"""How long one guard holds its locks at most (then it is renewed for the next messages): a
cancellation waits at most about this long, plus one send."""

GUARDS_IN_FLIGHT = 2
"""Pooled sends: guards open at once, so the pool sends one guard's messages while the next
guard's are checked; their messages never share a locked row (``guard_keys``)."""


class Outbox(Protocol[ItemT]):
    name: str  # the scheduler's job id ("reminders", "webhooks")
    title: str  # the job's name
    summary: str  # the run's log line starts with it ("reminders dispatched")
    table: Table
    guarded: bool  # lock what the check reads until the send is recorded (module doc)
    poll_seconds: float
    lease_seconds: float
    batch_size: int
    send_timeout_seconds: float
    retry_base_seconds: float

    def load(self, session: Session, due: list[Due], *, token: uuid.UUID, at: datetime,
             report: Report) -> list[ItemT]:
        """In the claim's transaction: what each due row needs. Rows the outbox settles at
        once (e.g. cancelled) are left out of the result; the others are claimed."""
        ...

    def guard(self, session: Session, items: list[ItemT]) -> Any:
        """Guarded outboxes: lock what the checks of these messages read (``FOR SHARE``,
        never the outbox rows themselves, which the outcomes update meanwhile), then read
        the rows (a statement after the locks, so it sees what committed before them).
        An outbox sent through a pool may also name the rows its guard locks for an item
        (``guard_keys(item)``): two guards are then open at once, never over the same row
        (``_PooledRun``)."""
        ...

    def prepare(self, item: ItemT, guarded: Any, *, at: datetime) -> Send | Done | None:
        """Check one message again (``guarded``: what ``guard`` returned, or ``None``) and
        render it. ``None``: the row is no longer ours (cancelled, or claimed again)."""
        ...

    def record(self, item: ItemT, result: Result, *, row: Any, at: datetime) -> RowUpdate:
        """What the result means for the row (``row``: ``Send.row`` or ``Done.row``)."""
        ...


# The runner ---------------------------------------------------------------------------------


class Report:
    """How many rows of one run ended how: ``report.sent`` (a name never counted reads 0)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] += n

    def __getattr__(self, name: str) -> int:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.counts[name]

    def __str__(self) -> str:
        return ", ".join(f"{name} {n}" for name, n in self.counts.items() if n)


@dataclass
class Claim(Generic[ItemT]):
    token: uuid.UUID
    selected: int = 0  # rows selected, including those the outbox settled at once
    items: list[ItemT] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def ids(self) -> list[uuid.UUID]:
        return [item.id for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ItemT]:
        return iter(self.items)


class OutboxRunner(Generic[ItemT]):
    def __init__(self, database: Database, outbox: Outbox[ItemT], *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.database = database
        self.outbox = outbox
        self.clock = clock
        self._stopping = False  # a plain flag: safe to set from a signal handler
        self._lanes = threading.local()  # each sending thread's adapters (pooled sends)
        model, table = outbox.table.model, outbox.table
        # One outcome: its SET clause comes from the parameters (RowUpdate.values), so the
        # statement is built once and compiled once per set of columns.
        self._outcome = update(model).where(
            model.id == bindparam("outbox_row"), model.claim_token == bindparam("outbox_claim"),
            model.status == table.sending)
        # Several rows, the same values (PostgreSQL): their ids as one array parameter.
        self._outcomes = update(model).where(
            model.id == any_(bindparam("outbox_rows", type_=ARRAY(model.id.type))),
            model.claim_token == bindparam("outbox_claim"), model.status == table.sending)

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self.database.write_sessions, dialect=self.database.dialect)

    def _among(self, ids: list[uuid.UUID]) -> Any:
        """The outbox row is one of ``ids``: on PostgreSQL one array parameter (``= ANY``),
        the same statement text for any number of rows (no expanding ``IN`` of one
        parameter per row to render, convert and send); elsewhere ``IN``."""
        model = self.outbox.table.model
        if self.database.dialect == "postgresql":
            return model.id == any_(bindparam(None, ids, type_=ARRAY(model.id.type)))
        return model.id.in_(ids)

    def request_stop(self) -> None:
        """Finish the send in flight, give the rest of the batch back, return."""
        self._stopping = True

    def run_once(self, now: datetime | None = None) -> Report:
        """Send everything due (``now``: a fixed clock, for tests)."""
        report = Report()
        batch = max(1, self.outbox.batch_size)
        adapters: dict[int, Adapter] = {}  # used in this run, closed at its end
        workers = max(1, getattr(self.outbox, "send_concurrency", 1))
        pool = ThreadPoolExecutor(workers, thread_name_prefix=f"{self.outbox.name}-send") if (
            workers > 1 and self.database.dialect == "postgresql") else None
        try:
            if pool is not None:
                _PooledRun(self, pool, workers, now=now, report=report, adapters=adapters,
                           batch=batch).run()
            while pool is None and not self._stopping:
                claim = self.claim(now or self.clock(), limit=batch, report=report)
                if not claim.selected:
                    break  # nothing due (not "fewer than a batch": SKIP LOCKED passes over
                    # rows another scheduler is claiming, so a short claim proves nothing)
                if claim.items:
                    self._send_claimed(claim, now, report, adapters)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            for adapter in list(adapters.values()):
                adapter.close()
        if any(report.counts.values()):
            log.info("%s: %s", self.outbox.summary, report,
                     extra={"job": self.outbox.name, "outcome": dict(report.counts)})
        return report

    def claim(self, at: datetime, *, limit: int, report: Report | None = None) -> Claim[ItemT]:
        outbox, table = self.outbox, self.outbox.table
        model = table.model
        claim: Claim[ItemT] = Claim(token=uuid.uuid4())
        lease_until = at + timedelta(seconds=outbox.lease_seconds)
        with self._uow() as uow:
            session = uow.session
            due = [Due(id=row.id, attempt=row.attempts + 1) for row in session.execute(
                select(model.id, model.attempts)
                .where(model.status.in_(table.open), model.next_attempt_at <= at)
                .order_by(model.next_attempt_at, model.id)
                .limit(limit)
                .with_for_update(skip_locked=True))]
            claim.selected = len(due)
            if not due:
                return claim
            items = outbox.load(session, due, token=claim.token, at=at,
                                report=report if report is not None else Report())
            if items:
                session.execute(
                    update(model).where(self._among([item.id for item in items]))
                    .values(status=table.sending, claim_token=claim.token,
                            lease_until=lease_until, next_attempt_at=lease_until,
                            attempts=model.attempts + 1, updated_at=at)
                    .execution_options(synchronize_session=False))
            uow.commit()
        claim.items = items
        claim.started = time.monotonic()
        if report is not None:
            report.add("claimed", len(items))
        return claim

    def _send_deadline(self, claim: Claim[ItemT]) -> float:
        """The last moment a send may start and still end within the lease."""
        lease, timeout = self.outbox.lease_seconds, self.outbox.send_timeout_seconds
        return claim.started + (lease - timeout if lease > timeout else lease / 2)

    def _send_claimed(self, claim: Claim[ItemT], now: datetime | None, report: Report,
                      adapters: dict[int, Adapter]) -> None:
        """Send a claimed batch. Whatever stops it early (SIGTERM, the lease running out, an
        error: a lock or statement timeout, a lost connection) gives the rows not yet
        attempted back at once, so none of them waits for its lease to end; only a message
        whose send may have started keeps its lease (it goes out again after it, under the
        same dedupe key)."""
        pending = list(claim.items)
        try:
            self._send_one_by_one(claim, pending, now, report, adapters)
        finally:
            self._give_back(claim, pending, now, report)

    def _give_back(self, claim: Claim[ItemT], pending: list[ItemT], now: datetime | None,
                   report: Report) -> None:
        """Stopping, the lease running out, or an error: give the rows not attempted back."""
        if not pending:
            return
        try:
            report.add("released", self._release(claim, pending, when=now or self.clock()))
        except Exception as failed:  # noqa: BLE001 - the lease takes them back then
            log.warning("%s: could not give %d claimed rows back (%s); they are claimed again "
                        "when their lease ends", self.outbox.name, len(pending),
                        type(failed).__name__)

    def _send_one_by_one(self, claim: Claim[ItemT], pending: list[ItemT],
                         now: datetime | None, report: Report,
                         adapters: dict[int, Adapter]) -> None:
        deadline = self._send_deadline(claim)

        def must_stop() -> bool:
            return self._stopping or time.monotonic() > deadline

        down: set[Hashable] = set()  # circuits that failed in this batch: do not hammer them
        with self._sessions() as (guards, outcomes):
            shared = guards is outcomes  # SQLite: check, send and record in one transaction
            while pending and not must_stop():
                chunk = pending[:1] if shared and self.outbox.guarded else list(pending)
                with self._guard(guards, chunk) as (guard, guarded):
                    started = time.monotonic()
                    for item in chunk:
                        if must_stop():
                            break
                        pending.remove(item)
                        at = now or self.clock()
                        step = self.outbox.prepare(item, guarded, at=at)
                        if step is not None:
                            result = (step if isinstance(step, Done)
                                      else self._attempt(item, step, at, now, adapters, down))
                            self._record(guard if shared else None, outcomes, item, result,
                                         row=step.row, at=now or self.clock(), report=report)
                        if guard is not None and time.monotonic() - started > GUARD_SECONDS:
                            break  # renew the guard: a cancellation waiting gets its turn

    def _record_many(self, outcomes: sessionmaker[Session],
                     results: list[tuple[ItemT, Result, Any]], *, at: datetime,
                     report: Report) -> None:
        """Record several results on the outcomes' connection (no guard's transaction), each
        row updated only while its claim holds, as ``_record`` does one at a time. Rows given
        the same values under the same claim (the common case: sent, by one channel) go in one
        statement (PostgreSQL: ``id = ANY(:rows)``); the others of one kind of outcome (the
        same columns) in one statement executed for each row (psycopg sends them in one
        pipeline)."""
        groups: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
        for item, result, row in results:
            change = self.outbox.record(item, result, row=row, at=at)
            if change.then is not None:  # more writes of its own: one transaction each
                self._write(None, outcomes, item, change, report=report)
                continue
            groups.setdefault((change.outcome, tuple(sorted(change.values))), []).append(
                {"outbox_row": item.id, "outbox_claim": item.token, "claim_token": None,
                 "lease_until": None, **change.values})
        if not groups:
            return
        with UnitOfWork(outcomes, dialect=self.database.dialect) as uow:
            connection = uow.session.connection()
            recorded = []
            for (outcome, _columns), rows in groups.items():
                alike, each = (_alike(rows) if connection.dialect.name == "postgresql"
                               else ([], rows))
                for together in alike:
                    recorded.append((outcome, connection.execute(
                        self._outcomes, together).rowcount))
                if each:
                    recorded.append((outcome, connection.execute(self._outcome, each).rowcount))
            uow.commit()
        for outcome, ours in recorded:
            report.add(outcome, ours)

    def _lane_adapter(self, adapter: Adapter, adapters: dict[int, Adapter]) -> Adapter:
        """This sending thread's own copy of an adapter (made before it ever connects)."""
        lanes: dict[int, Adapter] = self._lanes.__dict__.setdefault("adapters", {})
        own = lanes.get(id(adapter))
        if own is None:
            own = lanes[id(adapter)] = copy.copy(adapter)
            adapters[id(own)] = own  # closed at the end of the run
        return own

    @contextmanager
    def _sessions(self) -> Iterator[tuple[sessionmaker[Session], sessionmaker[Session]]]:
        """Sessions for the guards and for the outcomes, on connections kept for the batch
        (one pool checkout, not one per message).

        PostgreSQL, guarded outbox: two connections, so each outcome commits while the
        guard's locks are still held on the other. The outcomes' commits do not wait for
        the WAL flush (``synchronous_commit = off``, reset before the connection goes back
        to the pool): a flush per message would cap a sender at a few hundred messages a
        second. A database crash can then undo the last fraction of a second of outcomes
        (never a claim, which commits synchronously): those rows are still ``sending``
        under their lease and go out again after it; none is lost, and any later
        synchronous commit (an API write) makes them durable too.
        SQLite (one writer at a time), or nothing to guard: one connection."""
        with self.database.writer.connect() as first:
            one = sessionmaker(bind=first, expire_on_commit=False)
            if first.dialect.name != "postgresql":
                yield one, one
                return
            if not self.outbox.guarded:
                with _asynchronous_commits(first):
                    yield one, one
                return
            with self.database.writer.connect() as second, _asynchronous_commits(second):
                # A guarded outbox's outcome is one UPDATE (no ``then``): it commits alone.
                second.execution_options(isolation_level="AUTOCOMMIT")
                yield one, sessionmaker(bind=second, expire_on_commit=False)

    @contextmanager
    def _pooled_sessions(self, guards: int) -> Iterator[
            tuple[list[sessionmaker[Session]], sessionmaker[Session]]]:
        """PostgreSQL, pooled sends: ``guards`` connections for the guards in flight at once
        and one for the outcomes (asynchronous commits, as in ``_sessions``); an unguarded
        outbox has one connection for both."""
        with ExitStack() as stack:
            first = stack.enter_context(self.database.writer.connect())
            stack.enter_context(_asynchronous_commits(first))
            outcomes = sessionmaker(bind=first, expire_on_commit=False)
            if not self.outbox.guarded:
                yield [outcomes] * guards, outcomes
                return
            first.execution_options(isolation_level="AUTOCOMMIT")  # one UPDATE per commit
            yield [sessionmaker(bind=stack.enter_context(self.database.writer.connect()),
                                expire_on_commit=False) for _ in range(guards)], outcomes

    @contextmanager
    def _guard(self, sessions: sessionmaker[Session],
               items: list[ItemT]) -> Iterator[tuple[UnitOfWork | None, Any]]:
        """The guard's transaction (none for an unguarded outbox); it writes nothing itself
        and ends (releasing its locks) when the block does."""
        if not self.outbox.guarded:
            yield None, None
            return
        with UnitOfWork(sessions, dialect=self.database.dialect) as uow:
            yield uow, self.outbox.guard(uow.session, items)

    def _record(self, guard: UnitOfWork | None, outcomes: sessionmaker[Session], item: ItemT,
                result: Result, *, row: Any, at: datetime, report: Report) -> None:
        """Record one result and commit it: in the guard's transaction when they share the
        connection (SQLite), otherwise in a transaction of its own."""
        self._write(guard, outcomes, item, self.outbox.record(item, result, row=row, at=at),
                    report=report)

    def _write(self, guard: UnitOfWork | None, outcomes: sessionmaker[Session], item: ItemT,
               change: RowUpdate, *, report: Report) -> None:
        if change.then is not None and self.outbox.guarded:
            raise ValueError("a guarded outbox records an outcome as one UPDATE (no then)")
        parameters = {"outbox_row": item.id, "outbox_claim": item.token, "claim_token": None,
                      "lease_until": None, **change.values}
        with nullcontext(guard) if guard else UnitOfWork(
                outcomes, dialect=self.database.dialect) as uow:
            ours = bool(uow.session.connection().execute(self._outcome, parameters).rowcount)
            if ours and change.then is not None:
                change.then(uow.session, report)
            uow.commit()
        if ours:
            report.add(change.outcome)

    def _attempt(self, item: ItemT, step: Send, at: datetime, now: datetime | None,
                 adapters: dict[int, Adapter], down: set[Hashable], *,
                 lane: bool = False) -> Attempt | Postponed:
        base = self.outbox.retry_base_seconds
        if step.circuit in down:
            return Postponed(until=at + backoff(1, base), reason="channel_unavailable")
        if lane:
            adapter = self._lane_adapter(step.adapter, adapters)
        else:
            adapter = step.adapter
            adapters[id(adapter)] = adapter
        started = time.monotonic()
        status_code: int | None = None
        error = step.refused
        if error is None:
            try:
                status_code = adapter.send(step.message)
            except DeliveryError as refused:
                error = refused
            except Exception as unexpected:  # noqa: BLE001 - one bad send must not stop the batch
                log.error("%s %s: unexpected %s from the %s channel", self.outbox.name,
                          item.id, type(unexpected).__name__, adapter.name)
                adapter.close()
                error = DeliveryError(f"{adapter.name}_{type(unexpected).__name__}",
                                      permanent=False)
        duration_ms = int((time.monotonic() - started) * 1000)
        if error is None:
            return Attempt(channel=adapter.name, error=None, status_code=status_code,
                           duration_ms=duration_ms)
        if not error.permanent:
            down.add(step.circuit)
        return Attempt(channel=adapter.name, error=error.reason, permanent=error.permanent,
                       status_code=error.status_code, duration_ms=duration_ms,
                       retry_at=(now or self.clock()) + backoff(item.attempt, base))

    def _release(self, claim: Claim[ItemT], items: list[ItemT], *, when: datetime) -> int:
        """Give claimed, unsent rows back at once (the attempt is not counted)."""
        if not items:
            return 0
        table = self.outbox.table
        model = table.model
        with self._uow() as uow:
            result = uow.session.execute(
                update(model)
                .where(self._among([item.id for item in items]),
                       model.claim_token == claim.token, model.status == table.sending)
                .values(status=table.waiting, attempts=model.attempts - 1, claim_token=None,
                        lease_until=None, next_attempt_at=when)
                .execution_options(synchronize_session=False))
            uow.commit()
            return result.rowcount or 0


@dataclass
class _Batch(Generic[ItemT]):
    """A claim sent through the pool: its rows not yet taken into a guard, the last moment
    one of them may be sent, the circuits that failed in it."""

    claim: Claim[ItemT]
    pending: list[ItemT]
    deadline: float
    down: set[Hashable] = field(default_factory=set)


@dataclass
class _InFlight(Generic[ItemT]):
    """One guard's messages in the pool: the guard (ended by ``stack``), the connection it
    holds, what it locks (``guard_keys``), its results not yet recorded, and whether more
    may still be added (``checking``)."""

    batch: _Batch[ItemT]
    sessions: sessionmaker[Session]
    keys: set[Hashable]
    stack: ExitStack = field(default_factory=ExitStack)
    sending: dict[Future[Any], tuple[ItemT, Any]] = field(default_factory=dict)
    checking: bool = True


class _PooledRun(Generic[ItemT]):
    """``run_once`` on PostgreSQL with ``send_concurrency`` > 1: up to that many sends in
    flight, each thread with adapters of its own (their connections are not shared).

    This thread claims, and checks each chunk of a claim's messages under one guard before it
    hands them to the pool; a recorder thread of the run records each result (and commits
    it) as it returns, whatever has returned since its last write in one write, so an
    accepted message waits for its outcome no longer than one write (a SIGKILL sends again
    only the sends in flight and those the write under way holds). A guard ends once its
    chunk's results are all recorded.

    Two guards are open at once (``GUARDS_IN_FLIGHT``), so the next chunk is checked while
    the pool sends the last one, and the next batch is claimed before the current one runs
    out: the pool does not wait for a guard, a check or a claim. Two guards in flight never
    hold the same row (the outbox's ``guard_keys``: a message whose booking or patient the
    other guard holds waits for a later chunk), so a cancellation waits for one guard, as
    with one at a time. An outbox without ``guard_keys`` has one guard at a time."""

    def __init__(self, runner: OutboxRunner[ItemT], pool: ThreadPoolExecutor, workers: int,
                 *, now: datetime | None, report: Report, adapters: dict[int, Adapter],
                 batch: int) -> None:
        self.runner = runner
        self.outbox = runner.outbox
        self.pool = pool
        self.now = now
        self.report = report
        self.adapters = adapters
        self.batch = batch
        keys_of: Callable[[ItemT], Iterable[Hashable]] | None = getattr(
            self.outbox, "guard_keys", None)
        self.keys_of = keys_of
        self.lanes = GUARDS_IN_FLIGHT if keys_of is not None or not self.outbox.guarded else 1
        # Messages a guard checks: with one guard at a time, 4 x the pool (so the pool stays
        # busy while they are checked); with two, 2 x the pool each (the same lock time).
        # Evened out over a batch (100 in chunks of 32 would leave a chunk of 4 holding a
        # guard of its own while the pool runs short): four chunks of 25.
        chunks = -(-batch // (workers * 4 // self.lanes))
        self.per_guard = max(1, -(-batch // chunks))
        self.batches: list[_Batch[ItemT]] = []
        self.flights: list[_InFlight[ItemT]] = []
        self.drained = False  # a claim found nothing due
        # The recorder: results in, guards whose results are all recorded out.
        self.lock = threading.Lock()
        self.returned: queue.SimpleQueue[tuple[Future[Any], _InFlight[ItemT]] | None] = (
            queue.SimpleQueue())
        self.finished: queue.SimpleQueue[_InFlight[ItemT] | None] = queue.SimpleQueue()
        self.failure: BaseException | None = None  # a send that failed unexpectedly
        self.broken: BaseException | None = None  # a write failed: no more writes

    def at(self) -> datetime:
        return self.now or self.runner.clock()

    def run(self) -> None:
        with self.runner._pooled_sessions(self.lanes) as (guards, outcomes):
            recorder = threading.Thread(target=self._record, args=(outcomes,), daemon=True,
                                        name=f"{self.outbox.name}-record")
            recorder.start()
            free = list(guards)
            try:
                while True:
                    self._raise_failure()
                    self._give_back_expired()
                    if (not self.drained and not self.runner._stopping
                            and self._unguarded() < self.per_guard):
                        self._claim()
                    while free and not self.runner._stopping:
                        if not self._open(free[-1]):
                            break
                        free.pop()
                    if not self.flights:
                        if self.drained or self.runner._stopping:
                            break
                        continue
                    free += self._end(self.finished.get())
            finally:
                try:
                    self._finish()
                finally:
                    self.returned.put(None)
                    recorder.join()
            self._raise_failure()

    def _raise_failure(self) -> None:
        failure = self.broken or self.failure
        if failure is not None:
            raise failure

    def _unguarded(self) -> int:
        return sum(len(batch.pending) for batch in self.batches)

    def _must_stop(self, batch: _Batch[ItemT]) -> bool:
        return self.runner._stopping or time.monotonic() > batch.deadline

    def _claim(self) -> None:
        claim = self.runner.claim(self.at(), limit=self.batch, report=self.report)
        if not claim.selected:
            self.drained = True  # nothing due (a short claim proves nothing: SKIP LOCKED)
        elif claim.items:
            self.batches.append(_Batch(claim, list(claim.items),
                                       self.runner._send_deadline(claim)))

    def _give_back_expired(self) -> None:
        """A batch whose lease is running out gives its rows not yet taken back at once; a
        batch with nothing left to send or record is done."""
        for batch in self.batches:
            if batch.pending and time.monotonic() > batch.deadline:
                self.runner._give_back(batch.claim, batch.pending, self.now, self.report)
                batch.pending.clear()
        busy = {id(flight.batch) for flight in self.flights}
        self.batches = [batch for batch in self.batches
                        if batch.pending or id(batch) in busy]

    def _open(self, sessions: sessionmaker[Session]) -> bool:
        """Take the next chunk (the oldest batch first) under a guard on ``sessions``, check
        its messages and hand them to the pool; False when there is none to take."""
        busy: set[Hashable] = set()
        for flight in self.flights:
            busy |= flight.keys
        for batch in self.batches:
            if not batch.pending or self._must_stop(batch):
                continue
            items: list[ItemT] = []
            keys: set[Hashable] = set()
            for item in batch.pending:
                own = set(self.keys_of(item)) if self.keys_of is not None else set()
                if own & busy:
                    continue  # the other guard holds its rows: a later chunk takes it
                items.append(item)
                keys |= own
                if len(items) == self.per_guard:
                    break
            if items:
                self._start(batch, sessions, items, keys)
                return True
        return False

    def _start(self, batch: _Batch[ItemT], sessions: sessionmaker[Session],
               items: list[ItemT], keys: set[Hashable]) -> None:
        flight = _InFlight(batch, sessions, keys)
        self.flights.append(flight)  # from here on, ``_finish`` waits for it and ends it
        try:
            _guard, guarded = flight.stack.enter_context(self.runner._guard(sessions, items))
            for item in items:
                if self._must_stop(batch) or self.broken is not None:
                    break
                batch.pending.remove(item)
                at = self.at()
                step = self.outbox.prepare(item, guarded, at=at)
                if isinstance(step, Done):
                    settled: Future[Result] = Future()
                    settled.set_result(step)
                    self._hand_over(flight, settled, item, step.row)
                elif step is not None:
                    self._hand_over(flight, self.pool.submit(
                        self.runner._attempt, item, step, at, self.now, self.adapters,
                        batch.down, lane=True), item, step.row)
        finally:
            self._checked(flight)

    def _hand_over(self, flight: _InFlight[ItemT], future: Future[Any], item: ItemT,
                   row: Any) -> None:
        """The recorder records ``future``'s result when it returns."""
        with self.lock:
            flight.sending[future] = (item, row)
        future.add_done_callback(lambda done: self.returned.put((done, flight)))

    def _checked(self, flight: _InFlight[ItemT]) -> None:
        """No more messages for this guard: it ends once its results are recorded."""
        with self.lock:
            flight.checking = False
            if not flight.sending:
                self.finished.put(flight)

    def _end(self, flight: _InFlight[ItemT] | None) -> list[sessionmaker[Session]]:
        """End a guard whose results are all recorded (None: the recorder failed); its
        connection is free again."""
        if flight is None:
            self._raise_failure()
            return []
        self.flights.remove(flight)
        flight.stack.close()
        return [flight.sessions]

    def _record(self, outcomes: sessionmaker[Session]) -> None:
        """The recorder thread: whatever has returned since the last write, in one write."""
        stopping = False
        while not stopping:
            returned = [self.returned.get()]
            while True:
                try:
                    returned.append(self.returned.get_nowait())
                except queue.Empty:
                    break
            results = []
            for entry in returned:
                if entry is None:
                    stopping = True
                    continue
                future, flight = entry
                item, row = flight.sending[future]
                try:
                    results.append((item, future.result(), row))
                except Exception as error:  # noqa: BLE001 - raised by the run, once recorded
                    self.failure = self.failure or error
            if results and self.broken is None:
                try:
                    self.runner._record_many(outcomes, results, at=self.at(),
                                             report=self.report)
                except Exception as error:  # noqa: BLE001 - raised by the run
                    self.broken = error  # the rows not recorded keep their lease
                    self.finished.put(None)
            with self.lock:
                for entry in returned:
                    if entry is not None:
                        future, flight = entry
                        del flight.sending[future]
                        if not flight.sending and not flight.checking:
                            self.finished.put(flight)

    def _finish(self) -> None:
        """Whatever ends the run (nothing due, SIGTERM, an error): the results of the sends
        already started are recorded and their guards ended, the rows not yet attempted
        given back."""
        try:
            for flight in self.flights:
                if flight.checking:
                    self._checked(flight)
            while self.flights:
                finished = self.finished.get()
                if finished is not None:
                    self.flights.remove(finished)
                    finished.stack.close()
        finally:
            for batch in self.batches:
                self.runner._give_back(batch.claim, batch.pending, self.now, self.report)
                batch.pending.clear()


@contextmanager
def _asynchronous_commits(connection: Connection) -> Iterator[None]:
    """PostgreSQL: commits on ``connection`` do not wait for the WAL flush while the block
    runs (see ``OutboxRunner._sessions``); reset before the connection goes back to the pool."""
    connection.exec_driver_sql("SET synchronous_commit = off")
    connection.commit()
    try:
        yield
    finally:
        try:
            connection.rollback()
            connection.exec_driver_sql("RESET synchronous_commit")
            connection.commit()
        except DBAPIError:  # a broken connection: it never goes back into the pool
            connection.invalidate()


def _alike(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Outcome parameters (``_record_many``) joined where rows share their claim and every
    value: one set of parameters with ``outbox_rows`` (the ids) for each such group of two or
    more, and the rest as they were."""
    together: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    each: list[dict[str, Any]] = []
    for row in rows:
        try:
            key = tuple(sorted((name, value) for name, value in row.items()
                               if name != "outbox_row"))
            hash(key)
        except TypeError:  # a value that cannot be compared as a whole: on its own
            each.append(row)
            continue
        together.setdefault(key, []).append(row)
    joined = []
    for group in together.values():
        if len(group) == 1:
            each.append(group[0])
            continue
        first = {name: value for name, value in group[0].items() if name != "outbox_row"}
        joined.append({**first, "outbox_rows": [row["outbox_row"] for row in group]})
    return joined, each
