"""The request's units of work: a write (or a read) on the app's database, committing
through its message bus, and, where reads go to the writer, the request's own session and
connection that a read and its audit row share (``share_request_transaction``).

Its own module so that both ``service.extensions`` and ``service.rendering`` (which the
former imports) read in the same transaction.
"""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from service.db import Database
from service.uow import UnitOfWork


def database() -> Database:
    # (the app behind its proxy: an attribute read through the proxy costs a failed lookup)
    return current_app._get_current_object().extensions["clinic.database"]  # type: ignore[attr-defined]


def unit_of_work(*, read_only: bool = False) -> UnitOfWork:
    """A unit of work on the app's database, committing through its message bus. A read in
    a request that keeps one transaction (``share_request_transaction``) runs in it."""
    db = database()
    found = g._get_current_object()  # type: ignore[attr-defined]
    if read_only and found.get(_SHARES_TRANSACTION):
        return _request_unit_of_work(db)
    if not read_only and found.get(_HOLDS_TRANSACTION):
        return UnitOfWork(None, dialect=db.dialect, bus=current_app.extensions["clinic.bus"],
                          shared=_held_session(db), reads=db.read_only_sessions, hold=True)
    sessions = db.read_sessions if read_only else db.write_sessions
    return UnitOfWork(sessions, dialect=db.dialect, bus=current_app.extensions["clinic.bus"],
                      reads=db.read_only_sessions)


def statement_reads() -> UnitOfWork:
    """A unit of work for reads only whose statements each run on their own: in autocommit
    where the reads go to the writer on PostgreSQL (``Database.request_sessions``), so a
    read costs no BEGIN and no ROLLBACK round trip (at READ COMMITTED each statement of a
    transaction sees its own snapshot anyway); elsewhere the reader's sessions, as
    ``unit_of_work(read_only=True)``; in a request that keeps one transaction, in it.
    Nothing it records can be committed (no bus)."""
    db = database()
    if g.get(_SHARES_TRANSACTION):
        return request_unit_of_work()
    return UnitOfWork(db.request_sessions, dialect=db.dialect, reads=db.read_only_sessions)


_SHARES_TRANSACTION = "clinic.shares_transaction"
_REQUEST_SESSION = "clinic.request_session"
_REQUEST_CONNECTION = "clinic.request_connection"
_HOLDS_TRANSACTION = "clinic.holds_transaction"
_HELD_SESSION = "clinic.held_session"
_REQUEST_READS = "clinic.request_reads"


def hold_request_transaction() -> None:
    """Make this request's writes (``unit_of_work()``) run in one transaction of the writer
    that stays open after the view, until ``settle_held_transaction``: what is written with
    the answer, once it is known, commits with the change itself."""
    setattr(g, _HOLDS_TRANSACTION, True)


def _held_session(db: Database) -> Session:
    session = g.get(_HELD_SESSION)
    if session is None:
        session = db.write_sessions()
        setattr(g, _HELD_SESSION, session)
    return session


def settle_held_transaction() -> UnitOfWork:
    """Stop holding: a unit of work in the held transaction (or a fresh one, when the view
    wrote nothing) whose commit commits what the view wrote with what it adds; its session
    stays open until ``end_held_transaction``. Writes after this commit on their own."""
    db = database()
    g.pop(_HOLDS_TRANSACTION, None)
    return UnitOfWork(None, dialect=db.dialect, bus=current_app.extensions["clinic.bus"],
                      shared=_held_session(db))


def end_held_transaction() -> None:
    """Close the held session: what was not committed is rolled back, its connection freed."""
    g.pop(_HOLDS_TRANSACTION, None)
    session = g.pop(_HELD_SESSION, None)
    if session is not None:
        session.close()


def share_request_transaction() -> bool:
    """Make this request's reads run in one session of its own, kept until the request ends
    (``request_session``), on one connection with what it writes last (its audit row).
    That session is in autocommit (``Database.request_sessions``): no BEGIN and no COMMIT
    to wait for; each statement is its own transaction (at READ COMMITTED, each statement
    of a transaction sees its own snapshot anyway), and the row's INSERT, the last one, has
    committed when it returns, before the answer goes out: nothing in it is left to commit.
    Only on PostgreSQL where the reads go to the writer (``Database.request_autocommit``:
    no replica; SQLite's reads have an engine of their own, whose deferred transactions
    could not take the write lock later without failing)."""
    shared = database().request_autocommit
    g._get_current_object().setdefault(_SHARES_TRANSACTION, shared)  # type: ignore[attr-defined]
    return shared


