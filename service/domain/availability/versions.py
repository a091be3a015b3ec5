"""Schedule versions: what makes the slot cache never stale (issue 14).

One counter per scope, bumped in the very transaction of the change, from this one place
(a ``before_flush`` hook on every ORM session, so no use case can forget it; a new booking,
written by one Core INSERT without the flush, bumps its scopes through
``insert_after_bump``, in the INSERT's own statement on PostgreSQL):

- ``provider:<id>``: a booking of the provider (created, moved, cancelled, any status change),
  their weekly hours, date overrides, time off or licenses;
- ``patient:<id>``: a booking of the patient (their own bookings are busy in their search);
- ``chairs:<location id>``: a booking holding a chair there;
- ``catalog``: any change to a service type, a location or a provider row (new, changed,
  removed): what decides which providers and locations a search considers, their zones, the
  service's rules and cancellation terms. Such changes are rare (staff edits), so one clinic-
  wide counter serves; a cached answer keyed by the request alone (the slots resource's
  rendered answers) reads it with its scopes in the same single query;
- ``provider:<id>`` also when a connected calendar of the provider turns stale or fresh
  (``stale_since``, a pending first sync, switched on or off): answers list those providers;
- ``all``: a bulk UPDATE or DELETE of any of those tables (``session.execute(delete(...))``,
  which names no single row): every cached answer is dropped.

Providers, locations and service types also carry their own ``version`` column (records.py),
which the search's own cache key includes. A search reads the versions it depends on in one
query *before* loading what it computes from, so an answer is never stored under versions
older than its data.

A further source of blocking intervals (an external calendar's busy times, say) joins the
cache's guarantee by adding its model to ``PROVIDER_FACTS`` below.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable

import psycopg
from sqlalchemy import (
    ARRAY,
    Engine,
    Integer,
    String,
    Table,
    any_,
    bindparam,
    event,
    func,
    insert,
    inspect,
    literal,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from service.db import DirectStatement, Transactional, announce_insert
from service.domain.availability.models import DateOverride, ScheduleVersion, TimeOff, WeeklyHours
from service.domain.bookings.models import Booking
from service.domain.clinic.models import Location, ServiceType
from service.domain.connections.models import CalendarConnection, SyncStatus
from service.domain.providers.models import License, Provider

ALL = "all"
CATALOG = "catalog"
# Rows whose change can change which providers and locations a search considers, or how.
CATALOG_FACTS: tuple[type, ...] = (ServiceType, Location, Provider)
# Rows that belong to one provider (a ``provider_id`` column) and shape their slots.
PROVIDER_FACTS: tuple[type, ...] = (WeeklyHours, DateOverride, TimeOff, License)
# The booking columns a slot search reads (status: holding or not).
BOOKING_FACTS = ("status", "provider_id", "patient_id", "location_id", "chair_number",
                 "starts_at", "ends_at", "provider_starts_at", "provider_ends_at",
                 "hold_ends_at")
TRACKED = (Booking, *PROVIDER_FACTS, *CATALOG_FACTS, CalendarConnection)


def provider_scope(provider_id: uuid.UUID) -> str:
    return f"provider:{provider_id}"


def patient_scope(patient_id: uuid.UUID) -> str:
    return f"patient:{patient_id}"


def chairs_scope(location_id: uuid.UUID) -> str:
    return f"chairs:{location_id}"


def scopes_of_new_booking(booking: Booking) -> set[str]:
    """A new booking's scopes, from its values (all it has: no history to read)."""
    scopes = {provider_scope(booking.provider_id), patient_scope(booking.patient_id)}
    if booking.chair_number is not None:
        scopes.add(chairs_scope(booking.location_id))
    return scopes


def _values(obj: object, name: str, *, changed_only: bool) -> tuple[list[object], bool]:
    """The attribute's current and previous values, and whether it changed."""
    history = inspect(obj).attrs[name].history
    changed = history.has_changes()
    if changed_only and not changed:
        return [], False
    values = [*history.added, *history.deleted, *history.unchanged]
    return [v for v in values if v is not None], changed


