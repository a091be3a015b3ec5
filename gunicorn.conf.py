"""gunicorn settings: sync workers (one per core by default), bound from HOST and PORT.

Metrics: every worker writes its Prometheus figures under ``PROMETHEUS_MULTIPROC_DIR`` (a
fresh directory per server unless set), which ``GET /metrics`` adds up. This must be set
before a worker imports prometheus_client, hence here, in the master.

Shutdown (SIGTERM): the master first creates ``CLINIC_DRAIN_FILE``, so ``/readyz`` answers
503 and a load balancer stops sending requests; it keeps serving for ``DRAIN_SECONDS``, then
stops the workers gracefully: each finishes the request in flight within
``GRACEFUL_TIMEOUT`` seconds.
"""

import gc
import glob
import multiprocessing
import os
import shutil
import tempfile
import time

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))
DRAIN_SECONDS = float(os.environ.get("DRAIN_SECONDS", "0"))
# No query strings in the access log: they may carry names or dates of birth.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'
# LOG_FORMAT=json: the app writes one JSON line per request itself (service/logs.py).
accesslog = None if os.environ.get("LOG_FORMAT", "text").strip().lower() == "json" else "-"

_run_dir = tempfile.mkdtemp(prefix="clinic-gunicorn-")
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(_run_dir, "metrics"))
os.environ["CLINIC_DRAIN_FILE"] = os.path.join(_run_dir, "draining")  # this server's own
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def on_starting(server):  # noqa: ARG001 - gunicorn's hook signature
    """Figures of a previous run in a configured directory must not add to this one's."""
    for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(stale)
    if os.path.exists(os.environ["CLINIC_DRAIN_FILE"]):
        os.remove(os.environ["CLINIC_DRAIN_FILE"])


def when_ready(server):
    """SIGTERM: readiness turns 503 first, the workers keep serving for DRAIN_SECONDS, then
    gunicorn's graceful stop (GRACEFUL_TIMEOUT for the requests in flight)."""
    stop = server.handle_term

    def handle_term():
        with open(os.environ["CLINIC_DRAIN_FILE"], "w") as flag:
            flag.write(str(os.getpid()))
        server.log.info("SIGTERM: draining (readiness 503) for %gs, then stopping within %ss",
                        DRAIN_SECONDS, graceful_timeout)
        time.sleep(DRAIN_SECONDS)
        stop()

    server.handle_term = handle_term


def on_exit(server):  # noqa: ARG001 - gunicorn's hook signature
    shutil.rmtree(_run_dir, ignore_errors=True)


def post_worker_init(worker):  # noqa: ARG001 - gunicorn's hook signature
    """Move the app's long-lived objects out of the garbage collector's way: without this,
    full collections over them add tens of milliseconds to a request's tail latency."""
    gc.collect()
    gc.freeze()


def child_exit(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    """A dead worker's live gauges (connections in use) no longer count."""
    from prometheus_client import multiprocess  # after PROMETHEUS_MULTIPROC_DIR is set

    multiprocess.mark_process_dead(worker.pid)


# Every atom escaped (a %0A in a path cannot forge a line) and calendar feed tokens masked:
# see service/access_log.py.
logger_class = "service.access_log.AccessLogger"
