"""gunicorn settings: sync workers (one per core by default), bound from HOST and PORT."""

import gc
import multiprocessing
import os
import re

from gunicorn import glogging

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
accesslog = "-"
# No query strings in the access log: they may carry names or dates of birth.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'


def post_worker_init(worker):  # noqa: ARG001 - gunicorn's hook signature
    """Move the app's long-lived objects out of the garbage collector's way: without this,
    full collections over them add tens of milliseconds to a request's tail latency."""
    gc.collect()
    gc.freeze()


class _RedactingLogger(glogging.Logger):
    """Calendar feed URLs carry their secret token in the path: never log it."""

    def atoms(self, resp, req, environ, request_time):  # type: ignore[no-untyped-def]
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["U"] = _FEED_TOKEN.sub(r"\1<token>.ics", atoms.get("U", ""))
        return atoms


_FEED_TOKEN = re.compile(r"(/calendars/)[^/]+\.ics")
logger_class = _RedactingLogger
