"""``/board``: the staff day board page and its static files (no build step, no CDN).

The page signs in with a staff or provider API key pasted into it (kept in the tab's
session storage) and reads the existing ``/api/v1`` endpoints with it; nothing here
authenticates or reads the database. Every answer forbids caching and carries a strict
Content-Security-Policy: scripts, styles and requests go to this origin only, and no inline
script or style runs.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, render_template, send_from_directory, url_for

STATIC = Path(__file__).resolve().parent / "static"

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",  # the sign-in form is handled by script: a key never goes in a URL
    "frame-ancestors 'none'",
))

board = Blueprint("board", __name__, template_folder="templates")


@board.get("/board")
def day_board():  # type: ignore[no-untyped-def]
    return render_template(
        "board/board.html",
        api_base="/api/v1",
        docs_url=url_for("api-docs.openapi_swagger_ui"),
    )


@board.get("/board/static/<path:filename>")
def board_asset(filename: str):  # type: ignore[no-untyped-def]
    return send_from_directory(STATIC, filename, max_age=0)


@board.after_request
def _private_page(response: Response) -> Response:
    """Nothing of the board is kept by the browser or shown inside another site's frame."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    return response
