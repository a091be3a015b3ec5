"""Settings, read from environment variables with local defaults.

Every variable is listed in the README's configuration table; nothing else configures the
service.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

INSTANCE_DIR = Path(__file__).resolve().parent.parent / "instance"


def _default_database_url() -> str:
    return f"sqlite:///{INSTANCE_DIR / 'clinic.sqlite3'}"


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


# RATE_LIMIT_ROLES: requests per API key, by the key's role (limits' notation).
DEFAULT_ROLE_LIMITS: tuple[tuple[str, str], ...] = (
    ("admin", "600/minute"), ("staff", "1200/minute"), ("provider", "600/minute"),
    ("patient", "120/minute"), ("integration", "1200/minute"))


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=_default_database_url)
    database_replica_url: str | None = None
    clinic_timezone: str = "America/Phoenix"
    port: int = 8000
    cors_origins: tuple[str, ...] = ()
    cors_max_age: int = 600  # seconds a browser may cache a CORS preflight's answer
    clinic_name: str = "Desert Bloom Wellness"
    clinic_phone: str = "+16025550100"
    license_warning_days: int = 60
    sql_echo: bool = False
    # Reminders (the outbox sent by `python -m service.scheduler`)
    reminder_channel: str = "log"  # log: write to the log; live: SMTP or the SMS gateway
    reminder_poll_seconds: float = 15.0
    reminder_lease_seconds: float = 120.0
    reminder_batch_size: int = 100
    reminder_max_attempts: int = 5
    reminder_retry_base_seconds: float = 60.0
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(8, 0)
    channel_timeout_seconds: float = 10.0
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_tls: str = "none"  # none, starttls or ssl
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str = "reminders@localhost"
    sms_gateway_url: str | None = None
    sms_account_sid: str | None = None
    sms_auth_token: str | None = field(default=None, repr=False)
    sms_from: str | None = None
    # Calendar feeds, the changes feed and webhooks (service/domain/calendar)
    calendar_refresh_minutes: int = 15
    sync_token_retention_days: int = 30
    webhook_poll_seconds: float = 5.0
    webhook_lease_seconds: float = 60.0
    webhook_batch_size: int = 50
    webhook_timeout_seconds: float = 10.0
    webhook_retry_base_seconds: float = 30.0
    webhook_retry_window_hours: float = 24.0
    webhook_allow_private_targets: bool = False
    webhook_secret_overlap_hours: float = 24.0
    # Consultations (service/domain/consultations)
    bp_hold_systolic: int = 160  # BP_HOLD_THRESHOLD: a pre-dose reading above it holds
    bp_hold_diastolic: int = 100
    telehealth_video_url_template: str = "https://video.example.invalid/visit/{booking_id}"
    controlled_substance_cutoff: date = date(2027, 1, 1)
    # Watched doses: readings during or after dosing beyond these raise an urgent alert
    vitals_alert_systolic: int = 180  # VITALS_ALERT_SYSTOLIC: above it
    vitals_alert_diastolic: int = 110  # VITALS_ALERT_DIASTOLIC: above it
    vitals_alert_heart_rate: int = 120  # VITALS_ALERT_HEART_RATE: above it
    vitals_alert_spo2: int = 92  # VITALS_ALERT_SPO2: below it (%)
    check_in_opens_minutes: int = 120  # CHECK_IN_OPENS_MINUTES: check-in opens this long before
    # Database faults: answer 503 database_unavailable fast instead of hanging (service/db.py)
    database_connect_timeout_seconds: int = 3
    database_statement_timeout_seconds: float = 5.0
    database_lock_timeout_seconds: float = 3.0
    database_pool_timeout_seconds: float = 3.0
    sqlite_busy_timeout_seconds: float = 5.0
    readiness_timeout_seconds: int = 2
    database_retry_after_seconds: int = 5
    # gunicorn kills a sync worker busy with one request longer than this (gunicorn.conf.py)
    worker_timeout_seconds: float = 30.0
    # An Idempotency-Key left in progress is free again after this (a request's worker is
    # dead by then): the worker timeout plus a margin for the arbiter's check and the kill.
    idempotency_lease_seconds: float = 35.0
    # Escalated alerts (service/domain/oncall): the next tier of the on-call rota is told
    # when nobody acknowledged an urgent alert this long after the previous one
    alert_escalation_minutes: int = 10  # ALERT_ESCALATION_MINUTES
    alert_poll_seconds: float = 5.0  # ALERT_POLL_SECONDS: the alert-notices job
    # Watched doses: a sedation score (MOAA/S, 0-5) at or below it raises an urgent alert
    vitals_alert_moaas: int = 2  # VITALS_ALERT_MOAAS
    discharge_moaas: int = 5  # DISCHARGE_MOAAS: discharge after sedation needs at least it
    # The waitlist (service/domain/waitlist): how long a freed slot is held for the offered
    # patient, and how often the scheduler looks for freed slots and lapsed offers.
    waitlist_hold_minutes: int = 30
    waitlist_poll_seconds: float = 5.0
    # Connected calendars (service/domain/connections): busy time in, visits written back
    calendar_secret_key: str | None = field(default=None, repr=False)  # a Fernet key
    calendar_sync_poll_seconds: float = 60.0
    calendar_sync_interval_minutes: int = 15  # a connection's default interval
    calendar_stale_multiple: float = 3.0
    calendar_sync_days: int = 120
    calendar_timeout_seconds: float = 15.0
    calendar_allow_private_targets: bool = False
    calendar_write_poll_seconds: float = 10.0
    # Operations (service/observability.py, service/ratelimits.py, the life cycle)
    log_format: str = "text"  # LOG_FORMAT: text (local default) or json (one object a line)
    redis_url: str | None = None  # REDIS_URL: rate limits and slot cache (memory without it)
    rate_limit_roles: tuple[tuple[str, str], ...] = DEFAULT_ROLE_LIMITS
    rate_limit_anonymous: str = "300/minute"  # per client address, calls without a key
    rate_limit_key_checks: str = "20/minute"  # refused keys (401) per client address
    rate_limit_calendar_feeds: str = "60/minute"  # feed fetches per client address
    scheduler_metrics_port: int = 0  # SCHEDULER_METRICS_PORT: 0 = no exporter
    scheduler_grace_seconds: float = 30.0  # SIGTERM: the sends in flight get this long
    drain_file: str | None = None  # CLINIC_DRAIN_FILE: set by gunicorn.conf.py
    host: str = "127.0.0.1"  # HOST: also the scheduler's metrics exporter's address
    webhook_channel: str = "live"  # WEBHOOK_CHANNEL: live (HTTP) or log (nothing leaves)
    # Performance (issue 14): the slot cache (Redis when set, else in-process memory) and how
    # long a worker may keep an API key it looked up (a revocation takes effect within it).
    api_key_cache_seconds: float = 5.0
    reminder_send_concurrency: int = 16  # sends in flight at once per scheduler (PostgreSQL)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            database_url=env.get("DATABASE_URL") or defaults.database_url,
            database_replica_url=env.get("DATABASE_REPLICA_URL") or None,
            clinic_timezone=env.get("CLINIC_TIMEZONE", defaults.clinic_timezone),
            port=int(env.get("PORT", defaults.port)),
            cors_origins=_csv(env.get("CORS_ORIGINS", "")),
            cors_max_age=_non_negative("CORS_MAX_AGE", env.get("CORS_MAX_AGE", "600")),
            clinic_name=env.get("CLINIC_NAME", defaults.clinic_name),
            clinic_phone=env.get("CLINIC_PHONE", defaults.clinic_phone),
            license_warning_days=int(
                env.get("LICENSE_WARNING_DAYS", defaults.license_warning_days)
            ),
            sql_echo=env.get("SQL_ECHO", "") in {"1", "true", "yes"},
            **_reminder_settings(env, defaults),
            **_integration_settings(env, defaults),
            **_consultation_settings(env, defaults),
            **_database_settings(env, defaults),
            **_alert_settings(env, defaults),
            **_waitlist_settings(env, defaults),
            **_connected_calendar_settings(env, defaults),
            **_operations_settings(env, defaults),
            api_key_cache_seconds=float(env.get("API_KEY_CACHE_SECONDS",
                                                defaults.api_key_cache_seconds)),
            reminder_send_concurrency=max(1, int(env.get(
                "REMINDER_SEND_CONCURRENCY", defaults.reminder_send_concurrency))),
        )


def _non_negative(name: str, value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"{name} must be 0 or more")
    return number


def _clock(value: str) -> time:
    hours, _, minutes = value.strip().partition(":")
    return time(int(hours), int(minutes or 0))


def _reminder_settings(env: Mapping[str, str], defaults: Settings) -> dict[str, Any]:
    """The reminder outbox's settings (REMINDER_*, QUIET_HOURS_*, SMTP_*, SMS_*)."""
    channel = env.get("REMINDER_CHANNEL", defaults.reminder_channel).strip().lower()
    if channel not in {"log", "live"}:
        raise ValueError("REMINDER_CHANNEL must be log or live")
    tls = env.get("SMTP_TLS", defaults.smtp_tls).strip().lower()
    if tls not in {"none", "starttls", "ssl"}:
        raise ValueError("SMTP_TLS must be none, starttls or ssl")
    values: dict[str, Any] = {
        "reminder_channel": channel,
        "reminder_poll_seconds": float(
            env.get("REMINDER_POLL_SECONDS", defaults.reminder_poll_seconds)),
        "reminder_lease_seconds": float(
            env.get("REMINDER_LEASE_SECONDS", defaults.reminder_lease_seconds)),
        "reminder_batch_size": int(env.get("REMINDER_BATCH_SIZE", defaults.reminder_batch_size)),
        "reminder_max_attempts": int(
            env.get("REMINDER_MAX_ATTEMPTS", defaults.reminder_max_attempts)),
        "reminder_retry_base_seconds": float(
            env.get("REMINDER_RETRY_BASE_SECONDS", defaults.reminder_retry_base_seconds)),
        "quiet_hours_start": _clock(env.get("QUIET_HOURS_START", "21:00")),
        "quiet_hours_end": _clock(env.get("QUIET_HOURS_END", "08:00")),
        "channel_timeout_seconds": float(
            env.get("CHANNEL_TIMEOUT_SECONDS", defaults.channel_timeout_seconds)),
        "smtp_host": env.get("SMTP_HOST", defaults.smtp_host),
        "smtp_port": int(env.get("SMTP_PORT", defaults.smtp_port)),
        "smtp_tls": tls,
        "smtp_username": env.get("SMTP_USERNAME") or None,
        "smtp_password": env.get("SMTP_PASSWORD") or None,
        "smtp_from": env.get("SMTP_FROM", defaults.smtp_from),
        "sms_gateway_url": env.get("SMS_GATEWAY_URL") or None,
        "sms_account_sid": env.get("SMS_ACCOUNT_SID") or None,
        "sms_auth_token": env.get("SMS_AUTH_TOKEN") or None,
        "sms_from": env.get("SMS_FROM") or None,
    }
    for name in ("reminder_poll_seconds", "reminder_lease_seconds", "reminder_batch_size",
                 "reminder_max_attempts", "reminder_retry_base_seconds",
                 "channel_timeout_seconds"):
        if values[name] <= 0:
            raise ValueError(f"{name.upper()} must be positive")
    return values


