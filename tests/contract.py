"""Every JSON answer the suite receives has the members its documented schema marks
``required`` (generated clients fail on a missing one): ``record`` runs after each request
of the test app and notes each missing member, the ``conftest`` fails the test that got it."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, Response, request

MISSING: list[str] = []


def _operation_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _missing(spec: dict[str, Any], schema: dict[str, Any], data: Any, where: str
             ) -> list[str]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    if isinstance(data, list) and "items" in schema:
        return [m for i, item in enumerate(data)
                for m in _missing(spec, schema["items"], item, f"{where}[{i}]")]
    if not isinstance(data, dict):
        return []
    found = [f"{where}.{name}" for name in schema.get("required", []) if name not in data]
    for name, prop in schema.get("properties", {}).items():
        if data.get(name) is not None:
            found += _missing(spec, prop, data[name], f"{where}.{name}")
    return found


def install(app: Flask) -> None:
    spec = app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()

    @app.after_request
    def record(response: Response) -> Response:
        if request.url_rule is None or not response.is_json:
            return response
        operation = spec["paths"].get(_operation_path(request.url_rule.rule), {}).get(
            request.method.lower(), {})
        documented = operation.get("responses", {}).get(str(response.status_code)) or {}
        if "$ref" in documented:
            documented = spec["components"]["responses"][documented["$ref"].rsplit("/", 1)[-1]]
        content = documented.get("content", {})
        media = content.get(response.mimetype) or content.get("application/json")
        if media and "schema" in media:
            for member in _missing(spec, media["schema"], response.get_json(), "body"):
                MISSING.append(f"{request.method} {request.path} {response.status_code}: "
                               f"{member} missing")
        return response
