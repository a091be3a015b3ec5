"""Authentication (``Authorization: Bearer <api key>``) and role checks for every API call.

The key is checked once per request, before the view; the resulting ``Actor`` is what the
domain's use cases receive to scope what the caller may see. Which roles may call a view is
not decided here: ``authorize`` asks the area's policy (``service/domain/<area>/policy.py``).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from service.domain.access import services as keys
from service.domain.access.actor import Actor
from service.domain.access.policy import Policy
from service.domain.errors import Unauthenticated
from service.extensions import unit_of_work
from service.uow import UnitOfWork

F = TypeVar("F", bound=Callable[..., Any])

BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "API key: ck_<role>_<id>_<secret>",
    "description": "An API key. Local demo keys are printed by `make run` and listed in the "
                   "README; production keys come from `flask keys create`.",
}


# The API and the FHIR facade take API keys; a calendar feed URL carries its own secret
# token instead (calendar clients cannot send headers), checked by the feed's use case.
AUTHENTICATED_PREFIXES = ("/api/", "/fhir/", "/metrics")
CALENDAR_FEED_PATH = re.compile(r"/api/v1/calendars/[^/]+\.ics")
# FHIR clients fetch the server's CapabilityStatement before they have a key.
PUBLIC_PATHS = frozenset({"/fhir/R4/metadata"})

# A client's X-Request-Id is kept (logged, echoed, stored in the append-only audit trail)
# only when it cannot carry anything but an identifier; otherwise the request gets a fresh id.
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id() -> str:
    """This request's id, chosen once: the client's X-Request-Id when it matches
    ``SAFE_REQUEST_ID`` (the whole value), else a fresh random one."""
    # (each object behind its proxy found once: every attribute read through a proxy
    # looks it up again)
    found = g._get_current_object()  # type: ignore[attr-defined]
    chosen: str | None = found.get("request_id")
    if chosen is None:
        sent = request._get_current_object().headers.get(  # type: ignore[attr-defined]
            "X-Request-Id", "")
        chosen = sent if SAFE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        found.request_id = chosen
    return chosen


def _authenticate() -> None:
    request_id()
    current = request._get_current_object()  # type: ignore[attr-defined]
    path = current.path
    if not path.startswith(AUTHENTICATED_PREFIXES) or current.method == "OPTIONS":
        return
    if CALENDAR_FEED_PATH.fullmatch(path) or path in PUBLIC_PATHS:
        return  # the feed's token is its credential; other methods answer 405 as such
    header = current.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Send an API key as 'Authorization: Bearer <key>'.",
                              code="unauthenticated")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    g._get_current_object().actor = keys.authenticate(  # type: ignore[attr-defined]
        _key_lookup, token.strip(),
        cache_seconds=app.config["SETTINGS"].api_key_cache_seconds)


def _key_lookup() -> UnitOfWork:
    """Where a key not cached is looked up (made only then)."""
    return unit_of_work(read_only=True)


def _request_id_header(response):  # type: ignore[no-untyped-def]
    request_id = getattr(g, "request_id", None)
    if request_id:
        response.headers["X-Request-Id"] = request_id
    return response


def authorize(policy: Policy, action: str) -> Callable[[F], F]:
    """Let the decorated view method run only for the roles ``policy`` allows ``action``.

    The roles come from the area's policy (``service/domain/<area>/policy.py``), also for the
    operation's OpenAPI description ("Roles: ..."); a route test checks every route names
    its action or is public on purpose.
    """
    allowed = policy.roles(action)  # an unknown action fails at import time

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            actor: Actor | None = getattr(g, "actor", None)
            if actor is None:
                raise Unauthenticated("Authentication required.", code="unauthenticated")
            policy.require(actor, action)
            return view(*args, **kwargs)

        # Document the answers every authenticated operation may give (as alt_response does).
        responses = wrapper.__dict__.setdefault("_apidoc", {}).setdefault(
            "response", {}).setdefault("responses", {})
        responses.setdefault(401, ["UNAUTHORIZED"])
        responses.setdefault(403, ["FORBIDDEN"])
        roles_text = ", ".join(sorted(r.value for r in allowed))
        wrapper.__doc__ = f"{(view.__doc__ or '').rstrip()}\n\nRoles: {roles_text}."
        wrapper.policy_action = (policy, action)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def init_app(app: Flask) -> None:
    app.before_request(_authenticate)
    app.after_request(_request_id_header)