def _integration_settings(env: Mapping[str, str], defaults: Settings) -> dict[str, Any]:
    """Calendar feeds, sync tokens and webhooks (CALENDAR_*, SYNC_*, WEBHOOK_*)."""
    values: dict[str, Any] = {
        "calendar_refresh_minutes": int(
            env.get("CALENDAR_REFRESH_MINUTES", defaults.calendar_refresh_minutes)),
        "sync_token_retention_days": int(
            env.get("SYNC_TOKEN_RETENTION_DAYS", defaults.sync_token_retention_days)),
        "webhook_poll_seconds": float(
            env.get("WEBHOOK_POLL_SECONDS", defaults.webhook_poll_seconds)),
        "webhook_lease_seconds": float(
            env.get("WEBHOOK_LEASE_SECONDS", defaults.webhook_lease_seconds)),
        "webhook_batch_size": int(env.get("WEBHOOK_BATCH_SIZE", defaults.webhook_batch_size)),
        "webhook_timeout_seconds": float(
            env.get("WEBHOOK_TIMEOUT_SECONDS", defaults.webhook_timeout_seconds)),
        "webhook_retry_base_seconds": float(
            env.get("WEBHOOK_RETRY_BASE_SECONDS", defaults.webhook_retry_base_seconds)),
        "webhook_retry_window_hours": float(
            env.get("WEBHOOK_RETRY_WINDOW_HOURS", defaults.webhook_retry_window_hours)),
        "webhook_allow_private_targets": env.get(
            "WEBHOOK_ALLOW_PRIVATE_TARGETS", "").strip().lower() in {"1", "true", "yes"},
        "webhook_secret_overlap_hours": float(
            env.get("WEBHOOK_SECRET_OVERLAP_HOURS", defaults.webhook_secret_overlap_hours)),
    }
    for name, value in values.items():
        if not isinstance(value, bool) and value <= 0:
            raise ValueError(f"{name.upper()} must be positive")
    if values["webhook_lease_seconds"] <= values["webhook_timeout_seconds"]:
        raise ValueError("WEBHOOK_LEASE_SECONDS must be longer than WEBHOOK_TIMEOUT_SECONDS")
    return values


