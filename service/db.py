"""Database wiring: the declarative base, UTC time columns, engines and sessions.

SQLite (the embedded default) gets WAL, a busy timeout, foreign keys and ``BEGIN IMMEDIATE``
for every write transaction, so check-then-insert sequences cannot interleave. PostgreSQL is
reached through psycopg 3. Reads may go to a replica (``DATABASE_REPLICA_URL``).

A database that is down, refusing, hung or overloaded costs a request seconds, never minutes
(``DatabaseTimeouts``): a connect timeout; server-side statement and lock timeouts; a pool
timeout; and, for what the server cannot enforce because it no longer answers at all (a
paused or hung server, a black-holed network), a client-side bound on every wait for its
answer (``BoundedConnection``). ``is_unavailable`` tells such failures from bugs; the HTTP
layer answers them with 503 ``database_unavailable``.
"""

from __future__ import annotations

import select
import sqlite3
import time
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import ExecStatus, TransactionStatus
from sqlalchemy import (
    Connection,
    DateTime,
    Dialect,
    Engine,
    Enum,
    Executable,
    MetaData,
    Table,
    create_engine,
    event,
    make_url,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """An instant: stored as UTC, always returned timezone-aware in UTC.

    Naive datetimes are refused: a time without an offset is ambiguous in a clinic whose
    patients live in zones with and without DST.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given for a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver-less URL is configured."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


ANSWER_GRACE_SECONDS = 1.0
"""How much longer than the server's statement timeout the client waits for an answer."""


@dataclass(frozen=True)
class DatabaseTimeouts:
    """How long the service waits on the database before it gives up (seconds).

    ``connect``: to open a connection (libpq's unit: whole seconds, at least 2); also the
    bound on the liveness check of a pooled connection before it is used (pre-ping).
    ``statement`` and ``lock``: PostgreSQL's statement_timeout and lock_timeout. ``pool``:
    to get a connection from an exhausted pool. ``sqlite_busy``: SQLite's busy timeout (how
    long a writer waits for the write lock). ``readiness``: the whole of ``/readyz``.
    """

    connect: int = 3
    statement: float = 5.0
    lock: float = 3.0
    pool: float = 3.0
    sqlite_busy: float = 5.0
    readiness: int = 2

    @property
    def answer(self) -> float:
        """The client-side bound on any one wait for the server's answer: the statement
        timeout the server enforces, plus a grace for its error to arrive."""
        return self.statement + ANSWER_GRACE_SECONDS

    @classmethod
    def from_settings(cls, settings: Any) -> DatabaseTimeouts:
        return cls(connect=settings.database_connect_timeout_seconds,
                   statement=settings.database_statement_timeout_seconds,
                   lock=settings.database_lock_timeout_seconds,
                   pool=settings.database_pool_timeout_seconds,
                   sqlite_busy=settings.sqlite_busy_timeout_seconds,
                   readiness=settings.readiness_timeout_seconds)


class DatabaseNotAnswering(psycopg.OperationalError):
    """The server took longer than the client-side bound to answer; the connection was
    closed (its state is unknown), which SQLAlchemy treats as a disconnect."""


class _Description(Sequence[psycopg.Column]):
    """A result's ``cursor.description``, its ``Column`` objects made when first read.
    SQLAlchemy asks for the description of every result, but for a statement it has run
    before (its result metadata cached) only checks that there is one: psycopg would
    make a ``Column`` per column each time (38 for a booking's read)."""

    def __init__(self, cursor: psycopg.Cursor[Any], result: Any) -> None:
        self._cursor = cursor
        self._result = result  # the result described (the cursor may move on)
        self._count: int = result.nfields
        self._columns: list[psycopg.Column] | None = None

    def _made(self) -> list[psycopg.Column]:
        if self._columns is None:
            source = _ResultSource(self._result, self._cursor)
            self._columns = [psycopg.Column(source, index)  # type: ignore[arg-type]
                             for index in range(self._count)]
        return self._columns

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> Any:
        return self._made()[index]

    def __iter__(self) -> Any:
        return iter(self._made())


class _ResultSource:
    """What ``psycopg.Column`` reads of a cursor, for one result of it."""

    def __init__(self, result: Any, cursor: psycopg.Cursor[Any]) -> None:
        self.pgresult = result
        self.adapters = cursor.adapters
        self._encoding = cursor._encoding


_DESCRIBED = frozenset({ExecStatus.TUPLES_OK, ExecStatus.SINGLE_TUPLE, ExecStatus.TUPLES_CHUNK})


class DescribedLazily(psycopg.Cursor):  # type: ignore[type-arg]
    """psycopg's cursor, whose ``description`` makes its columns only when read."""

    @property
    def description(self) -> Sequence[psycopg.Column] | None:  # type: ignore[override]
        result = self.pgresult
        if result and (result.nfields or result.status in _DESCRIBED):
            return _Description(self, result)
        return None


class EndsPipeline(DescribedLazily):
    """The cursor of a connection in a pipelined transaction (``BoundedConnection.
    begin_pipelined``; its cursors are plain ``DescribedLazily`` otherwise, at no cost):
    only one that ``queues`` (a ``DirectStatement``'s) sends its statement into the
    pipeline; any other statement (SQLAlchemy's own execution, which reads its result's
    description and row count as soon as it is sent) ends the pipeline first
    (``end_pipeline``: an error of a statement sent before it is raised here, where the
    caller's error handling expects the driver's errors) and runs as it would without."""

    queues = False

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        self._leave_pipeline()
        return super().execute(query, params, **kwargs)

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self._leave_pipeline()
        super().executemany(query, params_seq, **kwargs)

    def _leave_pipeline(self) -> None:
        connection = self._conn
        if (not self.queues and isinstance(connection, BoundedConnection)
                and connection.pipelined):
            connection.end_pipeline()


class BoundedConnection(psycopg.Connection):  # type: ignore[type-arg]
    """A psycopg connection that waits at most ``answer_timeout`` seconds for the server.

    The server enforces statement_timeout and lock_timeout only while it runs: a paused or
    hung server (or a network that drops packets) would leave a request waiting until
    gunicorn kills its worker. psycopg waits for the server in one place, ``wait``, which
    takes a timeout; past it the connection is closed and ``DatabaseNotAnswering`` raised.
    """

    answer_timeout: float | None = None
    returned_at: float | None = None  # time.monotonic() when last returned to the pool
    # A pipelined transaction (``begin_pipelined``): psycopg's pipeline, while it is open,
    # and whether this connection is in the driver's autocommit for that transaction only.
    _pipeline_scope: AbstractContextManager[Any] | None = None
    _autocommit_for_transaction = False

    def wait(self, gen, interval=None, timeout=None):  # type: ignore[no-untyped-def,override]
        limit = timeout if timeout is not None else self.answer_timeout
        extra = {} if interval is None else {"interval": interval}
        try:
            return super().wait(gen, timeout=limit, **extra)
        except pg_errors._WaitTimeout:  # psycopg's own (private) timeout signal
            self.close()
            raise DatabaseNotAnswering(
                f"the database did not answer within {limit:g} s; connection closed"
            ) from None

    # A pipelined transaction ------------------------------------------------------------
    #
    # Without it, every statement waits for the server's answer before the next is sent,
    # and psycopg sends the transaction's BEGIN on its own first: a round trip each. In
    # one, the statements whose answer nobody reads (``DirectStatement.execute``: a
    # booking's INSERT, its change feed, its audit row) are sent without waiting, BEGIN
    # goes with the first statement, and the COMMIT (or ROLLBACK) with the last: the
    # server answers them all at once, at the next statement whose rows are read, or at
    # the commit (psycopg's pipeline mode, https://www.psycopg.org/psycopg3/docs/advanced/
    # pipeline.html). The statements run in the same order, in one transaction, as
    # before; what changes is where an error shows: at the first statement after it whose
    # answer is read, or at the commit, never later (the statements after it are skipped
    # by the server, and the first error is the one raised).

    def begin_pipelined(self) -> bool:
        """Begin a pipelined transaction on this connection, if no transaction has begun
        yet (nothing sent since its last one ended): the driver in autocommit (psycopg
        would otherwise send its BEGIN and wait for it), in pipeline mode, with an explicit
        BEGIN queued. ``commit`` or ``rollback`` ends it, as any transaction; the driver is
        out of autocommit again once it has. Whether it began one."""
        if (self._pipeline_scope is not None or self.autocommit or self.closed
                or self.pgconn.transaction_status != TransactionStatus.IDLE):
            return False
        self.autocommit = True  # nothing is sent: the connection is idle
        self._autocommit_for_transaction = True
        scope = self.pipeline()
        scope.__enter__()
        self._pipeline_scope = scope
        self.cursor_factory = EndsPipeline
        try:
            self._queue(b"BEGIN")
        except BaseException:
            self.leave_pipeline()
            raise
        return True

    @property
    def pipelined(self) -> bool:
        """Whether statements of this connection are queued in its pipeline."""
        return self._pipeline_scope is not None

    def end_pipeline(self, finish: bytes | None = None) -> None:
        """Send what the pipeline holds (and then ``finish``: COMMIT, ROLLBACK) with one
        Sync, read every answer, leave pipeline mode. Raises the first error among them
        (the statements after it were skipped), the connection out of pipeline mode
        either way (its transaction, if begun, in the state the server left it)."""
        scope, self._pipeline_scope = self._pipeline_scope, None
        if scope is None:
            return
        self.cursor_factory = DescribedLazily
        try:
            if finish is not None:
                self._queue(finish)
        except psycopg.Error as error:
            _leave_quietly(scope)
            raise _first_error(error) from None
        try:
            scope.__exit__(None, None, None)
        except psycopg.Error as error:
            raise _first_error(error) from None

    def leave_pipeline(self) -> None:
        """Leave pipeline mode, if in it, whatever the answers (after an error that was
        raised already: what follows it was skipped by the server)."""
        scope, self._pipeline_scope = self._pipeline_scope, None
        if scope is not None:
            self.cursor_factory = DescribedLazily
            _leave_quietly(scope)

    def commit(self) -> None:
        try:
            if self._pipeline_scope is None:
                super().commit()
                return
            try:
                self.end_pipeline(b"COMMIT")
            except psycopg.Error:
                # A statement before the COMMIT failed, so the server skipped it: the
                # transaction ends here all the same, rolled back, as a COMMIT of a failed
                # transaction ends it (SQLAlchemy takes a failed commit for an ended
                # transaction, and returns the connection to the pool as it is).
                try:
                    super().rollback()
                except psycopg.Error:
                    pass  # lost: the first error says so
                raise
        finally:
            self._transaction_ended()

    def rollback(self) -> None:
        try:
            if self._pipeline_scope is not None:
                try:
                    self.end_pipeline(b"ROLLBACK")
                except psycopg.Error:
                    # A statement before it failed (so the ROLLBACK was skipped: sent
                    # again below), or the connection is lost (psycopg's rollback says so
                    # below).
                    pass
            elif (self.read_only
                    and self.pgconn.transaction_status == TransactionStatus.INTRANS):
                # A READ ONLY transaction (psycopg began it so: ``read_only`` cannot change
                # inside one) in good standing ends with COMMIT, the same end for a
                # transaction that can write nothing (this code base sets no session
                # setting in one). A ROLLBACK would also make psycopg forget the
                # connection's prepared statements (and send DEALLOCATE ALL): every read
                # (a slot search, a list, the API key lookup) ending on a pooled connection
                # would have the next requests' statements parsed and planned again.
                super().commit()
                return
            super().rollback()  # sends ROLLBACK only while a transaction is still open
        finally:
            self._transaction_ended()

    def _transaction_ended(self) -> None:
        if (self._autocommit_for_transaction and not self.closed
                and self.pgconn.transaction_status == TransactionStatus.IDLE):
            self._autocommit_for_transaction = False
            self.autocommit = False  # nothing is sent: the connection is idle

    def _queue(self, command: bytes) -> None:
        """Queue a command without parameters in the pipeline, sent with what follows it
        (psycopg's own way for its BEGIN and COMMIT: no cursor, its result checked as it
        is read)."""
        with self.lock:
            self.wait(self._exec_command(command))


def _leave_quietly(scope: AbstractContextManager[Any]) -> None:
    """Leave psycopg's pipeline mode, ignoring the answers (a failed statement's error
    was raised already; those after it were skipped) and a lost connection (what used it
    says so)."""
    try:
        scope.__exit__(None, None, None)
    except psycopg.Error:
        pass


def _first_error(error: psycopg.Error) -> psycopg.Error:
    """The error a pipeline's failure is about: the failed statement's own, not the
    ``PipelineAborted`` of a statement the server skipped after it (psycopg raises the
    latter when the former was read while it was still sending)."""
    cause: BaseException | None = error
    while isinstance(cause, pg_errors.PipelineAborted):
        cause = cause.__context__
    return cause if isinstance(cause, psycopg.Error) else error


def make_engine(url: str, *, echo: bool = False, immediate: bool = True,
                timeouts: DatabaseTimeouts | None = None) -> Engine:
    """An engine for ``url``. With ``timeouts`` (the service's engines), every wait on the
    database is bounded; without (migrations, which may legitimately run long), only
    SQLite's busy timeout applies."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        busy = (timeouts or DatabaseTimeouts()).sqlite_busy
        in_memory = database in (None, "", ":memory:")  # one connection per thread, no queue
        pool = {} if timeouts is None or in_memory else {"pool_timeout": timeouts.pool}
        engine = create_engine(url, echo=echo, connect_args={"timeout": busy}, **pool)
        _configure_sqlite(engine, immediate=immediate, busy_seconds=busy)
        return engine
    # Sessions in UTC: psycopg then returns datetime.timezone.utc values, nothing to convert.
    if timeouts is None:
        return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10,
                             connect_args={"options": "-c timezone=UTC"})
    engine = create_engine(  # pinged on checkout by _bound_waits, only when it may be stale
        url, echo=echo, pool_size=5, max_overflow=10,
        pool_timeout=timeouts.pool, connect_args=_bounded_connect_args(timeouts))
    _bound_waits(engine, answer=timeouts.answer, ping=timeouts.connect)
    return engine


def _bounded_connect_args(timeouts: DatabaseTimeouts, *, connect: int | None = None
                          ) -> dict[str, Any]:
    statement_ms, lock_ms = round(timeouts.statement * 1000), round(timeouts.lock * 1000)
    return {"connect_timeout": connect or timeouts.connect,
            "options": f"-c timezone=UTC -c statement_timeout={statement_ms} "
                       f"-c lock_timeout={lock_ms}"}


PING_AFTER_IDLE_SECONDS = 1.0
"""A pooled connection idle in the pool longer than this is pinged before it is used."""


def _may_be_stale(connection: BoundedConnection) -> bool:
    """Whether a pooled connection must be pinged before use (SQLAlchemy's pre-ping, but
    without its round trip on a connection just used): it idled longer than
    ``PING_AFTER_IDLE_SECONDS``, or the server sent it something while it was idle (a
    server that stops, restarts or ends the session says so, or its closed socket reads as
    the end of file: a stopped server's connections are pinged, fail and are replaced as
    before). A connection never returned yet was just opened: no ping, as SQLAlchemy's."""
    if connection.closed:
        return True
    returned = connection.returned_at
    if returned is None:
        return False
    if time.monotonic() - returned > PING_AFTER_IDLE_SECONDS:
        return True
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def _bound_waits(engine: Engine, *, answer: float, ping: float) -> None:
    """Open BoundedConnections; a pooled connection that may be stale (``_may_be_stale``)
    is pinged on checkout, waiting ``ping`` seconds at most (it is idle in the pool between
    checkin and checkout), everything else ``answer``. A failed ping invalidates the pool:
    the next checkouts connect afresh (bounded by the connect timeout) instead of pinging
    each stale one (SQLAlchemy's pre-ping failure, the same path)."""

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams):  # type: ignore[no-untyped-def]
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.cursor_factory = DescribedLazily
        connection.answer_timeout = answer
        return connection

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        if isinstance(dbapi_connection, BoundedConnection):
            dbapi_connection.answer_timeout = ping
            dbapi_connection.returned_at = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, _record, _proxy):  # type: ignore[no-untyped-def]
        if isinstance(dbapi_connection, BoundedConnection):
            if _may_be_stale(dbapi_connection):
                try:
                    alive = engine.dialect.do_ping(dbapi_connection)
                except psycopg.Error as error:
                    raise sa_exc.InvalidatePoolError(describe_failure(error)) from error
                if not alive:
                    raise sa_exc.InvalidatePoolError("ping failed")
            dbapi_connection.answer_timeout = answer


