"""The floor for ``GET /api/v1/slots``: the same response bytes, precomputed.

A tiny Flask app that answers ``GET /api/v1/slots`` with the captured JSON of a real slots
response after one cheap auth-like check of the ``Authorization`` header. Served by gunicorn
with the same flags as the service, it measures what serving that payload costs when there
is nothing to compute: ``gunicorn ... 'bench.floor_app:create_app()'`` with

- ``BENCH_FLOOR_BODY``: the file holding the captured response body;
- ``BENCH_FLOOR_AUTHORIZATION``: the ``Authorization`` header value to accept.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from flask import Flask, Response, request

UNAUTHORIZED = b'{"status": 401, "code": "unauthenticated"}'


def create_app() -> Flask:
    body = Path(os.environ["BENCH_FLOOR_BODY"]).read_bytes()
    expected = os.environ["BENCH_FLOOR_AUTHORIZATION"].encode()
    app = Flask(__name__, static_folder=None)

    @app.get("/api/v1/slots")
    def slots() -> Response:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return Response(UNAUTHORIZED, status=401, mimetype="application/problem+json")
        return Response(body, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status": "ok"}', mimetype="application/json")

    return app