def _consultation_settings(env: Mapping[str, str], defaults: Settings) -> dict[str, Any]:
    """BP_HOLD_THRESHOLD, TELEHEALTH_VIDEO_URL_TEMPLATE, CONTROLLED_SUBSTANCE_CUTOFF."""
    threshold = env.get("BP_HOLD_THRESHOLD", "").strip()
    systolic, diastolic = defaults.bp_hold_systolic, defaults.bp_hold_diastolic
    if threshold:
        high, slash, low = threshold.partition("/")
        if not slash or not high.strip().isdigit() or not low.strip().isdigit():
            raise ValueError("BP_HOLD_THRESHOLD must look like 160/100 (systolic/diastolic)")
        systolic, diastolic = int(high), int(low)
        if not 0 < diastolic < systolic:
            raise ValueError("BP_HOLD_THRESHOLD: the diastolic value comes second, below "
                             "the systolic one")
    template = env.get("TELEHEALTH_VIDEO_URL_TEMPLATE", defaults.telehealth_video_url_template)
    if "{booking_id}" not in template or not template.startswith(("https://", "http://")):
        raise ValueError("TELEHEALTH_VIDEO_URL_TEMPLATE must be an http(s) URL containing "
                         "{booking_id}")
    cutoff = env.get("CONTROLLED_SUBSTANCE_CUTOFF", "").strip()
    return {
        "bp_hold_systolic": systolic,
        "bp_hold_diastolic": diastolic,
        "telehealth_video_url_template": template,
        "controlled_substance_cutoff": (date.fromisoformat(cutoff) if cutoff
                                        else defaults.controlled_substance_cutoff),
        **_watch_limits(env, defaults),
        "check_in_opens_minutes": _non_negative(
            "CHECK_IN_OPENS_MINUTES",
            env.get("CHECK_IN_OPENS_MINUTES", str(defaults.check_in_opens_minutes))),
    }


