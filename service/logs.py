"""Logging through the standard ``logging`` module: plain text locally, one JSON object per
line with ``LOG_FORMAT=json`` (for a log pipeline).

With JSON, every request leaves one line from the ``service.requests`` logger (request id,
route template, method, status, duration, the API key's public id and role; never the path,
the query or a body) and gunicorn's text access log is turned off (``gunicorn.conf.py``);
with text, gunicorn's access log is the request line, as before. Scheduler actions log
through the same formatter, with ``job`` and ``duration_ms``.

Nothing here adds data to a line that its caller did not put there; callers already log ids,
counts and error types only (no names, contact details, clinical values or secrets).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request

from service.config import Settings
from service.metrics import route_template

requests_log = logging.getLogger("service.requests")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s %(message)s"
# The structured members a caller may pass with ``extra=``: these and no others reach a line.
FIELDS = ("request_id", "method", "route", "status", "duration_ms", "key", "role", "code",
          "job", "outcome", "outbox")
# ck_<role>_<public id>_<secret>: the public id is logged once the key was accepted.
KEY_PUBLIC_ID = re.compile(r"ck_[a-z]+_([A-Za-z0-9]+)_")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
            entry["frames"] = self.formatException(record.exc_info).splitlines()[1:-1]
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(settings: Settings) -> None:
    """The root logger's one handler, in the chosen format (idempotent)."""
    root = logging.getLogger()
    formatter: logging.Formatter = (JsonFormatter() if settings.log_format == "json"
                                    else logging.Formatter(TEXT_FORMAT))
    ours = [handler for handler in root.handlers if getattr(handler, "_clinic", False)]
    if not root.handlers:  # as logging.basicConfig: leave a runner's own set-up alone
        handler = logging.StreamHandler()
        handler._clinic = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        ours = [handler]
    for handler in ours:
        handler.setFormatter(formatter)


def _request_line(response: Response) -> Response:
    actor = g.get("actor")
    key = None
    if actor is not None:
        found = KEY_PUBLIC_ID.match(request.headers.get("Authorization", "")[7:].strip())
        key = found.group(1) if found else None
    seconds = g.get("request_seconds") or 0.0
    requests_log.info(
        "%s %s %s", request.method, route_template(), response.status_code,
        extra={"request_id": g.get("request_id"), "method": request.method,
               "route": route_template(), "status": response.status_code,
               "duration_ms": round(seconds * 1000, 2), "key": key,
               "role": str(actor.role) if actor is not None else None,
               "code": g.get("problem_code")})
    return response


def init_app(app: Flask, settings: Settings) -> None:
    """JSON: one line per request. Registered before the metrics hook, so it runs after it
    (Flask runs ``after_request`` hooks last-registered first) and reads its duration."""
    if settings.log_format == "json":
        app.after_request(_request_line)
