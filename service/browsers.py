"""What browsers and HTTP caches are told: CORS for the allow-listed origins, and
``Cache-Control: no-store`` on every answer of the API and the FHIR facade.

No-store everywhere under ``/api/`` and ``/fhir/`` (errors, lists and 304s included) rather
than per route: most answers carry patient data or are shaped by the caller's key, a rule
per route would be one more thing to forget on the next route, and nothing there gains
much from a shared cache. The exceptions are public documents that hold no patient data and
look the same to everyone: the FHIR CapabilityStatement (``PUBLIC``), and, outside these
prefixes, ``/openapi.json``, ``/docs`` and the problem pages, which keep the default
(heuristic) caching. One route keeps the policy its view sets (``OWN_POLICY``): a calendar
feed, ``private, no-cache``, which calendar clients (subscribed by the feed's owner) keep and
revalidate with its ETag; no shared cache may store it. A front end that keeps its own copy
of a record can still revalidate it with ``If-None-Match`` (304 without a body).
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask_cors import CORS

from service.config import Settings

NO_STORE_PREFIXES = ("/api/", "/fhir/")
# Endpoints under those prefixes that are public documents, with the caching they allow.
PUBLIC: dict[str, str] = {"fhir.Capabilities": "public, max-age=3600"}
# Endpoints under those prefixes whose views set Cache-Control themselves.
OWN_POLICY = frozenset({"calendar.calendar_feed"})

# What a browser script may read of an answer besides the CORS-safelisted headers.
EXPOSED_HEADERS = ["ETag", "Location", "Link", "X-Pagination", "Retry-After",
                   "Idempotent-Replayed", "X-Request-Id"]
# What it may send besides the CORS-safelisted headers.
ALLOWED_HEADERS = ["Authorization", "Content-Type", "If-Match", "If-None-Match",
                   "Idempotency-Key", "Prefer", "X-Request-Id"]
# Where the allow-list applies: the API, the FHIR facade and the OpenAPI document.
CORS_RESOURCES = (r"/api/*", r"/fhir/*", r"/openapi.json")


def _cache_control(response: Response) -> Response:
    current = request._get_current_object()  # type: ignore[attr-defined] # found once
    endpoint = current.endpoint or ""
    if not current.path.startswith(NO_STORE_PREFIXES):
        return response
    if endpoint in OWN_POLICY and "Cache-Control" in response.headers:
        return response
    response.headers["Cache-Control"] = PUBLIC.get(endpoint, "no-store")
    return response


def init_app(app: Flask, settings: Settings) -> None:
    app.after_request(_cache_control)
    if settings.cors_origins:
        options = {"origins": list(settings.cors_origins)}
        CORS(app, resources={pattern: options for pattern in CORS_RESOURCES},
             expose_headers=EXPOSED_HEADERS, allow_headers=ALLOWED_HEADERS,
             max_age=settings.cors_max_age)