def _scopes_of(obj: object, *, dirty: bool) -> set[str]:
    if isinstance(obj, Booking):
        if dirty and not any(inspect(obj).attrs[name].history.has_changes()
                             for name in BOOKING_FACTS):
            return set()
        scopes = {provider_scope(p) for p in _values(obj, "provider_id", changed_only=False)[0]}
        scopes |= {patient_scope(p) for p in _values(obj, "patient_id", changed_only=False)[0]}
        if _values(obj, "chair_number", changed_only=False)[0]:
            scopes |= {chairs_scope(loc)
                       for loc in _values(obj, "location_id", changed_only=False)[0]}
        return scopes
    if isinstance(obj, PROVIDER_FACTS):
        if dirty and not inspect(obj).modified:
            return set()
        return {provider_scope(p) for p in _values(obj, "provider_id", changed_only=False)[0]}
    if isinstance(obj, CATALOG_FACTS):
        return {CATALOG} if not dirty or inspect(obj).modified else set()
    if isinstance(obj, CalendarConnection):
        if dirty and _stale_source(obj, previous=True) == _stale_source(obj, previous=False):
            return set()
        return {provider_scope(p) for p in _values(obj, "provider_id", changed_only=False)[0]}
    return set()


def _stale_source(obj: CalendarConnection, *, previous: bool) -> bool | None:
    """Whether the connection is a stale source of its provider's slots (as
    ``connections.blocking.stale_providers`` reads it), before or after this flush; None
    when a previous value is unknown (set without being loaded first)."""
    values = []
    for name in ("active", "stale_since", "status"):
        history = inspect(obj).attrs[name].history
        if previous and history.has_changes():
            if not history.deleted:
                return None
            values.append(history.deleted[0])
        else:
            values.append(getattr(obj, name))
    active, stale_since, status = values
    return bool(active) and (stale_since is not None or status == SyncStatus.PENDING)


def bump(session: Transactional, scopes: Iterable[str]) -> None:
    """Add one to each scope's version (creating it), in this session's transaction (or a
    unit of work's, ``Transactional``). The rows are taken in sorted order, so two
    transactions never wait for each other in a circle."""
    ordered = sorted(set(scopes))
    if not ordered:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # One upsert of one statement, the scopes as one array parameter (an executemany
        # costs a pipeline of one statement per row on the client).
        connection.execute(_UPSERT_ANY, {"scopes": ordered})
        return
    # One upsert, given every scope's row at once (one round trip; a statement with the
    # rows in its text could not be cached compiled).
    connection.execute(_upsert(connection.dialect.name),
                       [{"scope": s, "version": 1} for s in ordered])


def insert_after_bump(session: Transactional, table: Table, values: dict[str, object],
                      scopes: Iterable[str]) -> None:
    """Insert one row of ``table`` (every column's value given) with a Core INSERT, after
    bumping ``scopes`` as ``bump`` does: for a row written without the ORM's flush (so
    without the ``before_flush`` hook), e.g. a new booking (``scopes_of_new_booking``).
    On PostgreSQL the bump rides the INSERT (one statement, its upsert a data-modifying
    WITH that the inserted row waits for: the version rows are locked, in sorted order,
    before the row is written, as with the flush's bump). ``session``: a session, or a
    unit of work running its transaction without one (``Transactional``). The INSERT is a
    ``DirectStatement`` on its connection (a booking's costliest statement through
    SQLAlchemy's execution), announced to the session's hook first (``service.db.
    announce_insert``: the audit row learns the record created, as from ``Session.
    execute``'s ``do_orm_execute``; this module's own listener there reacts only to bulk
    UPDATEs and DELETEs)."""
    ordered = sorted(set(scopes))
    connection = session.connection()
    after_bump = bool(ordered) and connection.dialect.name == "postgresql"
    if not after_bump:
        bump(session, ordered)
    announce_insert(session, table, values)
    if after_bump:
        _insert_after_bump_direct(table).execute(connection, {**values, "scopes": ordered})
    else:
        _insert_row_direct(table).execute(connection, values)


