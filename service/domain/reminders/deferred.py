"""PostgreSQL: a booking change's planned reminders written by the change feed's statement.

The planning handlers (``services.py``) run before the change feed numbers the
transaction's changes (``calendar/sync.py``: the bus's final handler, one statement right
before the commit). On PostgreSQL their rows wait on the unit of work (``defer``, in
``uow.memo``) and ride that statement as a data-modifying CTE (``written_with_the_feed``):
one round trip fewer a booking, the same rows with the same values (the rows as one JSON
parameter, each field converted by the server to its column's type: ``json_rows.py``).
Elsewhere they are written at once.

A reminder handler that reads or updates the booking's reminders later in the same
transaction first writes what waits (``services._written``), so it sees every row.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from sqlalchemy import CTE, insert, select

from service.domain import json_rows
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


def take_deferred(memo: MutableMapping[object, Any]) -> dict[str, Any]:
    """The parameter of ``written_with_the_feed`` for the rows kept so far (none: an empty
    array, no row), which are then no longer kept."""
    return {"planned_reminders": json_rows.parameter(take(memo))}


def written_with_the_feed() -> CTE:
    """The kept rows as a data-modifying CTE (one JSON parameter, given by
    ``take_deferred``)."""
    table = Reminder.__table__
    rows = json_rows.rows_of(table, "planned_reminders", alias="planned_reminder")
    return insert(table).from_select(
        list(COLUMNS), select(*(rows.c[name] for name in COLUMNS))).cte("planned_reminders")
