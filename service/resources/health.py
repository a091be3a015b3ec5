"""Probes for load balancers and orchestrators (no authentication, no data).

``/healthz`` (liveness) never touches the database: a database outage must not get healthy
workers restarted. ``/readyz`` asks the database through the probe engine (a connection of
its own, every wait bounded by READINESS_TIMEOUT_SECONDS), so it answers 503 within about
that long when the database is down or hung, and 503 from the moment gunicorn got SIGTERM
(``CLINIC_DRAIN_FILE`` exists, see ``gunicorn.conf.py``) so a load balancer stops sending
requests before the workers stop.
"""

from __future__ import annotations

import os

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from werkzeug.exceptions import ServiceUnavailable

from service.db import is_unavailable
from service.errors import database_unavailable
from service.extensions import Blueprint, Schema, database
from service.migrate import pending_migrations

blp = Blueprint("health", __name__, description="Liveness and readiness probes.")


class HealthSchema(Schema):
    class Meta(Schema.Meta):
        dump_required = ("status",)  # liveness answers only its status

    status = ma.fields.String(metadata={"example": "ok"})
    database = ma.fields.String(metadata={"example": "ok"})
    migrations = ma.fields.String(metadata={"example": "at head"})


@blp.route("/healthz")
class Liveness(MethodView):
    @blp.response(200, HealthSchema)
    @blp.doc(security=[])
    def get(self):
        """The process is alive"""
        return {"status": "ok"}


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE")
    @blp.doc(security=[])
    def get(self):
        """The database answers and its schema is at the newest migration"""
        drain_file = current_app.config["SETTINGS"].drain_file
        if drain_file and os.path.exists(drain_file):  # SIGTERM: let the balancer drain us
            raise ServiceUnavailable("The instance is shutting down.")
        try:
            pending = pending_migrations(database().probe)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            if is_unavailable(exc):
                return database_unavailable(exc, during="readiness probe")
            raise ServiceUnavailable("The database is not reachable.") from exc
        if pending:
            raise ServiceUnavailable("The database schema is not at the newest migration.")
        return {"status": "ok", "database": "ok", "migrations": "at head"}