@functools.cache
def _insert_row_direct(table: Table) -> DirectStatement:
    """One row of ``table``, every column given."""
    return DirectStatement(insert(table), columns=[column.key for column in table.columns])


@functools.cache
def _insert_after_bump_direct(table: Table) -> DirectStatement:
    return DirectStatement(_insert_after_bump(table))


@functools.cache
def _insert_after_bump(table: Table):  # type: ignore[no-untyped-def]
    """PostgreSQL: ``WITH bumps AS (<_UPSERT_ANY> RETURNING 1) INSERT INTO <table> SELECT
    <the row's parameters> FROM (SELECT count(*) FROM bumps)``: the row is made from the
    count of the bumped rows, so every bump is done before it is inserted. Built once per
    table, with parameters only, so its compiled form is cached."""
    if "scopes" in table.c:
        raise ValueError(f"{table.name} has a column named like the scopes' parameter")
    bumps = _upsert_any().returning(literal(1, Integer)).cte("bumps")
    done = select(func.count()).select_from(bumps).subquery("bumps_done")
    row = select(*(bindparam(column.key, type_=column.type).label(column.key)
                   for column in table.columns)).select_from(done)
    return insert(table).from_select([column.key for column in table.columns],
                                     row).add_cte(bumps)


@functools.cache
def _upsert(dialect_name: str):  # type: ignore[no-untyped-def]
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    table = ScheduleVersion.__table__
    return dialect.insert(table).on_conflict_do_update(
        index_elements=[table.c.scope], set_={"version": table.c.version + 1})


def _upsert_any():  # type: ignore[no-untyped-def]
    """PostgreSQL: every scope's row from one array, inserted (or bumped) in its order (the
    sorted order: two transactions never wait for each other in a circle)."""
    table = ScheduleVersion.__table__
    scopes = func.unnest(bindparam("scopes", type_=ARRAY(String))).table_valued(
        "scope", with_ordinality="position").render_derived(name="bumped")
    return postgresql.insert(table).from_select(
        ["scope", "version"],
        select(scopes.c.scope, literal(1, Integer)).order_by(scopes.c.position),
    ).on_conflict_do_update(index_elements=[table.c.scope],
                            set_={"version": table.c.version + 1})


_UPSERT_ANY = _upsert_any()


def read(session: Session, scopes: Iterable[str]) -> dict[str, int]:
    """The current versions of these scopes (0 for one never bumped), in one query."""
    wanted = sorted(set(scopes) | {ALL})
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # One text parameter, split by the server: no per-scope binds, and none of the
        # client-side work of dumping an array (a fifth of a cached search's CPU).
        rows = connection.execute(_READ_LISTED, {"scopes": _listed(wanted)}).all()
    else:
        rows = connection.execute(select(ScheduleVersion.scope, ScheduleVersion.version).where(
            ScheduleVersion.scope.in_(wanted))).all()
    return _by_scope(wanted, rows)


def read_pooled(session: Session, scopes: Iterable[str]) -> dict[str, int]:
    """``read``, for a session that may hold no connection yet (the one query of a cached
    slot answer, ``answers.py``). On PostgreSQL, a session not in a transaction has its
    statement run on a connection of its engine's pool in autocommit, straight through the
    driver: none of the session's and SQLAlchemy's work of opening, executing and returning
    (about 0.2 ms of CPU, a third of a cached search). A session in a transaction, or on
    SQLite, reads in it (``read``). Each statement in autocommit is its own transaction,
    as the request's reads already are on PostgreSQL (``service/transactions.py``)."""
    bind = session.get_bind()
    if (session.in_transaction() or not isinstance(bind, Engine)
            or bind.dialect.name != "postgresql"):
        return read(session, scopes)
    wanted = sorted(set(scopes) | {ALL})
    return _by_scope(wanted, _driver_rows(bind, _listed(wanted)))


