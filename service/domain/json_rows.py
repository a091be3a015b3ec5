"""PostgreSQL: rows handed to a statement as ONE JSON parameter, typed by the server.

The change feed's statement (``calendar/sync.py``) writes a transaction's rows of several
tables at once: its numbered changes, the bookings' history rows, the planned reminders.
Sent as arrays (one per column), each array costs the client a dump of its own; sent as one
JSON text per table, the client writes plain JSON (C-level) and PostgreSQL converts each
field to its column's type (``json_populate_recordset`` over the table's row type): the
same stored values, about a quarter less CPU for the statement.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Table, bindparam, cast, func, literal_column
from sqlalchemy.sql.selectable import TableValuedAlias

ORDER = "ordinality"  # the position column PostgreSQL adds WITH ORDINALITY, 1 for the first


def _plain(value: object) -> str:
    """The JSON text of what ``json`` cannot write: ids and instants (ISO 8601 with their
    offset: the same instant once read into ``timestamptz``)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot be a field of a JSON row")


_ENCODER = json.JSONEncoder(default=_plain, separators=(",", ":"))


def parameter(rows: Sequence[dict[str, Any]]) -> str:
    """The value of a ``rows_of`` parameter: the rows (their keys: column names)."""
    return _ENCODER.encode(rows)


def rows_of(table: Table, name: str, *, alias: str) -> TableValuedAlias:
    """The rows of the JSON parameter ``name`` as ``table``'s row type, WITH ORDINALITY
    (``.c.ordinality``: their order in the parameter); fields a row lacks are NULL."""
    return func.json_populate_recordset(
        literal_column(f"NULL::{table.name}"),
        cast(bindparam(name, type_=String), JSON)).table_valued(
        *(column.name for column in table.columns), with_ordinality=ORDER).alias(alias)
