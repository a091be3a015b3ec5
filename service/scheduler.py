"""``python -m service.scheduler``: the process that sends the outboxes (the only one).

An APScheduler ``BlockingScheduler`` in its own process (never inside the gunicorn workers),
with ONE interval job per outbox, not one job per reminder. This module is where the outboxes
meet the outside: it builds the channel adapters (``service.adapters``) from the settings,
hands them to each area's outbox (``ReminderOutbox``, ``WebhookOutbox``) and runs each one
with the one ``OutboxRunner`` (``service.domain.outbox``): claim with a lease, send, record
each outcome in its own transaction, back off. Any number of these processes can run side by
side; a killed one re-sends at most the message it had in flight, after the lease.

- ``reminders``: every ``REMINDER_POLL_SECONDS`` (default 15 s); the first run at start-up,
  so reminders that fell due while no scheduler ran go out at once.
- ``webhooks``: every ``WEBHOOK_POLL_SECONDS`` (default 5 s), the webhook delivery outbox
  (``service.domain.webhooks.delivery``), claimed with a lease the same way.
- ``alert-notices``: every ``ALERT_POLL_SECONDS`` (default 5 s), the notices of urgent
  alerts to the on-call rota (``service.domain.oncall.dispatch``): tier 1 at once, the next
  tier after ``ALERT_ESCALATION_MINUTES`` while nobody acknowledged the alert. Claimed with
  a lease like the others, so two schedulers send each notice once.
- ``idempotency-purge``: hourly, deletes Idempotency-Key records past their 24 hours.
- ``license-recheck``: daily (and at start-up), asks every future booking the gates again,
  so one whose provider's license has expired by its date is flagged for attention
  (``service.domain.bookings.attention.recheck_licenses``). The start-up run waits for the
  reminders' first run to end (at most ``LICENSE_RECHECK_START_SECONDS``): a backlog of
  reminders is sent without the recheck's CPU on the same interpreter. On PostgreSQL one
  scheduler at a time runs it (a session advisory lock, tried without waiting): another
  scheduler starting its pass meanwhile leaves it to the one under way, which reads every
  booking committed before it started.
- ``waitlist``: every ``WAITLIST_POLL_SECONDS`` (default 5 s): waitlist entries past their
  range expire, lapsed offers are released, and freed slots are offered to waitlisted
  patients (``service.domain.waitlist.services.run_waitlist``; each opening and each lapsed
  offer claimed with ``FOR UPDATE SKIP LOCKED`` in its own short transaction).
- ``history-purge``: hourly, deletes change-feed rows older than the sync-token retention and
  finished webhook deliveries older than 30 days.
- ``calendar-sync``: every ``CALENDAR_SYNC_POLL_SECONDS`` (default 60 s), reads the connected
  iCalendar and CalDAV calendars that are due (claimed with a lease), and flags stale ones
  (``service.domain.connections.polling``).
- ``calendar-writes``: every ``CALENDAR_WRITE_POLL_SECONDS`` (default 10 s), the write-back
  outbox (``service.domain.connections.writeback``) through the one ``OutboxRunner``.

Every job has ``max_instances=1`` (a slow run is never overlapped by the next),
``coalesce=True`` (runs missed while busy collapse into one) and ``misfire_grace_time=None``
(APScheduler 3 defaults to 1 s and silently drops a run that starts later than that; the
work itself is in the database, so a late run only ever sends later, never less).

The reminder templates and the clinic alias pass the content check before anything starts:
a forbidden word stops the process with exit status 2. SIGTERM (or Ctrl-C) lets each running
job finish its current send, gives the rest of its batch back, and exits; a send still running
after ``SCHEDULER_GRACE_SECONDS`` is abandoned (exit status 1; its row is claimed again after
its lease). With ``SCHEDULER_METRICS_PORT`` the process serves its Prometheus metrics.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import REGISTRY, start_http_server
from sqlalchemy import text

import service.models  # noqa: F401 - every mapper, so the metadata is complete
from service import logs
from service.adapters.calendars import CalDavWriter, CalendarSources
from service.adapters.http import HttpChannel
from service.adapters.log import LogChannel, LogWebhookChannel
from service.adapters.sms import SmsGatewayChannel
from service.adapters.smtp import SmtpChannel
from service.bootstrap import bootstrap
from service.config import Settings
from service.db import Database, DatabaseTimeouts, describe_failure, is_unavailable, utcnow
from service.domain.bookings import attention
from service.domain.calendar import history
from service.domain.connections import services as connections
from service.domain.connections.polling import CalendarSync, SyncSettings
from service.domain.connections.writeback import CalendarWriteOutbox
from service.domain.idempotency import services as idempotency
from service.domain.oncall.dispatch import AlertNoticeOutbox
from service.domain.outbox import Adapter, OutboxRunner
from service.domain.reminders import content
from service.domain.reminders import services as reminders
from service.domain.reminders.channels import EMAIL, SMS
from service.domain.reminders.dispatch import ReminderOutbox
from service.domain.waitlist import services as waitlist
from service.domain.webhooks.delivery import WebhookOutbox
from service.metrics import SCHEDULER_JOB_SECONDS, CountedChannel, DatabaseCollector
from service.uow import UnitOfWork

log = logging.getLogger("service.scheduler")

PURGE_INTERVAL_SECONDS = 3600
LICENSE_RECHECK_SECONDS = 86400
LICENSE_RECHECK_START_SECONDS = 300.0
"""The start-up recheck runs when the reminders' first run ends, and at the latest this long
after start-up."""
LICENSE_RECHECK_LOCK = 0x6C69636E  # pg advisory lock key of the license recheck ("licn")
JOB_DEFAULTS: dict[str, Any] = {"max_instances": 1, "coalesce": True,
                                "misfire_grace_time": None}


class Stop(Exception):
    """Raised in the main thread by SIGTERM to leave ``BlockingScheduler.start()``."""


def _guarded(name: str, job: Callable[[], object]) -> Callable[[], None]:
    """Log a failed run by type and frames only (messages may quote data), keep going."""

    def run() -> None:
        started = time.perf_counter()
        outcome = "ok"
        try:
            job()
        except Exception as exc:  # noqa: BLE001 - the next run tries again
            if is_unavailable(exc):  # an outage, not a bug: one line per run, no frames
                outcome = "database_unavailable"
                log.warning("job %s: database unavailable: %s", name, describe_failure(exc),
                            extra={"job": name, "outcome": outcome})
                return
            outcome = "failed"
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("job %s failed: %s\n%s", name, type(exc).__name__, frames,
                      extra={"job": name, "outcome": outcome})
        finally:
            SCHEDULER_JOB_SECONDS.labels(name, outcome).observe(time.perf_counter() - started)

    return run


# The outboxes, wired to their adapters ------------------------------------------------------


def reminder_channels(settings: Settings) -> dict[str, Adapter]:
    """SMTP and the SMS gateway on the live channel; otherwise the log for both."""
    if settings.reminder_channel == "live":
        return {EMAIL: CountedChannel(SmtpChannel(settings), "reminders"),
                SMS: CountedChannel(SmsGatewayChannel(settings), "reminders")}
    log_channel = CountedChannel(LogChannel(), "reminders")
    return {EMAIL: log_channel, SMS: log_channel}


def reminder_runner(database: Database, settings: Settings) -> OutboxRunner:
    return OutboxRunner(database, ReminderOutbox(settings, reminder_channels(settings)))


def alert_notice_runner(database: Database, settings: Settings) -> OutboxRunner:
    """Urgent alert notices go through the reminder channels (their own adapters)."""
    return OutboxRunner(database, AlertNoticeOutbox(settings, reminder_channels(settings)))


def webhook_channel(settings: Settings) -> Adapter:
    """HTTP on the live channel (the default); the log with ``WEBHOOK_CHANNEL=log``."""
    if settings.webhook_channel == "log":
        return CountedChannel(LogWebhookChannel(), "webhooks")
    return CountedChannel(HttpChannel(timeout_seconds=settings.webhook_timeout_seconds),
                          "webhooks")


def webhook_runner(database: Database, settings: Settings) -> OutboxRunner:
    return OutboxRunner(database, WebhookOutbox(settings, webhook_channel(settings)))


def _calendar_url_check(settings: Settings) -> Callable[[str], str]:
    def check(url: str) -> str:
        return connections.calendar_url(
            url, allow_private=settings.calendar_allow_private_targets)

    return check


def calendar_write_runner(database: Database, settings: Settings) -> OutboxRunner:
    rules = connections.connection_rules(settings)
    writer = CalDavWriter(timeout_seconds=settings.calendar_timeout_seconds,
                          check_url=_calendar_url_check(settings))
    return OutboxRunner(database, CalendarWriteOutbox(
        writer, rules.box, poll_seconds=settings.calendar_write_poll_seconds,
        send_timeout_seconds=settings.calendar_timeout_seconds,
        lease_seconds=max(60.0, settings.calendar_timeout_seconds * 4)))


def calendar_sync(database: Database, settings: Settings) -> CalendarSync:
    reader = CalendarSources(timeout_seconds=settings.calendar_timeout_seconds,
                             check_url=_calendar_url_check(settings))
    return CalendarSync(database, reader, connections.connection_rules(settings).box,
                        SyncSettings(default_zone=settings.clinic_timezone,
                                     window_days=settings.calendar_sync_days,
                                     stale_multiple=settings.calendar_stale_multiple,
                                     poll_seconds=settings.calendar_sync_poll_seconds,
                                     lease_seconds=max(120.0,
                                                       settings.calendar_timeout_seconds * 4)),
                        bus=bootstrap(settings))


class OutboxScheduler:
    """The scheduler, its jobs, and what they need (the database, the outbox runners)."""

    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        content.check_templates(clinic_name=settings.clinic_name,
                                clinic_phone=settings.clinic_phone)
        self.settings = settings
        self.stopping = False
        self.reminders_ran = threading.Event()  # set once the reminders' first run ended
        self.database = database or Database.connect(
            settings.database_url, timeouts=DatabaseTimeouts.from_settings(settings))
        self.scheduler = BlockingScheduler(timezone=UTC, job_defaults=dict(JOB_DEFAULTS))
        self.runners = [reminder_runner(self.database, settings),
                        webhook_runner(self.database, settings),
                        alert_notice_runner(self.database, settings),
                        calendar_write_runner(self.database, settings)]
        for runner in self.runners:
            self.register(runner)
        now = datetime.now(UTC)
        self.scheduler.add_job(
            _guarded("idempotency-purge", self.purge_idempotency_records),
            id="idempotency-purge", name="expired Idempotency-Key records",
            trigger=IntervalTrigger(seconds=PURGE_INTERVAL_SECONDS), next_run_time=now,
            **JOB_DEFAULTS)
        self.scheduler.add_job(
            _guarded("history-purge", self.purge_history),
            id="history-purge", name="old change-feed rows and webhook delivery log",
            trigger=IntervalTrigger(seconds=PURGE_INTERVAL_SECONDS), next_run_time=now,
            **JOB_DEFAULTS)
        self.scheduler.add_job(
            _guarded("waitlist", self.run_waitlist),
            id="waitlist", name="waitlist offers",
            trigger=IntervalTrigger(seconds=settings.waitlist_poll_seconds), next_run_time=now,
            **JOB_DEFAULTS)
        self.scheduler.add_job(
            _guarded("license-recheck", self.recheck_licenses),
            id="license-recheck", name="future bookings against license expiry",
            trigger=IntervalTrigger(seconds=LICENSE_RECHECK_SECONDS),
            next_run_time=now, **JOB_DEFAULTS)
        self.calendar_sync = calendar_sync(self.database, settings)
        self.scheduler.add_job(
            _guarded(self.calendar_sync.name, self.calendar_sync.run_once),
            id=self.calendar_sync.name, name=self.calendar_sync.title,
            trigger=IntervalTrigger(seconds=self.calendar_sync.poll_seconds),
            next_run_time=now, **JOB_DEFAULTS)

    def recheck_licenses(self) -> int:
        """The recheck; on PostgreSQL skipped (0) while another scheduler runs it. The first
        waits for the reminders' first run (or ``LICENSE_RECHECK_START_SECONDS``, or a stop)."""
        self.reminders_ran.wait(LICENSE_RECHECK_START_SECONDS)
        if self.stopping:
            return 0
        with self._recheck_turn() as ours:
            if not ours:
                log.info("license recheck: another scheduler is running it")
                return 0
            uow = UnitOfWork(self.database.write_sessions, dialect=self.database.dialect,
                             bus=bootstrap(self.settings))
            flagged = attention.recheck_licenses(uow, now=utcnow())
        if flagged:
            log.info("flagged %d future bookings for attention", flagged)
        return flagged

    @contextmanager
    def _recheck_turn(self) -> Iterator[bool]:
        """PostgreSQL: this scheduler's turn to recheck (a session advisory lock on a
        connection of its own, tried without waiting, released at the end); elsewhere always.
        """
        if self.database.dialect != "postgresql":
            yield True
            return
        with self.database.writer.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            ours = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                           {"key": LICENSE_RECHECK_LOCK}).scalar())
            try:
                yield ours
            finally:
                if ours:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                       {"key": LICENSE_RECHECK_LOCK})

    def after_first_reminders(self, run: Callable[[], object]) -> Callable[[], object]:
        """The reminders' run; the end of the first one lets the start-up recheck begin."""

        def job() -> object:
            try:
                return run()
            finally:
                self.reminders_ran.set()

        return job

    def new_uow(self) -> UnitOfWork:
        return UnitOfWork(self.database.write_sessions, dialect=self.database.dialect,
                          bus=bootstrap(self.settings))

    def run_waitlist(self) -> waitlist.WaitlistRun:
        run = waitlist.run_waitlist(
            self.new_uow, now=utcnow, zone=self.settings.clinic_timezone,
            hold=timedelta(minutes=self.settings.waitlist_hold_minutes),
            quiet=reminders.quiet_hours(self.settings))
        if run.offered or run.offers_expired or run.entries_expired or run.unmatched:
            log.info("waitlist: %d offered (lag max %.1f s), %d unmatched, %d offers lapsed, "
                     "%d entries expired", run.offered, max(run.lags or [0.0]), run.unmatched,
                     run.offers_expired, run.entries_expired)
        return run

    def register(self, runner: OutboxRunner) -> None:
        """The outbox's own interval job; its first run at start-up."""
        outbox = runner.outbox
        run: Callable[[], object] = runner.run_once
        if outbox.name == "reminders":
            run = self.after_first_reminders(run)
        self.scheduler.add_job(
            _guarded(outbox.name, run), id=outbox.name, name=outbox.title,
            trigger=IntervalTrigger(seconds=outbox.poll_seconds),
            next_run_time=datetime.now(UTC), **JOB_DEFAULTS)

    def request_stop(self) -> None:
        self.stopping = True
        self.reminders_ran.set()  # a recheck waiting to start gives up
        for runner in self.runners:
            runner.request_stop()

    def purge_history(self) -> history.Purged:
        uow = UnitOfWork(self.database.write_sessions, dialect=self.database.dialect)
        purged = history.purge_history(
            uow, now=utcnow(),
            change_retention=timedelta(days=self.settings.sync_token_retention_days))
        if purged.changes or purged.deliveries:
            log.info("purged %d old booking changes and %d finished webhook deliveries",
                     purged.changes, purged.deliveries)
        return purged

    def purge_idempotency_records(self) -> int:
        uow = UnitOfWork(self.database.write_sessions, dialect=self.database.dialect)
        purged = idempotency.purge_expired(uow, now=utcnow())
        if purged:
            log.info("purged %d expired idempotency records", purged)
        return purged

    def run(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully."""

        def stop(signum: int, _frame: object) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.request_stop()
            raise Stop(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("scheduler started: %s (reminders on the %s channel, webhooks on the %s "
                 "channel)",
                 ", ".join(f"{r.outbox.name} polling every {r.outbox.poll_seconds:g}s"
                           for r in self.runners), self.settings.reminder_channel,
                 self.settings.webhook_channel)
        try:
            self.scheduler.start()
        except Stop as reason:
            log.info("%s received: stopping after the sends in flight (grace %gs)", reason,
                     self.settings.scheduler_grace_seconds)
        finally:
            self.request_stop()
            if self.scheduler.running and not self.shutdown_within(
                    self.settings.scheduler_grace_seconds):
                log.error("the sends in flight outlasted SCHEDULER_GRACE_SECONDS (%gs): "
                          "exiting; their rows are claimed again after the lease",
                          self.settings.scheduler_grace_seconds)
                logging.shutdown()
                os._exit(1)
            self.database.dispose()
            log.info("scheduler stopped")

    def shutdown_within(self, grace: float) -> bool:
        """Wait at most ``grace`` seconds for the running jobs to finish."""
        stopper = threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True},
                                   name="scheduler-shutdown", daemon=True)
        stopper.start()
        stopper.join(grace)
        return not stopper.is_alive()

    def export_metrics(self) -> None:
        """Serve this process's metrics and the database's figures on
        ``SCHEDULER_METRICS_PORT`` (at ``HOST``), when set."""
        port = self.settings.scheduler_metrics_port
        if not port:
            return
        REGISTRY.register(DatabaseCollector(self.database))
        start_http_server(port, addr=self.settings.host, registry=REGISTRY)
        log.info("metrics on http://%s:%d/metrics", self.settings.host, port)


def main() -> int:
    settings = Settings.from_env()
    logs.configure(settings)  # plain text, or JSON lines with LOG_FORMAT=json
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        outbox = OutboxScheduler(settings)
    except content.ContentRefused as refused:
        log.error("the reminder content check failed, not starting: %s", refused)
        return 2
    outbox.export_metrics()
    outbox.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
