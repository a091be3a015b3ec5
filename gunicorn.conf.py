"""gunicorn settings: sync workers (one per core by default), bound from HOST and PORT."""

import gc
import multiprocessing
import os

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


# Every atom escaped (a %0A in a path cannot forge a line) and calendar feed tokens masked:
# see service/access_log.py.
logger_class = "service.access_log.AccessLogger"
