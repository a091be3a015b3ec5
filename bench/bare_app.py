"""The floor for ``POST /api/v1/bookings``: a bare Flask + SQLAlchemy endpoint, one INSERT.

``POST /bare`` parses the JSON body, checks the ``Authorization`` header cheaply and inserts
the body into ``bench_bare(id uuid, payload text)``, a table the app creates on start (under
an advisory lock, since every gunicorn worker starts the app). The service's own PostgreSQL
engine (``service.db.make_engine``). ``gunicorn ... 'bench.bare_app:create_app()'`` with
``DATABASE_URL`` and ``BENCH_BARE_AUTHORIZATION`` (the header value to accept).

``GET /bare/<id>`` is the floor for ``GET /api/v1/bookings/{id}``: the same header check,
one SELECT by primary key (its own connection checkout and transaction), the row as JSON.

``POST /bare/same-rows`` is the "same rows" floor for ``POST /api/v1/bookings``: with
``BENCH_SAME_ROWS`` naming a JSON file ``{table: [row, ...]}`` (the rows one real booking
wrote, captured by bench/writes.py), it inserts those rows, one INSERT a table, into copies
of the tables (``bench_same_<table>``, ``LIKE <table> INCLUDING DEFAULTS``: the columns,
no keys, constraints or indexes) in one transaction.
"""

from __future__ import annotations

import hmac
import json
import os
import uuid

from flask import Flask, Response, jsonify, request
from sqlalchemy import (
    Column,
    MetaData,
    Table,
    Text,
    Uuid,
    insert,
    select,
    text,
)

from service.db import DatabaseTimeouts, make_engine

metadata = MetaData()
bench_bare = Table("bench_bare", metadata, Column("id", Uuid, primary_key=True),
                   Column("payload", Text, nullable=False))
CREATE_LOCK = 7_246_813  # any constant: serialises CREATE TABLE IF NOT EXISTS across workers


def _postgres_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def create_app() -> Flask:
    # The service's own PostgreSQL engine (pool, timeouts, the ping of a pooled connection
    # that may be stale), so the floor pays what the service's engine pays.
    engine = make_engine(_postgres_url(os.environ["DATABASE_URL"]), timeouts=DatabaseTimeouts())
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CREATE_LOCK})
        metadata.create_all(connection, checkfirst=True)
        same_rows = _same_rows(connection)
    expected = os.environ.get("BENCH_BARE_AUTHORIZATION", "").encode()
    app = Flask(__name__, static_folder=None)

    @app.post("/bare")
    def bare() -> tuple[Response, int]:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return jsonify(status=401, code="unauthenticated"), 401
        if not isinstance(request.get_json(silent=True), dict):
            return jsonify(status=400, code="invalid_json"), 400
        row_id = uuid.uuid4()
        with engine.begin() as connection:
            connection.execute(insert(bench_bare).values(
                id=row_id, payload=request.get_data(as_text=True)))
        return jsonify(id=str(row_id)), 201

    @app.post("/bare/same-rows")
    def bare_same_rows() -> tuple[Response, int]:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return jsonify(status=401, code="unauthenticated"), 401
        if not isinstance(request.get_json(silent=True), dict):
            return jsonify(status=400, code="invalid_json"), 400
        with engine.begin() as connection:
            for statement, rows in same_rows:
                connection.execute(statement, {"rows": rows})
        return jsonify(id=str(uuid.uuid4())), 201

    @app.get("/bare/<uuid:row_id>")
    def bare_read(row_id: uuid.UUID) -> tuple[Response, int]:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return jsonify(status=401, code="unauthenticated"), 401
        with engine.begin() as connection:
            payload = connection.scalar(select(bench_bare.c.payload).where(
                bench_bare.c.id == row_id))
        if payload is None:
            return jsonify(status=404, code="not_found"), 404
        return jsonify(id=str(row_id), payload=payload), 200

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    return app


def _same_rows(connection) -> list[tuple[object, str]]:  # type: ignore[no-untyped-def]
    """(INSERT statement, its rows as JSON) for each table of ``BENCH_SAME_ROWS``."""
    path = os.environ.get("BENCH_SAME_ROWS")
    if not path:
        return []
    with open(path) as file:
        tables: dict[str, list[dict[str, object]]] = json.load(file)
    prepared = []
    for table, rows in tables.items():
        copy = f"bench_same_{table}"
        connection.execute(text(f"CREATE TABLE IF NOT EXISTS {copy} "
                                f"(LIKE {table} INCLUDING DEFAULTS)"))
        prepared.append((text(f"INSERT INTO {copy} SELECT * FROM "
                              f"json_populate_recordset(NULL::{copy}, :rows)"),
                         json.dumps(rows)))
    return prepared
