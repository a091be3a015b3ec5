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
   one write, one UPDATE per row sent in one pipeline). A sender killed at any instant has
   at most one message (pooled: at most one guard's chunk) sent but not recorded; those go
   out again after the lease, under the same dedupe key, which the channel can use to drop
   them. A batch stopped early by an
   error gives its rows not yet attempted back at once: they never wait for the lease.

   A *guarded* outbox (reminders) has what its check reads locked (``FOR SHARE``: the
   booking, the patient) from before the check until after the send, so a cancellation or
   an opt-out waits for the sends in flight and is seen by the next ones. On PostgreSQL
   the guard is a transaction on a second connection, renewed every ``GUARD_SECONDS``,
   while the outcomes commit one by one on the first; on SQLite (one writer at a time)
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
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection, bindparam, select, update
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
        the rows (a statement after the locks, so it sees what committed before them)."""
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

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self.database.write_sessions, dialect=self.database.dialect)

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
            while not self._stopping:
                claim = self.claim(now or self.clock(), limit=batch, report=report)
                if not claim.selected:
                    break  # nothing due (not "fewer than a batch": SKIP LOCKED passes over
                    # rows another scheduler is claiming, so a short claim proves nothing)
                if claim.items:
                    self._send_claimed(claim, now, report, adapters, pool)
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
                    update(model).where(model.id.in_([item.id for item in items]))
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
                      adapters: dict[int, Adapter],
                      pool: ThreadPoolExecutor | None = None) -> None:
        """Send a claimed batch. Whatever stops it early (SIGTERM, the lease running out, an
        error: a lock or statement timeout, a lost connection) gives the rows not yet
        attempted back at once, so none of them waits for its lease to end; only a message
        whose send may have started keeps its lease (it goes out again after it, under the
        same dedupe key)."""
        pending = list(claim.items)
        try:
            if pool is None:
                self._send_one_by_one(claim, pending, now, report, adapters)
            else:
                self._send_pooled(claim, pending, now, report, adapters, pool)
        finally:
            if pending:  # stopping, the lease running out, or an error: give the rest back
                try:
                    report.add("released",
                               self._release(claim, pending, when=now or self.clock()))
                except Exception as failed:  # noqa: BLE001 - the lease takes them back then
                    log.warning("%s: could not give %d claimed rows back (%s); they are "
                                "claimed again when their lease ends", self.outbox.name,
                                len(pending), type(failed).__name__)

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

    def _send_pooled(self, claim: Claim[ItemT], pending: list[ItemT], now: datetime | None,
                     report: Report, adapters: dict[int, Adapter],
                     pool: ThreadPoolExecutor) -> None:
        """PostgreSQL, ``send_concurrency`` > 1: up to that many sends in flight, each thread
        with adapters of its own (their connections are not shared). Checks and outcomes stay
        on this thread: a chunk of messages is checked under one guard, sent through the
        pool, and each outcome is recorded (and committed) as its send returns; the guard
        ends when the chunk's sends have."""
        deadline = self._send_deadline(claim)

        def must_stop() -> bool:
            return self._stopping or time.monotonic() > deadline

        down: set[Hashable] = set()
        per_guard = pool._max_workers * 4  # noqa: SLF001 - the pool's own size
        with self._sessions() as (guards, outcomes):
            while pending and not must_stop():
                chunk = list(pending[:per_guard])
                with self._guard(guards, chunk) as (_guard, guarded):
                    sending: dict[Future[Attempt | Postponed], tuple[ItemT, Send]] = {}
                    try:
                        for item in chunk:
                            if must_stop():
                                break
                            pending.remove(item)
                            at = now or self.clock()
                            step = self.outbox.prepare(item, guarded, at=at)
                            if isinstance(step, Done):
                                self._record(None, outcomes, item, step, row=step.row,
                                             at=now or self.clock(), report=report)
                            elif step is not None:
                                sending[pool.submit(self._attempt, item, step, at, now,
                                                    adapters, down, lane=True)] = (item, step)
                    finally:  # the sends already started are recorded, even on an error
                        self._record_as_they_return(outcomes, sending, now, report)

    def _record_as_they_return(
            self, outcomes: sessionmaker[Session],
            sending: dict[Future[Attempt | Postponed], tuple[ItemT, Send]],
            now: datetime | None, report: Report) -> None:
        """Record the pooled sends' outcomes as they return: whatever has returned since the
        last write goes in one write (one statement per kind of outcome, its rows sent
        together), so a sender that records slower than its pool sends writes more rows at
        a time instead of falling behind; each row is still its own outcome, under its
        claim. A send that failed unexpectedly is raised once the others are recorded."""
        waiting: set[Future[Attempt | Postponed]] = set(sending)
        failure: BaseException | None = None
        while waiting:
            returned, waiting = wait(waiting, return_when=FIRST_COMPLETED)
            results = []
            for future in returned:
                item, step = sending[future]
                try:
                    results.append((item, future.result(), step.row))
                except Exception as error:  # noqa: BLE001 - raised after the others
                    failure = failure or error
            self._record_many(outcomes, results, at=now or self.clock(), report=report)
        if failure is not None:
            raise failure

    def _record_many(self, outcomes: sessionmaker[Session],
                     results: list[tuple[ItemT, Result, Any]], *, at: datetime,
                     report: Report) -> None:
        """Record several results on the outcomes' connection (no guard's transaction): the
        rows of one kind of outcome (the same outcome, the same columns) in one statement
        executed for each row (psycopg sends them in one pipeline), each row updated only
        while its claim holds, as ``_record`` does one at a time."""
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
            recorded = [(outcome, connection.execute(self._outcome, rows).rowcount)
                        for (outcome, _columns), rows in groups.items()]
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
                .where(model.id.in_([item.id for item in items]),
                       model.claim_token == claim.token, model.status == table.sending)
                .values(status=table.waiting, attempts=model.attempts - 1, claim_token=None,
                        lease_until=None, next_attempt_at=when)
                .execution_options(synchronize_session=False))
            uow.commit()
            return result.rowcount or 0


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