def _watch_limits(env: Mapping[str, str], defaults: Settings) -> dict[str, int]:
    """VITALS_ALERT_SYSTOLIC, VITALS_ALERT_DIASTOLIC, VITALS_ALERT_HEART_RATE,
    VITALS_ALERT_SPO2: the limits of readings during and after dosing."""
    values = {name: int(env.get(name.upper(), getattr(defaults, name))) for name in (
        "vitals_alert_systolic", "vitals_alert_diastolic", "vitals_alert_heart_rate",
        "vitals_alert_spo2")}
    if not 0 < values["vitals_alert_diastolic"] < values["vitals_alert_systolic"]:
        raise ValueError("VITALS_ALERT_DIASTOLIC must be above 0 and below "
                         "VITALS_ALERT_SYSTOLIC")
    if not 0 < values["vitals_alert_spo2"] <= 100:
        raise ValueError("VITALS_ALERT_SPO2 is a percentage (1-100)")
    return values


IDEMPOTENCY_LEASE_MARGIN_SECONDS = 5.0


def _database_settings(env: Mapping[str, str], defaults: Settings) -> dict[str, Any]:
    """DATABASE_*_TIMEOUT_SECONDS, SQLITE_BUSY_TIMEOUT_SECONDS, READINESS_TIMEOUT_SECONDS,
    DATABASE_RETRY_AFTER_SECONDS, GUNICORN_TIMEOUT and IDEMPOTENCY_LEASE_SECONDS."""
    worker_timeout = float(env.get("GUNICORN_TIMEOUT", defaults.worker_timeout_seconds))
    values: dict[str, Any] = {
        "database_connect_timeout_seconds": int(env.get(
            "DATABASE_CONNECT_TIMEOUT_SECONDS", defaults.database_connect_timeout_seconds)),
        "database_statement_timeout_seconds": float(env.get(
            "DATABASE_STATEMENT_TIMEOUT_SECONDS", defaults.database_statement_timeout_seconds)),
        "database_lock_timeout_seconds": float(env.get(
            "DATABASE_LOCK_TIMEOUT_SECONDS", defaults.database_lock_timeout_seconds)),
        "database_pool_timeout_seconds": float(env.get(
            "DATABASE_POOL_TIMEOUT_SECONDS", defaults.database_pool_timeout_seconds)),
        "sqlite_busy_timeout_seconds": float(env.get(
            "SQLITE_BUSY_TIMEOUT_SECONDS", defaults.sqlite_busy_timeout_seconds)),
        "readiness_timeout_seconds": int(env.get(
            "READINESS_TIMEOUT_SECONDS", defaults.readiness_timeout_seconds)),
        "database_retry_after_seconds": int(env.get(
            "DATABASE_RETRY_AFTER_SECONDS", defaults.database_retry_after_seconds)),
        "worker_timeout_seconds": worker_timeout,
        "idempotency_lease_seconds": float(env.get(
            "IDEMPOTENCY_LEASE_SECONDS", worker_timeout + IDEMPOTENCY_LEASE_MARGIN_SECONDS)),
    }
    for name, value in values.items():
        if value <= 0:
            variable = "GUNICORN_TIMEOUT" if name == "worker_timeout_seconds" else name.upper()
            raise ValueError(f"{variable} must be positive")
    for name in ("database_connect_timeout_seconds", "readiness_timeout_seconds"):
        if values[name] < 2:  # libpq's (and psycopg's) shortest connect timeout
            raise ValueError(f"{name.upper()} must be at least 2 (whole seconds)")
    if values["database_statement_timeout_seconds"] + 1 >= worker_timeout:
        raise ValueError("DATABASE_STATEMENT_TIMEOUT_SECONDS must end well before "
                         "GUNICORN_TIMEOUT (the worker would be killed first)")
    if values["idempotency_lease_seconds"] <= worker_timeout:
        raise ValueError("IDEMPOTENCY_LEASE_SECONDS must be longer than GUNICORN_TIMEOUT: "
                         "a key must not be taken over while its request may still run")
    return values


