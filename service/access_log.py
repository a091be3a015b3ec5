"""gunicorn's access log, safe to read: one line per request whatever the URL holds, and no
calendar feed token in it.

A request line is the client's text: ``/api/v1/x%0D%0A127.0.0.1 "GET /admin" 200`` arrives
in ``PATH_INFO`` decoded, newline included, and would add a forged line to the log. Every
text atom is therefore escaped as Apache does it (``\\xNN`` for control characters and
``\\\\``; gunicorn escapes ``"``), so a log line ends only where gunicorn ends it.

A calendar feed URL carries its secret token in the path (calendar clients cannot send
headers): everything after ``/calendars/`` is masked, in any spelling of the URL (with or
without ``.ics``, any case, a trailing slash, percent-encoded).
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import unquote

from gunicorn import glogging

# Up to the query, or the end of the path (of the request line's path: " HTTP/1.1").
FEED_TOKEN = re.compile(r'(/calendars/)[^?#"]*?(?=\s+HTTP/|[?#"]|\Z)', re.IGNORECASE)
MASK = r"\1<token>"

# C0 controls, DEL, C1 controls, the Unicode line and paragraph separators, and the
# backslash (so that an escape in the log is always one the logger wrote). gunicorn itself
# escapes the double quote.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\\\\]")
# Anything that may need work: most atoms (headers, environ) need none.
_SUSPECT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\\\\%]|/calendars/", re.IGNORECASE)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x5C:
        return "\\\\"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def redact(text: str) -> str:
    """``text`` fit for one log line: feed tokens masked, unsafe characters escaped."""
    if not _SUSPECT.search(text):
        return text
    masked = FEED_TOKEN.sub(MASK, text)
    if "%" in text:
        decoded = unquote(text, errors="replace")
        if FEED_TOKEN.search(decoded):  # /api/v1/%63alendars/..., /calendars%2F...
            masked = FEED_TOKEN.sub(MASK, decoded)
    return _UNSAFE.sub(_escape, masked)


@functools.lru_cache(maxsize=8)
def logged_atoms(log_format: str) -> frozenset[str]:
    """The atoms a format names (``{...}i/o/e`` ones lowercased, as gunicorn looks them
    up): only these reach the log, so only these need the work."""
    return frozenset(name.lower() if name.startswith("{") else name
                     for name in re.findall(r"%\(([^)]+)\)", log_format))


class AccessLogger(glogging.Logger):
    """gunicorn's logger whose logged access-log atoms are passed through ``redact``."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
              ) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        for name in logged_atoms(self.cfg.access_log_format):
            value = atoms.get(name)
            if isinstance(value, str):
                atoms[name] = redact(value)
        return atoms