def make_probe_engine(url: str, timeouts: DatabaseTimeouts) -> Engine:
    """The readiness probe's engine (PostgreSQL): a connection of its own per probe, never
    one from the service's pool (which may be exhausted or stale), each wait bounded by
    ``timeouts.readiness`` so ``/readyz`` answers within about that long."""
    engine = create_engine(normalize_url(url), poolclass=NullPool,
                           connect_args=_bounded_connect_args(timeouts,
                                                              connect=timeouts.readiness))
    _bound_waits(engine, answer=timeouts.readiness, ping=timeouts.readiness)
    return engine


# SQLite's messages for "cannot serve now" (every other sqlite3.OperationalError, such as
# "no such table", is a bug, not an outage).
_SQLITE_UNAVAILABLE = ("database is locked", "database table is locked",
                       "unable to open database", "disk i/o error", "database or disk is full")
# PostgreSQL SQLSTATE classes and codes that mean "cannot serve now": 08 connection
# exception, 53 insufficient resources, 57 operator intervention (57014 statement timeout,
# 57P01 shutdown, 57P03 starting up), 55P03 lock timeout.
_PG_UNAVAILABLE_CLASSES = ("08", "53", "57")
_PG_UNAVAILABLE_CODES = frozenset({"55P03"})


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot serve the request now (down, refusing,
    hung, timed out, pool exhausted, locked) rather than a bug or a broken rule."""
    if isinstance(exc, sa_exc.TimeoutError):  # QueuePool: no connection within pool_timeout
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        return any(text in message for text in _SQLITE_UNAVAILABLE)
    if isinstance(exc, psycopg.InterfaceError):  # "the connection is closed"
        return True
    if isinstance(exc, psycopg.OperationalError):
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is None:  # client side: refused, connect timeout, lost, not answering
            return True
        return sqlstate[:2] in _PG_UNAVAILABLE_CLASSES or sqlstate in _PG_UNAVAILABLE_CODES
    return False


def describe_failure(exc: BaseException) -> str:
    """A short, data-free description of a database failure for the log: the error's type
    and SQLSTATE, never its message (which may quote a statement's parameters)."""
    original = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if isinstance(exc, sa_exc.TimeoutError):
        return "connection pool exhausted (TimeoutError)"
    sqlstate = getattr(original, "sqlstate", None)
    return type(original).__name__ + (f" ({sqlstate})" if sqlstate else "")


def _configure_sqlite(engine: Engine, *, immediate: bool, busy_seconds: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every test
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit deferred BEGIN lets races in).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={round(busy_seconds * 1000)}")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _autocommit_off(dbapi_connection: Any) -> None:
    if not dbapi_connection.closed:
        dbapi_connection.autocommit = False


def _in_autocommit(_session: Any, _transaction: Any, connection: Any) -> None:
    """A request session's connection, once checked out: ``autocommit_until_returned``."""
    autocommit_until_returned(connection)


def begin_pipelined(connection: Connection) -> bool:
    """Begin ``connection``'s transaction as a pipelined one (``BoundedConnection.
    begin_pipelined``: PostgreSQL, the service's engines), if nothing was sent in it yet.
    Whether it did."""
    dbapi_connection = connection.connection.dbapi_connection
    return (isinstance(dbapi_connection, BoundedConnection)
            and dbapi_connection.begin_pipelined())


def autocommit_until_returned(connection: Connection) -> None:
    """A connection just checked out (nothing sent on it yet: the driver sends BEGIN with
    the first statement), in the driver's autocommit until it is back in the pool. What
    ``isolation_level="AUTOCOMMIT"`` on the engine does, without its per-checkout
    machinery (an ``engine_connect`` listener setting and resetting both the driver's
    autocommit and its isolation level). Its reset is the same: a finalizer of the pooled
    connection, run as it returns to the pool, after its rollback (nothing to roll back in
    autocommit: the driver sends nothing), before anyone else gets it."""
    pooled = connection.connection
    dbapi_connection = pooled.dbapi_connection
    if dbapi_connection.autocommit:
        return
    dbapi_connection.autocommit = True
    pooled._connection_record.finalize_callback.append(_autocommit_off)


@dataclass
class Database:
    """The writer engine, an optional reader engine, the readiness probe's engine, and the
    session factories."""

    writer: Engine
    reader: Engine
    probe: Engine | None = field(default=None)

    def __post_init__(self) -> None:
        self.write_sessions = sessionmaker(self.writer, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.reader, expire_on_commit=False)
        # Reads that must not write (a 409's alternatives, after the failed write): the
        # reader; on PostgreSQL without a replica, the writer in READ ONLY transactions
        # (psycopg's BEGIN READ ONLY, no statement more).
        only_reads = (self.writer.execution_options(postgresql_readonly=True)
                      if self.reader is self.writer and self.writer.dialect.name == "postgresql"
                      else self.reader)
        self.read_only_sessions = sessionmaker(only_reads, expire_on_commit=False)
        # A read request's reads and its audit row, where both go to the writer on
        # PostgreSQL (``service/transactions.py``): in autocommit, each statement its own
        # transaction, so no BEGIN and no COMMIT to wait for (or to ask for); the row's
        # INSERT, the last statement, is committed when it returns (``_in_autocommit``).
        self.request_autocommit = (self.reader is self.writer
                                   and self.writer.dialect.name == "postgresql")
        self.request_sessions = sessionmaker(
            self.writer if self.request_autocommit else self.reader, expire_on_commit=False)
        if self.request_autocommit:
            event.listen(self.request_sessions, "after_begin", _in_autocommit)
        if self.probe is None:
            self.probe = self.reader

    def request_connection(self) -> Connection:
        """A connection for a read request's own session and statements (``request_sessions``
        bound to it: ``service.transactions.request_connection``), from the same engine as
        those sessions' and, where they are (``request_autocommit``), in autocommit until
        it is back in the pool."""
        if not self.request_autocommit:
            return self.reader.connect()
        connection = self.writer.connect()
        autocommit_until_returned(connection)
        return connection

    @classmethod
    def connect(cls, url: str, replica_url: str | None = None, *, echo: bool = False,
                timeouts: DatabaseTimeouts | None = None) -> Database:
        timeouts = timeouts or DatabaseTimeouts()
        writer = make_engine(url, echo=echo, timeouts=timeouts)
        if replica_url:
            reader = make_engine(replica_url, echo=echo, immediate=False, timeouts=timeouts)
        elif normalize_url(url).startswith("sqlite"):
            reader = make_engine(url, echo=echo, immediate=False, timeouts=timeouts)
        else:
            reader = writer
        # SQLite answers in-process: the reader (no BEGIN IMMEDIATE, so never queued
        # behind a writer) is probe enough.
        probe = None if normalize_url(url).startswith("sqlite") else make_probe_engine(
            url, timeouts)
        return cls(writer=writer, reader=reader, probe=probe)

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()
        if self.probe is not None and self.probe not in (self.writer, self.reader):
            self.probe.dispose()


class DirectStatement:
    """A Core statement compiled once per dialect and run on the DBAPI cursor of a
    ``Connection`` (in its transaction), without SQLAlchemy's per-execution machinery: its
    compiled-cache lookup, execution context, result metadata and ``Row``. For the hottest
    read, ``GET /bookings/{id}``, whose two statements (the booking, its audit row) cost
    that machinery about a tenth of the request's instructions.

    What ``Connection.execute`` would do stays: the bind and result values pass through the
    same type processors (``TypeEngine.dialect_impl(dialect)``'s ``bind_processor`` and
    ``result_processor``, public API); the engine's ``before_cursor_execute`` and
    ``after_cursor_execute`` listeners see each statement (the statement counters of the
    tests and benches; ``context`` is None); a DBAPI error comes out as SQLAlchemy's
    exception for it (``DBAPIError.instance``), a disconnect invalidating the connection
    first. Not kept: ``echo`` logging and ``handle_error`` listeners.

    Parameters are the statement's named ``bindparam``s (an INSERT: the ``columns`` given,
    every one each time); bound literals keep their compiled value. ``first`` answers a row
    as a named tuple of the selected columns' keys; ``all`` answers the rows as tuples of
    the selected columns' values, in their order (as ``Row`` is read by position: for a
    statement selecting several columns of one name, which a named tuple cannot hold).
    """

    def __init__(self, statement: Executable, *, columns: Sequence[str] | None = None
                 ) -> None:
        self.statement = statement
        self._columns = list(columns) if columns is not None else None
        self._compiled: dict[Dialect, _DirectForm] = {}

    def _form(self, dialect: Dialect) -> _DirectForm:
        form = self._compiled.get(dialect)
        if form is None:
            form = self._compiled.setdefault(dialect, _DirectForm(
                self.statement, dialect, self._columns))
        return form

    def execute(self, connection: Connection, parameters: Mapping[str, Any]) -> None:
        """Run it (a statement returning no rows)."""
        self._run(connection, parameters, _NOTHING)

    def first(self, connection: Connection, parameters: Mapping[str, Any]) -> Any:
        """Its first row (named by the selected columns' keys), or None."""
        return self._run(connection, parameters, _FIRST)

    def all(self, connection: Connection, parameters: Mapping[str, Any]
            ) -> list[tuple[Any, ...]]:
        """Its rows, each a tuple of the selected columns' values in their order."""
        return self._run(connection, parameters, _ALL)  # type: ignore[no-any-return]

    def _run(self, connection: Connection, parameters: Mapping[str, Any], fetch: str
             ) -> Any:
        form = self._form(connection.dialect)
        sql, bound = form.sql, form.bind(parameters)
        dbapi_connection = connection.connection.dbapi_connection
        # The engine's cursor listeners, as Connection.execute fires them: ``dispatch`` is
        # SQLAlchemy's event dispatcher (not a documented API; tests/api/
        # test_audit_transaction.py counts this read's statements through it).
        dispatch = connection.dispatch
        cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
        if isinstance(cursor, EndsPipeline):
            # In a pipelined transaction: sent without waiting; its rows, if read, are
            # answered with everything sent before them (``BoundedConnection``).
            cursor.queues = True
        try:
            dispatch.before_cursor_execute(connection, cursor, sql, bound, None, False)
            try:
                cursor.execute(sql, bound)
            except Exception as error:
                raise _failed(connection, cursor, error, sql, bound) from error
            dispatch.after_cursor_execute(connection, cursor, sql, bound, None, False)
            if fetch is _NOTHING:
                return None
            try:  # (in a pipeline, the first error of what was sent before shows here)
                if fetch is _ALL:
                    return form.rows(cursor.fetchall())
                found = cursor.fetchone()
            except Exception as error:
                raise _failed(connection, cursor, error, sql, bound) from error
            return None if found is None else form.row(found)
        finally:
            cursor.close()


_NOTHING, _FIRST, _ALL = "nothing", "first", "all"  # what ``DirectStatement._run`` fetches


class _DirectForm:
    """A ``DirectStatement`` compiled for one dialect: its SQL, how its parameters are
    bound and how its rows are made."""

    def __init__(self, statement: Executable, dialect: Dialect,
                 columns: Sequence[str] | None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=columns)  # type: ignore[call-arg]
        if getattr(compiled, "escaped_bind_names", None):
            raise ValueError("A DirectStatement's parameters need plain names.")
        self.sql = compiled.string
        names = (list(compiled.positiontup or ()) if compiled.positional  # type: ignore[attr-defined]
                 else list(compiled.binds))  # type: ignore[attr-defined]
        self.positional = bool(compiled.positional)  # type: ignore[attr-defined]
        self.names = names
        binds = compiled.binds  # type: ignore[attr-defined]
        # Bound literals (``where(column == value)``): their compiled value, processed once.
        self.constants: dict[str, Any] = {}
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for name in names:
            bind = binds[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if not bind.required and bind.callable is None:
                value = bind.value
                self.constants[name] = processor(value) if processor else value
            elif processor is not None:
                self.processors[name] = processor
        selected = getattr(statement, "selected_columns", None)
        if selected is not None and getattr(statement, "is_select", False):
            keys = [column.key for column in selected]
            # Several columns of one name (``all`` only): no named tuple can hold them.
            self.row_type = (namedtuple("Row", keys)  # type: ignore[misc]
                             if len(set(keys)) == len(keys) else None)
            self.results = [(index, processor) for index, processor in (
                (index, column.type.dialect_impl(dialect).result_processor(dialect, None))
                for index, column in enumerate(selected)) if processor is not None]

    def bind(self, parameters: Mapping[str, Any]) -> Any:
        constants, processors = self.constants, self.processors
        values = {}
        for name in self.names:
            if name in constants:
                values[name] = constants[name]
                continue
            value = parameters[name]
            processor = processors.get(name)
            values[name] = value if processor is None or value is None else processor(value)
        return tuple(values[name] for name in self.names) if self.positional else values

    def row(self, found: Sequence[Any]) -> Any:
        if self.row_type is None:
            raise TypeError("Columns of one name: read the rows with DirectStatement.all.")
        return self.row_type._make(self.values(found))

    def values(self, found: Sequence[Any]) -> tuple[Any, ...]:
        """A row's values, through the columns' result processors."""
        if not self.results:
            return tuple(found)
        values = list(found)
        for index, processor in self.results:
            values[index] = processor(values[index])
        return tuple(values)

    def rows(self, found: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        if not self.results:  # nothing to decode: the driver's tuples as they are
            return found  # type: ignore[return-value]
        return [self.values(row) for row in found]


InsertHook = Callable[[Any, Table, Mapping[str, Any]], None]  # (a ``Transactional``, ...)
_INSERT_HOOK = "db.insert_hook"  # ``Session.info`` key of the hook (``hear_direct_inserts``)


class Transactional(Protocol):
    """What runs a transaction's statements: a ``Session``, or a unit of work whose
    transaction runs on a connection of its own (``service.uow.UnitOfWork.run(direct=
    True)``): the transaction's connection, and the ``info`` its hooks keep notes in (a
    session's own, or what its session factory gives a session)."""

    @property
    def info(self) -> dict[Any, Any]: ...

    def connection(self) -> Connection: ...


CommitHook = Callable[[Any], None]  # (the ``Transactional`` committing) -> None
_COMMIT_HOOKS = "db.commit_hooks"  # ``Session.info`` key (``hear_direct_commits``)


def _give_info(sessions: sessionmaker[Session], key: str, value: object) -> None:
    """Add ``key`` to what ``sessions`` gives its sessions' ``info``."""
    sessions.configure(info={**(sessions.kw.get("info") or {}), key: value})


def hear_direct_inserts(sessions: sessionmaker[Session], hook: InsertHook) -> None:
    """Have ``hook`` told of each row that ``announce_insert`` announces in a session of
    ``sessions`` (one hook per session factory: it is given to its sessions through their
    ``info``, ``sessionmaker.configure``), or in a transaction run without one."""
    _give_info(sessions, _INSERT_HOOK, hook)


def announce_insert(transaction: Transactional, table: Table, values: Mapping[str, Any]
                    ) -> None:
    """Tell the session's hook (``hear_direct_inserts``) of a row about to be inserted by a
    ``DirectStatement`` on the transaction's connection, as its ``do_orm_execute``
    listeners are told of an INSERT run through ``Session.execute`` (before it runs): the
    statement skips the session's execution, not what listens to it."""
    hook = transaction.info.get(_INSERT_HOOK)
    if hook is not None:
        hook(transaction, table, values)


def hear_direct_commits(sessions: sessionmaker[Session], *, before: CommitHook,
                        after: CommitHook) -> None:
    """Have ``before`` and ``after`` called around the commit of a transaction that the
    factory's sessions would have run but that ran on a connection without one (``UnitOfWork.
    run(direct=True)``), as the factory's ``before_commit`` and ``after_commit`` listeners
    are called around a session's; each is given the ``Transactional`` committing."""
    _give_info(sessions, _COMMIT_HOOKS, (before, after))


def commit_hooks(info: Mapping[Any, Any]) -> tuple[CommitHook, CommitHook] | None:
    """The hooks ``hear_direct_commits`` gave (to a transaction with this ``info``)."""
    return info.get(_COMMIT_HOOKS)


def _failed(connection: Connection, cursor: Any, error: Exception, sql: str,
            parameters: Any) -> Exception:
    """What ``Connection.execute`` raises for a DBAPI error (a disconnect invalidates the
    connection, so the pool does not hand it out again). A connection in a pipelined
    transaction leaves pipeline mode first (what was sent after the error was skipped)."""
    dialect = connection.dialect
    dbapi_error = dialect.loaded_dbapi.Error
    if not isinstance(error, dbapi_error):
        return error
    dbapi_connection = connection.connection.dbapi_connection
    if isinstance(dbapi_connection, BoundedConnection):
        dbapi_connection.leave_pipeline()
    invalidated = dialect.is_disconnect(error, dbapi_connection, cursor)
    if invalidated:
        connection.invalidate(error)
    return sa_exc.DBAPIError.instance(sql, parameters, error, dbapi_error,
                                      connection_invalidated=invalidated, dialect=dialect)


def utcnow() -> datetime:
    return datetime.now(UTC)


def enum_column(enum_cls, name: str):  # type: ignore[no-untyped-def]
    """A portable enum column: stored as its string value, checked by a named constraint.
    (On PostgreSQL, the checks of the tables a booking writes are stored as one constant
    array, ``column::text = ANY ('{...}'::text[])``, the same values: cheaper to compile at
    each statement than this IN list; migration c3e8a1f05d27.)"""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        length=max(len(member.value) for member in enum_cls),
        values_callable=lambda members: [member.value for member in members],
    )
