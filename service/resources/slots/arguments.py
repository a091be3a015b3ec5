"""The slot search's query arguments, read once per distinct query string (issue 14).

A repeated search sends the very same query string again and again; reading it (the
checks of ``RequestParser``, then the schema's fields) is a pure function of those bytes,
so its result is kept, per process, for the query strings it succeeded on, and given again
(a copy) when the same bytes come back. A query string that fails is read in full every
time, so its problem+json answer is the parser's own, unchanged. Nothing here is state
other workers must see: each computes the same arguments from the same bytes.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Request

from service.extensions import Blueprint
from service.parsing import RequestParser

MAX_QUERY_BYTES = 2048  # longer query strings are read every time
MAX_ENTRIES = 512


class RepeatedQueryParser(RequestParser):
    """``RequestParser`` keeping what a query string of a route (its schema given as a
    class) read to; anything else is parsed as usual."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def parse(self, argmap: Any, req: Request | None = None, *, location: str | None = None,
              validate: Any = None, **kwargs: Any) -> Any:
        if location != "query" or validate is not None or not isinstance(argmap, type):
            return super().parse(argmap, req, location=location, validate=validate, **kwargs)
        request = req if req is not None else self.get_default_request()
        raw = request.query_string
        key = (argmap, kwargs.get("unknown"), raw)  # what else it is given bears on errors
        found = self._read.get(key)
        if found is None:
            found = super().parse(argmap, request, location=location, **kwargs)
            if len(raw) <= MAX_QUERY_BYTES:
                with self._lock:
                    if len(self._read) >= MAX_ENTRIES:
                        self._read.clear()
                    self._read[key] = found
        # A copy (lists too): the caller may change what it was given.
        return {name: list(value) if isinstance(value, list) else value
                for name, value in found.items()}


class SlotsBlueprint(Blueprint):
    """The slots resource's blueprint: ``Blueprint`` reading query strings once."""

    ARGUMENTS_PARSER = RepeatedQueryParser()
