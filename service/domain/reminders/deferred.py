"""PostgreSQL: a booking change's planned reminders written by the change feed's statement.

The planning handlers (``services.py``) run before the change feed numbers the
transaction's changes (``calendar/sync.py``: the bus's final handler, one statement right
before the commit). On PostgreSQL their rows wait on the unit of work (``defer``, in
``uow.memo``) and ride that statement as a data-modifying CTE (``written_with_the_feed``):
one round trip fewer a booking, the same rows with the same values (the rows as one JSON
parameter, each field converted by the server to its column's type,
``json_populate_recordset``). Elsewhere they are written at once.

A reminder handler that reads or updates the booking's reminders later in the same
transaction first writes what waits (``services._written``), so it sees every row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any

from sqlalchemy import CTE, JSON, String, bindparam, cast, func, insert, literal_column, select

from service.domain.reminders.models import Reminder

_DEFERRED = "reminders.deferred"

# The columns a planned row gives (``services._plan``), in the order they are inserted.
COLUMNS = ("id", "booking_id", "kind", "plan_version", "dedupe_key", "status", "reason",
           "due_at", "next_attempt_at", "attempts", "created_at", "updated_at")


def defer(memo: MutableMapping[object, Any], rows: list[dict[str, Any]]) -> None:
    """Keep planned rows for the change feed's statement."""
    memo.setdefault(_DEFERRED, []).extend(rows)


def take(memo: MutableMapping[object, Any]) -> list[dict[str, Any]]:
    """The rows kept so far (none: an empty list), which are then no longer kept."""
    return memo.pop(_DEFERRED, [])


def _plain(value: object) -> str:
    """The JSON text of what ``json`` cannot write: ids and instants (ISO 8601 with their
    offset: the same instant once read into ``timestamptz``)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a planned reminder's field")


def take_deferred(memo: MutableMapping[object, Any]) -> dict[str, Any]:
    """The parameter of ``written_with_the_feed`` for the rows kept so far (none: an empty
    array, no row), which are then no longer kept."""
    return {"planned_reminders": json.dumps(take(memo), default=_plain,
                                            separators=(",", ":"))}


def written_with_the_feed() -> CTE:
    """The kept rows as a data-modifying CTE (one JSON parameter, given by
    ``take_deferred``)."""
    table = Reminder.__table__
    rows = func.json_populate_recordset(
        literal_column(f"NULL::{table.name}"),
        cast(bindparam("planned_reminders", type_=String), JSON)).table_valued(
        *COLUMNS).alias("planned_reminder")
    return insert(table).from_select(
        list(COLUMNS), select(*(rows.c[name] for name in COLUMNS))).cte("planned_reminders")
