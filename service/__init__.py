"""Telehealth scheduling and consultation service: ``create_app`` builds the WSGI app."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from flask_cors import CORS

from service import auth, errors
from service.config import Settings
from service.db import Database
from service.domain.reminders import services as reminder_services
from service.extensions import Api

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
(missing: 428, stale: 412).

**Lists** are paginated with `page` and `page_size` (at most 100); the `X-Pagination`
header carries the totals.

**Times** are RFC 3339 with an offset; the service stores UTC.
"""


def create_app(config_override: dict[str, Any] | None = None) -> Flask:
    settings = Settings.from_env()
    reminder_services.configure(settings)  # planning's quiet hours: injected, read once here
    app = Flask(__name__, static_folder=None)
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
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)

    database = Database.connect(app.config["DATABASE_URL"], app.config["DATABASE_REPLICA_URL"],
                                echo=settings.sql_echo)
    app.extensions["clinic.database"] = database

    if settings.cors_origins:
        CORS(app, resources={r"/api/*": {"origins": list(settings.cors_origins)}},
             expose_headers=["ETag", "Location", "X-Pagination", "X-Request-Id",
                            "Idempotent-Replayed"],
             allow_headers=["Authorization", "Content-Type", "If-Match", "If-None-Match",
                            "Idempotency-Key"])

    from service.resources import register_blueprints
    from service.resources.docs import docs_assets

    api = Api(app)
    register_blueprints(api)
    app.register_blueprint(docs_assets)
    auth.init_app(app)
    errors.register_error_handlers(app)

    from service.cli import register_commands

    register_commands(app)
    return app