def _listed(wanted: list[str]) -> str:
    listed = _SEPARATOR.join(wanted)
    if listed.count(_SEPARATOR) != len(wanted) - 1:
        raise ValueError(f"a scope name holds {_SEPARATOR!r}")
    return listed


def _by_scope(wanted: list[str], rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    found = dict(rows)
    return {scope: found.get(scope, 0) for scope in wanted}


def _driver_rows(engine: Engine, listed: str) -> list[tuple[str, int]]:
    """``_READ_LISTED``'s rows, run by the driver on a pooled connection in autocommit (the
    pool's checkout and checkin events apply as usual). A driver error goes out as
    SQLAlchemy's, as from ``Connection.execute`` (a lost connection: invalidated, so the
    service answers 503); the connection it happened on is discarded."""
    statement, constants = _compiled_read(engine.dialect)
    parameters = {**constants, "scopes": listed}
    try:
        pooled = engine.raw_connection()
    except psycopg.Error as error:  # could not connect: nothing to invalidate
        raise _wrapped(engine, statement, parameters, error, lost=False) from error
    driver = pooled.driver_connection
    try:
        driver.autocommit = True
        rows = driver.execute(statement, parameters).fetchall()
        driver.autocommit = False
        return rows
    except psycopg.Error as error:
        lost = engine.dialect.is_disconnect(error, driver, None)
        pooled.invalidate(error)
        raise _wrapped(engine, statement, parameters, error, lost=lost) from error
    finally:
        pooled.close()


def _wrapped(engine: Engine, statement: str, parameters: dict[str, object],
             error: psycopg.Error, *, lost: bool) -> sa_exc.StatementError:
    return sa_exc.DBAPIError.instance(statement, parameters, error, psycopg.Error,
                                      hide_parameters=True, connection_invalidated=lost,
                                      dialect=engine.dialect)


@functools.lru_cache(maxsize=8)
def _compiled_read(dialect: Dialect) -> tuple[str, dict[str, object]]:
    """``_READ_LISTED`` as this dialect's driver is given it by SQLAlchemy (the very text,
    so both ways share the driver's prepared statement), and its constant parameters."""
    compiled = _READ_LISTED.compile(dialect=dialect)
    return compiled.string, {name: value for name, value in compiled.params.items()
                             if name != "scopes"}


_SEPARATOR = ","  # in no scope name: "catalog", "all", "<kind>:<uuid>"
_READ_LISTED = select(ScheduleVersion.scope, ScheduleVersion.version).where(
    ScheduleVersion.scope == any_(func.string_to_array(bindparam("scopes", type_=String),
                                                       _SEPARATOR, type_=ARRAY(String))))


@event.listens_for(Session, "before_flush")
def _bump_on_flush(session: Session, flush_context, instances) -> None:  # type: ignore[no-untyped-def]
    scopes: set[str] = set()
    for obj in session.new:
        scopes |= scopes_of_new_booking(obj) if isinstance(obj, Booking) else _scopes_of(
            obj, dirty=False)
    for obj in session.dirty:
        scopes |= _scopes_of(obj, dirty=True)
    for obj in session.deleted:
        scopes |= _scopes_of(obj, dirty=False)
    bump(session, scopes)


@event.listens_for(Session, "do_orm_execute")
def _bump_on_bulk_change(state) -> None:  # type: ignore[no-untyped-def]
    if not (state.is_update or state.is_delete):
        return
    entity = state.bind_mapper.class_ if state.bind_mapper is not None else None
    if entity is not None and issubclass(entity, TRACKED):
        bump(state.session, [ALL])
