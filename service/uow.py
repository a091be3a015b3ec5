"""Unit of work: one transaction per use case, rolled back unless committed.

``run(work)`` is how every write use case runs: ``work`` inside a transaction, then the
commit; when the database rolled the transaction back to break a deadlock or a
serialization conflict, the whole of ``work`` runs again in a fresh transaction (a bounded
number of times). Reads use ``with uow:`` and never commit.

A unit of work may instead be given the request's own session (``shared``): it then neither
opens nor ends the transaction, which outlives it (the request's reads and its audit row in
one transaction, ``service/extensions.py``); what it loaded is detached on the way out, as
a closed session would leave it. ``hold`` on a shared session: its commit only flushes, and
the request commits the transaction once its answer is known (an ``Idempotency-Key``'s
stored answer in the same transaction as the change, ``service/resources/idempotency.py``);
each held unit of work after the first runs in a savepoint, so a failed one leaves what the
earlier ones did, as their own commits would have.

Use cases record domain events on the unit of work (``record``); ``commit`` hands them to
the message bus first, so their handlers write the consequences (reminders, the change feed,
webhook deliveries) in the same transaction (``service/messagebus.py``).

``run(work, direct=True)``: the transaction runs on a connection of its own (for use cases
whose statements run on ``connection()``: ``POST /bookings``), and a session is made, joined
to that transaction, only if something asks for one (``session``); committed without one,
the hooks the session factory's ``before_commit`` and ``after_commit`` listeners would have
run are called around the commit (``service.db.hear_direct_commits``: the audit row). The
same statements, in the same transaction, without the session's per-transaction machinery.

A database constraint violation (a race the Python checks could not see) is translated into
the domain error registered for that constraint, so callers get the same answer either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from service.db import Base, begin_pipelined, commit_hooks
from service.domain.errors import Conflict, DomainError, PreconditionFailed, constraint_error
from service.domain.events import Event
from service.messagebus import MessageBus

# PostgreSQL's deadlock_detected and serialization_failure: the transaction lost a race and
# was rolled back; running it again is correct (e.g. two bookings that each wait on the
# other's row in an exclusion constraint: the retry sees the winner and answers 409).
CONTENTION_SQLSTATES = frozenset({"40P01", "40001"})
RETRIES = 3
HELD_WORK = "clinic.held_work"
"""``Session.info`` key: a held unit of work committed (flushed) in this transaction."""

T = TypeVar("T")


class Contention(Conflict):
    code = "write_contention"
    title = "Concurrent changes; retry the request"


def _is_contention(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in CONTENTION_SQLSTATES


class UnitOfWork:
    def __init__(self, sessions: sessionmaker[Session] | None, *, dialect: str = "",
                 bus: MessageBus | None = None, shared: Session | None = None,
                 reads: sessionmaker[Session] | None = None, hold: bool = False,
                 connection: Callable[[], Connection] | None = None,
                 shared_on_use: Callable[[], Session] | None = None,
                 seen: dict[object, object] | None = None) -> None:
        if (sessions is None) == (shared is None and shared_on_use is None):
            raise ValueError("Give either a session factory or a shared session.")
        if hold and shared is None:
            raise ValueError("Only a shared session's transaction can be held.")
        if connection is not None and shared is None and shared_on_use is None:
            raise ValueError("Only a shared session's connection can be given.")
        self._connection = connection
        self._shared_on_use = shared_on_use
        self._session: Session | None = None
        # ``run(direct=True)``: the transaction's own connection (opened by ``connection``)
        # and, while no session is made, the notes a session's ``info`` would hold.
        self._direct = False
        self._own: Connection | None = None
        self._info: dict[Any, Any] | None = None
        # What the request read of the records its audit row names (``audit.note_read``),
        # kept as long as the request: where it is given, the row names them without reading
        # them again, and no session has to be opened to hold the notes.
        self.seen = seen
        self._hold = hold
        self._savepoint: SessionTransaction | None = None
        self._held = False
        self._sessions = sessions
        self._shared = shared
        self._reads = reads
        self.dialect = dialect
        self.bus = bus
        self._events: list[Event] = []
        self._open = False
        # What handlers read once per transaction and share (``service/domain/recipients.py``):
        # emptied whenever a transaction begins or ends.
        self.memo: dict[object, object] = {}

    def __enter__(self) -> UnitOfWork:
        if self._open:
            raise RuntimeError("This unit of work is already open: one transaction at a time.")
        if self._shared is not None:
            self._session = self._shared
            if self._hold and self._shared.info.get(HELD_WORK):
                self._savepoint = self._shared.begin_nested()
        elif self._direct:
            self._session = None  # made if asked for (``session``), joined to ``_own``
            self._info = dict(self._sessions.kw.get("info") or {})  # type: ignore[union-attr]
        elif self._sessions is not None:
            self._session = self._sessions()
        self._events = []
        self.memo = {}
        self._open = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # close() ends (rolls back) any uncommitted transaction; unlike rollback() it does
        # not expire what was loaded, so the caller can still serialize it.
        self._open = False
        self._events = []
        self.memo = {}
        savepoint, self._savepoint = self._savepoint, None
        held, self._held = self._held, False
        if self._direct:
            own, self._own, self._info = self._own, None, None
            if self._session is not None:
                self._session.close()  # rolls back what was not committed
            if own is not None:
                own.close()  # (rolls back what was not committed) back to the pool
        elif self._sessions is not None:
            self.session.close()
        elif self._hold:
            # Kept if it committed (as a commit would have kept it), else nothing of it, as a
            # closed session would keep nothing; what earlier held units of work did stays.
            if not held and savepoint is not None and savepoint.is_active:
                savepoint.rollback()
            elif not held and savepoint is None:
                self.session.rollback()
            self.session.expunge_all()
        elif self._session is None:
            pass  # a shared session never opened (``shared_on_use``): nothing to end
        elif exc is not None:
            self.session.rollback()  # the transaction goes on, fresh, for what follows
        else:
            # Its transaction goes on; what it loaded is detached with its loaded state, so
            # a later read in the same transaction loads rows afresh (as a new session would).
            self.session.expunge_all()
        if isinstance(exc, IntegrityError):
            raise translate_integrity_error(exc) from exc
        if isinstance(exc, OperationalError) and _is_contention(exc):
            raise Contention("Other requests were changing the same records; retry.") from exc
        if isinstance(exc, StaleDataError):
            raise PreconditionFailed(
                "Someone else changed this record at the same time; read it again."
            ) from exc

    @property
    def session(self) -> Session:
        """This unit of work's session. Given as ``shared_on_use`` (the request's own), it
        is opened only here, when something first asks for it: a read whose statements
        all run on the connection (``connection``; ``GET /bookings/{id}``) and whose notes
        are kept in ``seen`` needs none, and saves making, clearing and closing one."""
        session = self._session
        if session is None:
            if self._direct and self._open:
                return self._joined_session()
            if self._sessions is not None:  # (after a transaction of ``run(direct=True)``)
                session = self._session = self._sessions()
                return session
            if self._shared_on_use is None:
                raise AttributeError("session: this unit of work has not been entered")
            session = self._session = self._shared_on_use()
        return session

    def _joined_session(self) -> Session:
        """A session of the factory in the transaction of ``run(direct=True)``: bound to
        its connection, in control of its transaction (its commit commits it), joined at
        once (so its commit is the transaction's whatever it ran), with the notes kept so
        far in its ``info``, which keeps them from now on."""
        connection = self.connection()
        session = self._sessions(  # type: ignore[misc]
            bind=connection, join_transaction_mode="control_fully")
        session.connection()
        session.info.update(self._info or {})
        self._info = None
        self._session = session
        return session

    @property
    def info(self) -> dict[Any, Any]:
        """What the transaction's hooks note (``service.db.Transactional``): its session's
        ``info``, or, in a transaction of ``run(direct=True)`` without a session yet, what
        its factory gives a session's."""
        if self._info is not None:
            return self._info
        return self.session.info

    def flush(self) -> None:
        """Flush what the session holds, if this transaction has a session (without one
        nothing is pending)."""
        if self._session is not None:
            self._session.flush()

    def run(self, work: Callable[[], T], *, direct: bool = False) -> T:
        """Run ``work`` in a transaction and commit; when the database rolled it back to
        break a deadlock or a serialization conflict, run all of it again in a fresh
        transaction. After RETRIES attempts the ``Contention`` goes out. ``direct``: in a
        transaction on a connection of its own, a session made only if asked for (see the
        module's doc; for a unit of work with a session factory whose sessions are bound
        to one engine, else as without)."""
        direct = (direct and self._sessions is not None
                  and isinstance(self._sessions.kw.get("bind"), Engine))
        for attempt in range(1, RETRIES + 1):
            self._direct = direct
            try:
                with self:
                    result = work()
                    self.commit()
                    return result
            except Contention:
                if attempt == RETRIES:
                    raise
            finally:
                self._direct = False
        raise AssertionError("unreachable")

    def connection(self) -> Connection:
        """The connection of this unit of work's transaction, for Core statements: its
        shared session's as given (``connection``: a read request's own, without a session
        transaction begun around it, ``service.transactions.request_connection``), else
        its session's."""
        if self._connection is not None:
            return self._connection()
        if self._direct:
            own = self._own
            if own is None:
                own = self._sessions.kw["bind"].connect()  # type: ignore[union-attr]
                try:
                    own.begin()
                except BaseException:
                    own.close()
                    raise
                self._own = own
            return own
        return self.session.connection()

    def pipeline(self) -> None:
        """Have this transaction's statements that answer nothing sent without waiting for
        the server, its BEGIN with its first statement and its COMMIT with its last
        (``service.db.BoundedConnection.begin_pipelined``): on PostgreSQL, for a
        transaction of this unit of work's own (not a shared one, whose errors its holder
        may expect at once), from its start (call it before any statement). A statement's
        error then shows at the next statement whose rows are read or at the commit,
        within ``run`` all the same: for use cases that leave every database error to the
        unit of work (``__exit__``'s translation, ``run``'s retries)."""
        if self.dialect == "postgresql" and self._sessions is not None:
            begin_pipelined(self.connection())

    def reading(self) -> UnitOfWork:
        """A unit of work for reads only, on read-only transactions where the database has
        them (``Database.read_only_sessions``); without them, a fresh one like this one."""
        if self._reads is not None:
            return UnitOfWork(self._reads, dialect=self.dialect)
        if self._sessions is not None:
            return UnitOfWork(self._sessions, dialect=self.dialect, bus=self.bus)
        return self

    def record(self, event: Event) -> None:
        """Note what happened; its handlers run in this transaction when it commits."""
        self._events.append(event)

    def take_events(self) -> list[Event]:
        """The events recorded since the last call (for the message bus)."""
        events, self._events = self._events, []
        return events

    def commit(self) -> None:
        if self._events:
            if self.bus is None:
                raise RuntimeError("Events were recorded on a unit of work without a message "
                                   "bus: their consequences would be lost.")
            self.bus.run(self)
        self.memo = {}
        if self._hold:  # the request commits it, with its answer (see the module's doc)
            self.session.flush()
            if self._savepoint is not None:
                self._savepoint.commit()
                self._savepoint = None
            self.session.info[HELD_WORK] = True
            self._held = True
            return
        if self._direct and self._info is not None:
            self._commit_direct(self._info)
            return
        self.session.commit()

    def _commit_direct(self, info: dict[Any, Any]) -> None:
        """Commit a transaction of ``run(direct=True)`` that made no session: its hooks
        (``service.db.hear_direct_commits``) around its connection's commit. (A session a
        hook asks for, to read, joins it; it is not the one committing.)"""
        hooks = commit_hooks(info)
        if hooks is not None:
            hooks[0](self)
        transaction = self.connection().get_transaction()
        assert transaction is not None
        transaction.commit()
        if hooks is not None:
            hooks[1](self)

    def rollback(self) -> None:
        self._events = []
        self.memo = {}
        self.session.rollback()  # (``run(direct=True)``: a session made for it rolls back)


_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (?P<cols>[\w., ]+)")
_SQLITE_CHECK = re.compile(r"CHECK constraint failed: (?P<name>\w+)")


def _constraint_name(exc: IntegrityError) -> str | None:
    diag = getattr(exc.orig, "diag", None)
    if diag is not None and getattr(diag, "constraint_name", None):
        return diag.constraint_name
    message = str(exc.orig)
    match = _SQLITE_CHECK.search(message)
    if match:
        return match.group("name")
    match = _SQLITE_UNIQUE.search(message)
    if match:
        qualified = [part.strip() for part in match.group("cols").split(",")]
        table_name = qualified[0].split(".")[0]
        columns = {part.split(".")[1] for part in qualified}
        table = Base.metadata.tables.get(table_name)
        if table is None:
            return None
        for constraint in table.constraints:
            if {c.name for c in getattr(constraint, "columns", [])} == columns:
                return constraint.name  # type: ignore[return-value]
        for index in table.indexes:
            if index.unique and {c.name for c in index.columns} == columns:
                return index.name  # type: ignore[return-value]
    return None


def translate_integrity_error(exc: IntegrityError) -> DomainError:
    name = _constraint_name(exc)
    error = constraint_error(name)
    if error is not None:
        return error
    return Conflict("The change conflicts with existing data.", code="integrity_conflict")
