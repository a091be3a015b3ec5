"""Prometheus metrics: what the service is doing, for an operator (``GET /metrics``).

Every metric is defined here, at module level, in prometheus-client's default registry;
other modules may define their own the same way (``/metrics`` serves them all). Under
gunicorn, ``gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before a worker imports
anything, so each worker writes its figures to files there and ``/metrics`` adds up every
worker's (``MultiProcessCollector``); a dead worker's live gauges are dropped by the
``child_exit`` hook. The scheduler process exports its own on ``SCHEDULER_METRICS_PORT``.

Figures that belong to the database, not to a process (outbox depth and the age of the
oldest due message per outbox, open alerts), are read from it when scraped
(``DatabaseCollector``), so every instance reports the same numbers.

Labels are route templates, methods, statuses, outcome and error codes, outbox and channel
names: never an id, a name or anything a patient typed.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Request, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event, func, select
from sqlalchemy.pool import Pool

from service.db import Database, utcnow
from service.domain.consultations.models import Alert
from service.domain.outbox import Adapter, DeliveryError, Table
from service.domain.reminders.dispatch import TABLE as REMINDERS
from service.domain.webhooks.delivery import TABLE as WEBHOOKS

log = logging.getLogger(__name__)
disable_created_metrics()  # no *_created series: they double the output and mean little

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("clinic_http_requests_total", "HTTP requests answered",
                   ["route", "method", "status"])
REQUEST_SECONDS = Histogram("clinic_http_request_duration_seconds",
                            "Time to answer an HTTP request", ["route", "method"],
                            buckets=LATENCY_BUCKETS)
BOOKINGS = Counter("clinic_booking_requests_total",
                   "Booking requests by outcome: created, conflict (by error code), replayed "
                   "(Idempotency-Key), refused (any other error, by code)", ["outcome", "code"])
SLOT_SEARCH_SECONDS = Histogram("clinic_slot_search_duration_seconds",
                                "Time to answer a slot search", ["api"], buckets=LATENCY_BUCKETS)
POOL_IN_USE = Gauge("clinic_db_pool_connections_in_use",
                    "Database connections checked out of this service's pools", ["engine"],
                    multiprocess_mode="livesum")
POOL_WAITS = Counter("clinic_db_pool_waits_total",
                     "Checkouts that found the pool exhausted and had to wait", ["engine"])
POOL_WAIT_SECONDS = Histogram("clinic_db_pool_wait_seconds",
                              "Time waited for a connection by checkouts that had to wait",
                              ["engine"], buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 3.0, 5.0))
RATE_LIMITED = Counter("clinic_rate_limited_total", "Requests refused with 429, by limit",
                       ["limit"])
RATE_LIMIT_STORAGE_ERRORS = Counter(
    "clinic_rate_limit_storage_errors_total",
    "Rate-limit checks that could not reach the storage (Redis); the request was let through")
OUTBOX_SENDS = Counter("clinic_outbox_sends_total",
                       "Outbox send attempts by outbox, channel and outcome "
                       "(accepted, refused, transient)", ["outbox", "channel", "outcome"])
SCHEDULER_JOB_SECONDS = Histogram("clinic_scheduler_job_duration_seconds",
                                  "Time a scheduler job run took", ["job", "outcome"],
                                  buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0))

OUTBOXES: tuple[tuple[str, Table], ...] = (("reminders", REMINDERS), ("webhooks", WEBHOOKS))
BOOKING_ENDPOINT = "bookings.Bookings"
SLOT_ENDPOINTS = {"slots.Slots": "rest", "fhir.Slots": "fhir"}


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# What the database holds, read at scrape time ----------------------------------------------


class DatabaseCollector(Collector):
    """Outbox depth and oldest due age per outbox, open alerts: one read per scrape, on the
    reader. A database that does not answer gives ``clinic_metrics_database_up 0``."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def collect(self) -> Iterator[Any]:
        depth = GaugeMetricFamily("clinic_outbox_depth",
                                  "Messages waiting to be sent (open or being sent)",
                                  labels=["outbox"])
        oldest = GaugeMetricFamily("clinic_outbox_oldest_due_age_seconds",
                                   "How long the oldest due message has been due (0: none)",
                                   labels=["outbox"])
        alerts = GaugeMetricFamily("clinic_alerts_open", "Alerts not yet acknowledged",
                                   labels=["kind", "urgent"])
        up = GaugeMetricFamily("clinic_metrics_database_up",
                               "1 when the database answered this scrape's queries")
        try:
            now = utcnow()
            with self.database.read_sessions() as session:
                for name, table in OUTBOXES:
                    model = table.model
                    is_open = model.status.in_(table.open)
                    count, first_due = session.execute(
                        select(func.count(), func.min(model.next_attempt_at)).where(is_open)
                    ).one()
                    depth.add_metric([name], count)
                    due_age = 0.0
                    if first_due is not None:
                        if first_due.tzinfo is None:  # SQLite hands back naive UTC
                            first_due = first_due.replace(tzinfo=now.tzinfo)
                        due_age = max(0.0, (now - first_due).total_seconds())
                    oldest.add_metric([name], due_age)
                for kind, urgent, count in session.execute(
                        select(Alert.kind, Alert.urgent, func.count())
                        .where(Alert.acknowledged_at.is_(None), Alert.resolved_at.is_(None))
                        .group_by(Alert.kind, Alert.urgent)):
                    alerts.add_metric([str(kind), "true" if urgent else "false"], count)
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even then
            log.warning("metrics: database figures unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield from (depth, oldest, alerts, up)


def exposition(database: Database) -> bytes:
    """The text format: this process's (or every gunicorn worker's) metrics, then the
    database's figures."""
    directory = multiprocess_dir()
    if directory:
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes, path=directory)
    else:
        processes = REGISTRY
    figures = CollectorRegistry(auto_describe=False)
    figures.register(DatabaseCollector(database))
    return generate_latest(processes) + generate_latest(figures)