def _alert_settings(env: Mapping[str, str], defaults: Settings) -> dict[str, Any]:
    """ALERT_ESCALATION_MINUTES, ALERT_POLL_SECONDS, VITALS_ALERT_MOAAS, DISCHARGE_MOAAS."""
    values: dict[str, Any] = {
        "alert_escalation_minutes": int(env.get("ALERT_ESCALATION_MINUTES",
                                                defaults.alert_escalation_minutes)),
        "alert_poll_seconds": float(env.get("ALERT_POLL_SECONDS", defaults.alert_poll_seconds)),
        "vitals_alert_moaas": int(env.get("VITALS_ALERT_MOAAS", defaults.vitals_alert_moaas)),
        "discharge_moaas": int(env.get("DISCHARGE_MOAAS", defaults.discharge_moaas)),
    }
    for name in ("alert_escalation_minutes", "alert_poll_seconds"):
        if values[name] <= 0:
            raise ValueError(f"{name.upper()} must be positive")
    if not 0 <= values["vitals_alert_moaas"] < values["discharge_moaas"] <= 5:
        raise ValueError("VITALS_ALERT_MOAAS and DISCHARGE_MOAAS are MOAA/S scores (0-5), "
                         "the alert level below the discharge level")
    return values


def _waitlist_settings(env: Mapping[str, str], defaults: Settings) -> dict[str, Any]:
    """WAITLIST_HOLD_MINUTES and WAITLIST_POLL_SECONDS."""
    hold = int(env.get("WAITLIST_HOLD_MINUTES", defaults.waitlist_hold_minutes))
    poll = float(env.get("WAITLIST_POLL_SECONDS", defaults.waitlist_poll_seconds))
    if hold <= 0 or poll <= 0:
        raise ValueError("WAITLIST_HOLD_MINUTES and WAITLIST_POLL_SECONDS must be positive")
    return {"waitlist_hold_minutes": hold, "waitlist_poll_seconds": poll}


