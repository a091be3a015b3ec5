"""``Idempotency-Key`` on POST (IETF draft-ietf-httpapi-idempotency-key-header).

Put ``@idempotent`` on a POST view method as its OUTERMOST decorator, above
``@blp.arguments``::

    @idempotent
    @blp.arguments(BookingCreateSchema)
    @blp.response(201, BookingSchema)
    @blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "create")
    def post(self, data): ...

The request runs with its writes held in one transaction (``hold_request_transaction``):
once the final response is known (after the error handlers turned any exception into
problem+json), the answer is stored under the key by the transaction's last statement and
commits with the change, or, when the key already has its request, the change is rolled
back and the key's answer goes out instead: the stored one (a replay), or
idempotency_key_reused for another request, or idempotency_key_in_progress while an older
claim may still be running. So a 4xx is stored and replayed like a 2xx; a 5xx stores nothing
(the change, if any, is rolled back) and the client may retry; and a change is never
committed without its answer, nor acknowledged before both are (a failed commit answers 503).
A key reused with another body is refused as such even when that body is invalid.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable
from copy import deepcopy
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import Response, after_this_request, current_app, g, request
from sqlalchemy.exc import IntegrityError

from service.db import is_unavailable, utcnow
from service.domain.errors import DomainError
from service.domain.idempotency import services as idempotency
from service.errors import database_unavailable, problem, to_problem
from service.extensions import (
    IDEMPOTENT_REPLAYED_HEADER,
    end_held_transaction,
    hold_request_transaction,
    settle_held_transaction,
)
from service.uow import translate_integrity_error

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

IDEMPOTENCY_KEY = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    "description": "Optional. A unique value (a UUID, say) that makes retrying this POST "
                   "safe: the first answer (2xx or 4xx) is kept 24 hours for your API key "
                   "and returned again, with `Idempotent-Replayed: true`, to a repeat of "
                   "the same request. The same key with a different request: 422 "
                   "idempotency_key_reused. A repeat sent while the first request is "
                   "still running waits for it and gets the same answer. 1 to 255 "
                   "printable ASCII characters; a "
                   "quoted structured-field string is accepted too.",
}

# The response headers stored with the answer and sent again on a replay.
KEPT_HEADERS = ("Content-Type", "Location", "ETag")

_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]{1,255}")
_SF_ESCAPE = re.compile(r'\\(["\\])')


def idempotent(view: F | None = None, *, withhold: tuple[str, ...] = ()) -> Any:
    """Make the decorated POST view honour an optional ``Idempotency-Key`` header.

    ``@idempotent(withhold=("key",))``: these top-level members of a JSON answer are stored
    (and replayed) as null: a secret shown once is never kept in the idempotency store.
    """
    if view is None:
        return functools.partial(idempotent, withhold=withhold)

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get(HEADER)
        if header is None:
            return view(*args, **kwargs)
        key = _parse_key(header)
        key_id = getattr(getattr(g, "actor", None), "key_id", None)
        if key_id is None:  # keys are scoped to an API key: nothing to scope this one to
            return view(*args, **kwargs)
        now = utcnow()
        lease = timedelta(seconds=current_app.config["SETTINGS"].idempotency_lease_seconds)
        fingerprint = request_hash()
        hold_request_transaction()

        @after_this_request
        def _settle(response: Response) -> Response:
            try:
                return _settled(response, api_key_id=key_id, key=key, request_hash=fingerprint,
                                now=now, lease=lease, withhold=withhold)
            finally:
                end_held_transaction()

        return view(*args, **kwargs)

    _document(wrapper)
    return wrapper  # type: ignore[return-value]


def _parse_key(header: str) -> str:
    key = header
    if len(key) >= 2 and key[0] == key[-1] == '"':  # the draft's sf-string form: "abc"
        key = _SF_ESCAPE.sub(r"\1", key[1:-1])
    if not _PRINTABLE_ASCII.fullmatch(key):
        raise DomainError(f"{HEADER} must be 1 to 255 printable ASCII characters.",
                          code="invalid_idempotency_key", title="Invalid Idempotency-Key")
    return key


def request_hash() -> str:
    """SHA-256 of the current request's method, path (with its query) and raw body bytes."""
    digest = hashlib.sha256()
    digest.update(request.method.encode("ascii"))
    digest.update(b"\n")
    digest.update(request.full_path.encode("utf-8"))
    digest.update(b"\n")
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def _replayed(replay: idempotency.Replay) -> Response:
    response = Response(replay.body, status=replay.status)
    for name, value in replay.headers.items():
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response


