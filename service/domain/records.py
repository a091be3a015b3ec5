"""What every stored record of the clinic has: an opaque id, timestamps and a version.

The version is SQLAlchemy's ``version_id_col``: an UPDATE only matches the row it read, so
two concurrent edits made from the same ETag cannot both win.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Select, Uuid, func, select
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column

from service.db import UTCDateTime, utcnow
from service.domain.errors import NotFound, PreconditionFailed

if TYPE_CHECKING:
    from service.uow import UnitOfWork

T = TypeVar("T")


class Record:
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(nullable=False)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int


def paginate(session: Session, query: Select[tuple[T]], *, page: int, page_size: int) -> Page[T]:
    """One page of a query's rows plus the total count (pages start at 1)."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    items = list(session.scalars(query.limit(page_size).offset((page - 1) * page_size)))
    return Page(items=items, total=total or 0)


def get_or_raise(session: Session, model: type[R], record_id: uuid.UUID, *, code: str,
                 what: str) -> R:
    record = session.get(model, record_id)
    if record is None:
        raise NotFound(f"No {what} with this id.", code=code)
    return record


def apply_changes(record: Record, changes: Mapping[str, Any], *,
                  expected_version: int | None) -> None:
    """Apply a partial update made from the version the caller read (its ETag); None: from
    whichever version is current (``If-Match: *``)."""
    if expected_version is not None and record.version != expected_version:
        raise PreconditionFailed(
            "The record changed since you read it; fetch it again and retry.",
            current_version=record.version,
        )
    for name, value in changes.items():
        setattr(record, name, value)


def deactivate(uow: UnitOfWork, model: type[R], record_id: uuid.UUID, *, code: str,
               what: str) -> R:
    """Mark a directory record inactive: kept for history, offered for nothing new."""

    def work() -> R:
        record = get_or_raise(uow.session, model, record_id, code=code, what=what)
        record.active = False  # type: ignore[attr-defined]
        return record

    return uow.run(work)
