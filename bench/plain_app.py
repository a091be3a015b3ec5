"""The service without its metrics and its JSON request log, for ``bench.operations``:
``gunicorn ... 'bench.plain_app:create_app()'``. The same app as ``service.wsgi:app``, with
the hooks of ``service.metrics`` and ``service.logs`` taken off again (and gunicorn's text
access log, as before they existed, when LOG_FORMAT is text)."""

from __future__ import annotations

from flask import Flask

from service import logs, metrics
from service.app import create_app as create_service_app


def create_app() -> Flask:
    app = create_service_app()
    before = app.before_request_funcs.get(None, [])
    after = app.after_request_funcs.get(None, [])
    for hooks, hook in ((before, metrics._started), (after, metrics._count),
                        (after, logs._request_line)):
        if hook in hooks:
            hooks.remove(hook)
    return app