def request_connection(db: Database | None = None) -> Connection:
    """The connection of the request's own session (``request_session``), for Core
    statements to run on directly (``UnitOfWork.connection``: the booking's read, the
    read's audit row): through the session, each would begin or join a session
    transaction (its bookkeeping and events) only to be handed this same connection.

    While the session reads in a transaction of its own, its connection. Otherwise one of
    the session's engine (``Database.request_connection``, in autocommit as the session's
    would be), opened once and kept until ``end_request_transaction``, which the session
    is bound to (its ``bind``; when made later, ``request_session``): whatever it reads
    afterwards runs on it too, one connection per request as before. No session is made
    for this: a read that needs none (``GET /bookings/{id}``) never has one."""
    found = g._get_current_object()  # type: ignore[attr-defined]
    connection = found.get(_REQUEST_CONNECTION)
    if connection is not None:
        return connection
    db = db or database()
    session = found.get(_REQUEST_SESSION)  # (none yet: none is opened for this)
    if session is not None and session.in_transaction():
        return session.connection()  # (not kept: a rollback gives it back to the pool)
    connection = db.request_connection()
    if session is not None:
        session.bind = connection
    setattr(found, _REQUEST_CONNECTION, connection)
    return connection


def request_session(db: Database | None = None) -> Session:
    """The request's own session (opened on first use, closed by
    ``end_request_transaction``), bound to the request's connection if it has one."""
    found = g._get_current_object()  # type: ignore[attr-defined]
    session = found.get(_REQUEST_SESSION)
    if session is None:
        sessions = (db or database()).request_sessions
        connection = found.get(_REQUEST_CONNECTION)
        session = sessions() if connection is None else sessions(bind=connection)
        setattr(found, _REQUEST_SESSION, session)
    return session


def request_reads() -> dict[object, object]:
    """What this request read of the records its audit row names
    (``UnitOfWork.seen``; ``audit.note_read``, ``audit.remember_reads``): kept with the
    request rather than in its session's ``info``, so that a read whose statements all run
    on the request's connection opens no session at all."""
    found = g._get_current_object()  # type: ignore[attr-defined]
    seen = found.get(_REQUEST_READS)
    if seen is None:
        seen = {}
        setattr(found, _REQUEST_READS, seen)
    return seen


def request_unit_of_work() -> UnitOfWork:
    """A unit of work in the request's own session and connection."""
    return _request_unit_of_work(database())


def _request_unit_of_work(db: Database) -> UnitOfWork:
    """The request's own session is opened only if something asks the unit of work for it
    (``UnitOfWork.session``): ``GET /bookings/{id}``'s read and its audit row need only
    the connection and ``request_reads``."""
    return UnitOfWork(None, dialect=db.dialect,
                      bus=current_app._get_current_object().extensions["clinic.bus"],  # type: ignore[attr-defined]
                      shared_on_use=lambda: request_session(db),
                      connection=lambda: request_connection(db), seen=request_reads())


def shares_request_transaction() -> bool:
    return bool(g._get_current_object().get(_SHARES_TRANSACTION))  # type: ignore[attr-defined]


def end_request_transaction(_exc: BaseException | None = None) -> None:
    """After the request: end (roll back what was not committed) its own transaction, and
    give its connection back to the pool."""
    found = g._get_current_object()  # type: ignore[attr-defined]
    session = found.pop(_REQUEST_SESSION, None)
    if session is not None:
        session.close()
    connection = found.pop(_REQUEST_CONNECTION, None)
    if connection is not None:
        connection.close()
    found.pop(_REQUEST_READS, None)  # (``g`` outlives the request where a test keeps it)
    if _HOLDS_TRANSACTION in found or _HELD_SESSION in found:
        end_held_transaction()
