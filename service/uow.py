"""Unit of work: one transaction per use case, rolled back unless committed.

A database constraint violation (a race the Python checks could not see) is translated into
the domain error registered for that constraint, so callers get the same answer either way.
"""

from __future__ import annotations

import re
from types import TracebackType

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from service.db import Base
from service.domain.errors import Conflict, DomainError, PreconditionFailed, constraint_error


class UnitOfWork:
    session: Session

    def __init__(self, sessions: sessionmaker[Session], *, dialect: str = "") -> None:
        self._sessions = sessions
        self.dialect = dialect

    def __enter__(self) -> UnitOfWork:
        self.session = self._sessions()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # close() ends (rolls back) any uncommitted transaction; unlike rollback() it does
        # not expire what was loaded, so the caller can still serialize it.
        self.session.close()
        if isinstance(exc, IntegrityError):
            raise translate_integrity_error(exc) from exc
        if isinstance(exc, StaleDataError):
            raise PreconditionFailed(
                "Someone else changed this record at the same time; read it again."
            ) from exc

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()


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
