"""Swagger UI served from the pinned flask-swagger-ui package: no CDN, works offline."""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, redirect, send_from_directory, url_for
from werkzeug.exceptions import NotFound

from service.errors import CODES

ASSETS = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
ASSETS_URL = "/docs/assets/"

docs_assets = Blueprint("docs_assets", __name__)


@docs_assets.get("/docs/assets/<path:filename>")
def swagger_asset(filename: str):  # type: ignore[no-untyped-def]
    return send_from_directory(ASSETS, filename, max_age=86400)


@docs_assets.get("/")
def home():  # type: ignore[no-untyped-def]
    return redirect(url_for("api-docs.openapi_swagger_ui"))


@docs_assets.get("/problems/<code>")
def problem_type(code: str):  # type: ignore[no-untyped-def]
    """What a problem ``type`` means: the stable code, its status and meaning."""
    if code not in CODES:
        raise NotFound(f"No problem type '{code}'.")
    status, meaning = CODES[code]
    return {"code": code, "status": status, "meaning": meaning}