def _connected_calendar_settings(env: Mapping[str, str], defaults: Settings) -> dict[str, Any]:
    """CALENDAR_SECRET_KEY, CALENDAR_SYNC_*, CALENDAR_STALE_MULTIPLE, CALENDAR_TIMEOUT_SECONDS,
    CALENDAR_ALLOW_PRIVATE_TARGETS and CALENDAR_WRITE_POLL_SECONDS."""
    values: dict[str, Any] = {
        "calendar_secret_key": env.get("CALENDAR_SECRET_KEY") or None,
        "calendar_sync_poll_seconds": float(
            env.get("CALENDAR_SYNC_POLL_SECONDS", defaults.calendar_sync_poll_seconds)),
        "calendar_sync_interval_minutes": int(
            env.get("CALENDAR_SYNC_INTERVAL_MINUTES", defaults.calendar_sync_interval_minutes)),
        "calendar_stale_multiple": float(
            env.get("CALENDAR_STALE_MULTIPLE", defaults.calendar_stale_multiple)),
        "calendar_sync_days": int(env.get("CALENDAR_SYNC_DAYS", defaults.calendar_sync_days)),
        "calendar_timeout_seconds": float(
            env.get("CALENDAR_TIMEOUT_SECONDS", defaults.calendar_timeout_seconds)),
        "calendar_allow_private_targets": env.get(
            "CALENDAR_ALLOW_PRIVATE_TARGETS", "").lower() in {"1", "true", "yes"},
        "calendar_write_poll_seconds": float(
            env.get("CALENDAR_WRITE_POLL_SECONDS", defaults.calendar_write_poll_seconds)),
    }
    for name, value in values.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
            raise ValueError(f"{name.upper()} must be positive")
    if values["calendar_stale_multiple"] < 1:
        raise ValueError("CALENDAR_STALE_MULTIPLE must be at least 1")
    return values


def _operations_settings(env: Mapping[str, str], defaults: Settings) -> dict[str, Any]:
    """LOG_FORMAT, REDIS_URL, RATE_LIMIT_*, SCHEDULER_METRICS_PORT, SCHEDULER_GRACE_SECONDS,
    CLINIC_DRAIN_FILE, HOST, WEBHOOK_CHANNEL."""
    log_format = env.get("LOG_FORMAT", defaults.log_format).strip().lower()
    if log_format not in {"text", "json"}:
        raise ValueError("LOG_FORMAT must be text or json")
    roles = dict(defaults.rate_limit_roles)
    for part in _csv(env.get("RATE_LIMIT_ROLES", "")):
        role, equals, limit = part.partition("=")
        if not equals or role.strip() not in roles or not limit.strip():
            raise ValueError("RATE_LIMIT_ROLES looks like staff=1200/minute,patient=60/minute "
                             f"(roles: {', '.join(roles)})")
        roles[role.strip()] = limit.strip()
    values: dict[str, Any] = {
        "log_format": log_format,
        "redis_url": env.get("REDIS_URL") or None,
        "rate_limit_roles": tuple(roles.items()),
        "rate_limit_anonymous": env.get("RATE_LIMIT_ANONYMOUS", defaults.rate_limit_anonymous),
        "rate_limit_key_checks": env.get("RATE_LIMIT_KEY_CHECKS",
                                         defaults.rate_limit_key_checks),
        "rate_limit_calendar_feeds": env.get("RATE_LIMIT_CALENDAR_FEEDS",
                                             defaults.rate_limit_calendar_feeds),
        "scheduler_metrics_port": _non_negative(
            "SCHEDULER_METRICS_PORT", env.get("SCHEDULER_METRICS_PORT", "0")),
        "scheduler_grace_seconds": float(
            env.get("SCHEDULER_GRACE_SECONDS", defaults.scheduler_grace_seconds)),
        "drain_file": env.get("CLINIC_DRAIN_FILE") or None,
        "host": env.get("HOST", defaults.host),
        "webhook_channel": env.get("WEBHOOK_CHANNEL", defaults.webhook_channel).strip().lower(),
    }
    if values["webhook_channel"] not in {"live", "log"}:
        raise ValueError("WEBHOOK_CHANNEL must be live or log")
    if values["scheduler_grace_seconds"] <= 0:
        raise ValueError("SCHEDULER_GRACE_SECONDS must be positive")
    return values