def _kept_body(response: Response, withhold: tuple[str, ...]) -> str:
    body = response.get_data(as_text=True)
    if not withhold:
        return body
    data = response.get_json(silent=True)
    if not isinstance(data, dict):
        return body
    return json.dumps({name: None if name in withhold else value
                       for name, value in data.items()})


def _settled(response: Response, *, api_key_id: Any, key: str, request_hash: str,
             now: datetime, lease: timedelta, withhold: tuple[str, ...] = ()) -> Response:
    """The answer to send: ``response`` once it is stored with the request's change, or
    the key's own answer (the change rolled back), or a 503 when the commit failed."""
    uow = settle_held_transaction()
    if response.status_code >= 500 or g.get("database_unavailable"):
        # Nothing is stored and the change (if any) is rolled back: the client may retry.
        return response
    headers = {name: response.headers[name] for name in KEPT_HEADERS
               if name in response.headers}
    try:
        replay = idempotency.settle(
            uow, api_key_id=api_key_id, key=key, method=request.method, path=request.path,
            request_hash=request_hash, now=now, lease=lease, status=response.status_code,
            body=_kept_body(response, withhold), headers=headers)
    except DomainError as exc:
        return to_problem(exc)
    except IntegrityError as exc:  # a constraint checked at the commit
        return to_problem(translate_integrity_error(exc))
    except Exception as exc:  # noqa: BLE001 - neither stored nor committed: no 2xx goes out
        if is_unavailable(exc):
            return database_unavailable(exc, during="Idempotency-Key answer")
        log.error("could not store the answer for an Idempotency-Key (%s) on %s %s",
                  type(exc).__name__, request.method, request.url_rule)
        return problem(503, "service_unavailable", "Service Unavailable",
                       "The change could not be committed; retry with the same key.")
    if replay is None:
        return response
    # The answer is the stored one: what this run's error handler noted goes with its own.
    g.pop("problem_code", None)
    return _replayed(replay)


def _document(wrapper: Callable[..., Any]) -> None:
    """Add the header and its 400/409/422 answers to the operation's OpenAPI doc."""
    apidoc = deepcopy(getattr(wrapper, "_apidoc", {}))
    manual = apidoc.get("manual_doc", {})
    # flask-smorest's manual doc (@blp.doc) replaces the parameters of @blp.arguments
    # wholesale, so join whichever list will survive.
    target = manual if "parameters" in manual else apidoc.setdefault("arguments", {})
    parameters = target.setdefault("parameters", [])
    if not any(isinstance(p, dict) and p.get("name") == HEADER for p in parameters):
        parameters.append(dict(IDEMPOTENCY_KEY))
    responses = apidoc.setdefault("response", {}).setdefault("responses", {})
    responses.setdefault(400, ["BAD_REQUEST"])
    responses.setdefault(409, ["CONFLICT"])
    responses.setdefault(422, ["UNPROCESSABLE_ENTITY"])
    for status in apidoc.get("success_status_codes", []):  # a replay says so
        for answer in responses.get(status, []):
            if isinstance(answer, dict):
                answer["headers"] = {**(answer.get("headers") or {}), **IDEMPOTENT_REPLAYED_HEADER}
    wrapper._apidoc = apidoc  # type: ignore[attr-defined]
