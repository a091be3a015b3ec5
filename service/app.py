"""The WSGI app: ``create_app`` builds it (``service.wsgi``, the tests, the benches)."""

from __future__ import annotations

import logging
import weakref
from typing import Any

from flask import Flask

from service import auth, bootstrap, browsers, errors, logs, metrics, ratelimits
from service.cli import register_commands
from service.config import Settings
from service.db import Database, DatabaseTimeouts
from service.domain.availability import cache as slot_cache
from service.extensions import Api
from service.parsing import JSONProvider
from service.resources import register_blueprints
from service.resources.docs import docs_assets

API_TITLE = "Clinic scheduling API"
API_VERSION = "1.0.0"

API_DESCRIPTION = """\
Scheduling back end of an Arizona ketamine-therapy clinic: providers and their licenses,
locations, service types, patients, availability, slots and bookings.

**Authentication.** Every `/api/v1` call needs `Authorization: Bearer <api key>`. Click
*Authorize* and paste a key. Locally, `make run` prints one demo key per role (they are
listed in the README; they exist only in the demo database).

**Errors** are `application/problem+json` (RFC 9457) with a stable `code`; `type` links to
`/problems/<code>`.

**Updates** use optimistic concurrency: read the `ETag`, send it back in `If-Match`
(missing: 428, stale: 412). The comparison is strong: a weak `W/"v1"` never matches; `*`
matches whatever version is current.

**Lists** are paginated with `page` (at most 100000) and `page_size` (at most 100); the
`X-Pagination` header carries the totals.

**Input** is JSON (`Content-Type: application/json`, else 415), read strictly: no NUL or
lone surrogate in text, whole numbers whole, dates and times in the years 1900 to 2200.

**Times** are RFC 3339 with an offset; the service stores UTC.
"""


class ServiceFlask(Flask):
    """Flask, whose ``ensure_sync`` (its documented override point) remembers its answer
    for the functions it is asked about again and again: each request asks it for every
    hook and the view (18 times for ``GET /bookings/{id}``), and whether a registered
    function is a coroutine function never changes. Kept by weak reference: a function
    made per request (an ``after_this_request`` closure) is forgotten with it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # True: the function itself runs (never the function as the value: it would keep
        # its own key alive).
        self._synced: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()

    def ensure_sync(self, func: Any) -> Any:
        try:
            if self._synced[func]:
                return func
        except (KeyError, TypeError):  # not asked yet, or no weak reference to it
            pass
        synced = super().ensure_sync(func)
        if synced is func:
            try:
                self._synced[func] = True
            except TypeError:
                pass
        return synced


def create_app(config_override: dict[str, Any] | None = None) -> Flask:
    settings = Settings.from_env()
    app = ServiceFlask(__name__, static_folder=None)
    app.config.update(
        SETTINGS=settings,
        DATABASE_URL=settings.database_url,
        DATABASE_REPLICA_URL=settings.database_replica_url,
        API_TITLE=API_TITLE,
        API_VERSION=API_VERSION,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
        OPENAPI_SWAGGER_UI_CONFIG={"persistAuthorization": True, "displayRequestDuration": True,
                                   "tryItOutEnabled": True},
        API_SPEC_OPTIONS={
            "info": {"description": API_DESCRIPTION},
            "security": [{"bearerAuth": []}],
            "servers": [{"url": "/"}],
        },
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    if config_override:
        app.config.update(config_override)
    app.json = JSONProvider(app)  # field order kept; request JSON decoded with limits
    logs.configure(settings)  # plain text, or JSON lines with LOG_FORMAT=json
    logging.getLogger("alembic").setLevel(logging.WARNING)

    database = Database.connect(app.config["DATABASE_URL"], app.config["DATABASE_REPLICA_URL"],
                                echo=settings.sql_echo,
                                timeouts=DatabaseTimeouts.from_settings(settings))
    app.extensions["clinic.database"] = database
    app.extensions["clinic.bus"] = bootstrap.bootstrap(settings)
    slot_cache.configure(app.config.get("REDIS_URL", settings.redis_url))

    browsers.init_app(app, settings)
    # First hooks: the request's log line and metrics, then the rate limits (before the key
    # check, so refused keys count against their address).
    logs.init_app(app, settings)
    metrics.init_app(app, database)
    ratelimits.init_app(app, settings)

    api = Api(app)
    register_blueprints(api)
    app.register_blueprint(docs_assets)
    auth.init_app(app)
    errors.register_error_handlers(app)
    register_commands(app)
    return app
