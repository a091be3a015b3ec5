"""Authentication (``Authorization: Bearer <api key>``) and role checks for every API call.

The key is checked once per request, before the view; the resulting ``Actor`` is what the
domain's use cases receive to scope what the caller may see.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, g, request

from service.domain.access import services as keys
from service.domain.access.actor import Actor, Role
from service.domain.errors import Forbidden, Unauthenticated
from service.extensions import unit_of_work

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
AUTHENTICATED_PREFIXES = ("/api/", "/fhir/")
CALENDAR_FEED_PATH = re.compile(r"/api/v1/calendars/[^/]+\.ics")


def _authenticate() -> None:
    g.request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
    if not request.path.startswith(AUTHENTICATED_PREFIXES) or request.method == "OPTIONS":
        return
    if CALENDAR_FEED_PATH.fullmatch(request.path):
        return  # its token is its credential; any other method answers 405 as such
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Send an API key as 'Authorization: Bearer <key>'.",
                              code="unauthenticated")
    g.actor = keys.authenticate(unit_of_work(read_only=True), token.strip())


def _request_id_header(response):  # type: ignore[no-untyped-def]
    request_id = getattr(g, "request_id", None)
    if request_id:
        response.headers["X-Request-Id"] = request_id
    return response


def requires(*roles: Role) -> Callable[[F], F]:
    """Allow only these roles to call the decorated view method."""
    allowed = frozenset(roles)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            actor: Actor | None = getattr(g, "actor", None)
            if actor is None:
                raise Unauthenticated("Authentication required.", code="unauthenticated")
            if actor.role not in allowed:
                raise Forbidden(f"The {actor.role.value} role may not do this.",
                                code="forbidden", allowed_roles=sorted(allowed))
            return view(*args, **kwargs)

        # Document the answers every authenticated operation may give (as alt_response does).
        responses = wrapper.__dict__.setdefault("_apidoc", {}).setdefault(
            "response", {}).setdefault("responses", {})
        responses.setdefault(401, ["UNAUTHORIZED"])
        responses.setdefault(403, ["FORBIDDEN"])
        roles_text = ", ".join(sorted(r.value for r in allowed))
        wrapper.__doc__ = f"{(view.__doc__ or '').rstrip()}\n\nRoles: {roles_text}."
        return wrapper  # type: ignore[return-value]

    return decorator


ALL_ROLES = tuple(Role)
STAFF = (Role.ADMIN, Role.STAFF)


def init_app(app: Flask) -> None:
    app.before_request(_authenticate)
    app.after_request(_request_id_header)
