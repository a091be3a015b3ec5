"""Database wiring: the declarative base, UTC time columns, engines and sessions.

SQLite (the embedded default) gets WAL, a busy timeout, foreign keys and ``BEGIN IMMEDIATE``
for every write transaction, so check-then-insert sequences cannot interleave. PostgreSQL is
reached through psycopg 3. Reads may go to a replica (``DATABASE_REPLICA_URL``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, Engine, Enum, MetaData, create_engine, event, make_url
from sqlalchemy.orm import DeclarativeBase, sessionmaker
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


def make_engine(url: str, *, echo: bool = False, immediate: bool = True) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine, immediate=immediate)
        return engine
    # Sessions in UTC: psycopg then returns datetime.timezone.utc values, nothing to convert.
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10,
                         connect_args={"options": "-c timezone=UTC"})


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every test
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit deferred BEGIN lets races in).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@dataclass
class Database:
    """The writer engine, an optional reader engine, and their session factories."""

    writer: Engine
    reader: Engine

    def __post_init__(self) -> None:
        self.write_sessions = sessionmaker(self.writer, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.reader, expire_on_commit=False)

    @classmethod
    def connect(cls, url: str, replica_url: str | None = None, *, echo: bool = False) -> Database:
        writer = make_engine(url, echo=echo)
        if replica_url:
            reader = make_engine(replica_url, echo=echo, immediate=False)
        elif normalize_url(url).startswith("sqlite"):
            reader = make_engine(url, echo=echo, immediate=False)
        else:
            reader = writer
        return cls(writer=writer, reader=reader)

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def utcnow() -> datetime:
    return datetime.now(UTC)


def enum_column(enum_cls, name: str):  # type: ignore[no-untyped-def]
    """A portable enum column: stored as its string value, checked by a named constraint."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        length=max(len(member.value) for member in enum_cls),
        values_callable=lambda members: [member.value for member in members],
    )