def metrics_response(database: Database) -> Response:
    return Response(exposition(database), content_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})


# Outbox sends ---------------------------------------------------------------------------


class CountedChannel:
    """An outbox adapter whose sends are counted by outcome: ``accepted``, ``refused``
    (permanent), ``transient`` (tried again later) or ``error`` (the adapter broke)."""

    def __init__(self, adapter: Adapter, outbox: str) -> None:
        self.adapter = adapter
        self.name = adapter.name
        self.outbox = outbox

    def __copy__(self) -> CountedChannel:
        """A sending thread's own copy (the outbox's send pool copies its adapters before
        they connect) must not share the wrapped adapter's connection."""
        return CountedChannel(copy.copy(self.adapter), self.outbox)

    def send(self, message: Any) -> int | None:
        try:
            status = self.adapter.send(message)
        except DeliveryError as refused:
            OUTBOX_SENDS.labels(self.outbox, self.name,
                                "refused" if refused.permanent else "transient").inc()
            raise
        except Exception:
            OUTBOX_SENDS.labels(self.outbox, self.name, "error").inc()
            raise
        OUTBOX_SENDS.labels(self.outbox, self.name, "accepted").inc()
        return status

    def close(self) -> None:
        self.adapter.close()


# Database pools ---------------------------------------------------------------------------


def _measured_pool(pool: Pool, engine_name: str) -> None:
    """Count, in ``pool``, the checkouts that find every connection taken (they wait), and
    how long they waited. The pool's class is swapped for a subclass, so a pool renewed
    after a broken connection (``recreate`` builds ``self.__class__``) keeps measuring."""
    base = type(pool)
    if getattr(base, "_clinic_measured", False):
        return

    def _do_get(self: Any) -> Any:
        max_overflow = getattr(self, "_max_overflow", -1)
        size = self.size() if hasattr(self, "size") else 0
        exhausted = (max_overflow > -1 and hasattr(self, "checkedout")
                     and self.checkedout() >= size + max_overflow)
        if not exhausted:
            return base._do_get(self)
        POOL_WAITS.labels(engine_name).inc()
        started = time.perf_counter()
        try:
            return base._do_get(self)
        finally:
            POOL_WAIT_SECONDS.labels(engine_name).observe(time.perf_counter() - started)

    pool.__class__ = type(f"Measured{base.__name__}", (base,),
                          {"_do_get": _do_get, "_clinic_measured": True})


def instrument_database(database: Database) -> None:
    """Connections in use (checkout/checkin events) and waits, per engine."""
    engines: dict[str, Engine] = {"writer": database.writer}
    if database.reader is not database.writer:
        engines["reader"] = database.reader
    for name, engine in engines.items():
        if getattr(engine, "_clinic_instrumented", False):
            continue
        engine._clinic_instrumented = True  # type: ignore[attr-defined]
        gauge = POOL_IN_USE.labels(name)
        event.listen(engine, "checkout", lambda *_args, gauge=gauge: gauge.inc())
        event.listen(engine, "checkin", lambda *_args, gauge=gauge: gauge.dec())
        _measured_pool(engine.pool, name)


# Requests ---------------------------------------------------------------------------------


def _started() -> None:
    g._get_current_object().metrics_started = time.perf_counter()  # type: ignore[attr-defined]


def route_template(current: Request | None = None) -> str:
    """The matched rule (``/api/v1/bookings/<uuid:booking_id>``), never the path itself;
    of ``current`` (the request behind flask's proxy) when the caller has it already."""
    rule = (current if current is not None else request).url_rule
    return rule.rule if rule is not None else "<unmatched>"


# A request's series (``labels`` of each route, method and status), found once per worker:
# ``labels`` checks and converts its values and takes a lock on every call, to give back the
# same child each time. Bounded as the labels are: route templates, methods, statuses.
_request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _series(route: str, method: str, status: int) -> tuple[Any, Any]:
    """The ``REQUESTS`` child and the ``REQUEST_SECONDS`` child of a request."""
    key = (route, method, status)
    found = _request_series.get(key)
    if found is None:
        found = _request_series[key] = (REQUESTS.labels(route, method, str(status)),
                                        REQUEST_SECONDS.labels(route, method))
    return found


def _count(response: Response) -> Response:
    # (each object behind its proxy found once: every read through a proxy finds it again)
    found, current = g._get_current_object(), request._get_current_object()  # type: ignore[attr-defined]
    started = found.get("metrics_started")
    elapsed = time.perf_counter() - started if started is not None else 0.0
    found.request_seconds = elapsed
    route, method, status = route_template(current), current.method, response.status_code
    requests, seconds = _series(route, method, status)
    requests.inc()
    seconds.observe(elapsed)
    endpoint = current.endpoint
    if endpoint == BOOKING_ENDPOINT and method == "POST":
        code = found.get("problem_code") or ""
        if response.headers.get("Idempotent-Replayed") == "true":
            outcome = "replayed"
        elif status == 201:
            outcome = "created"
        elif status == 409:
            outcome = "conflict"
        else:
            outcome = "refused"
        BOOKINGS.labels(outcome, code).inc()
    elif endpoint in SLOT_ENDPOINTS and method == "GET":
        SLOT_SEARCH_SECONDS.labels(SLOT_ENDPOINTS[endpoint]).observe(elapsed)
    return response


def init_app(app: Flask, database: Database) -> None:
    """Register first, so the timer starts before any other hook runs."""
    instrument_database(database)
    app.before_request(_started)
    app.after_request(_count)
