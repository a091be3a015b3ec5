"""Sending the webhook outbox: claim due rows with a lease, POST them signed, record.

The shape of the reminders dispatcher (``service.domain.reminders.dispatch``), run by the
scheduler process as its ``webhooks`` job:

1. Claim (one short transaction): the oldest open deliveries whose ``next_attempt_at`` has
   come (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so several schedulers split the work;
   SQLite: the write transaction is ``BEGIN IMMEDIATE``) become ``sending`` under this
   batch's claim token, with ``attempts + 1`` and a lease (``next_attempt_at`` = end of the
   lease), so the rows of a sender that died are claimed again once the lease ends.
   Deliveries of a disabled subscription are cancelled instead.
2. Send, with no transaction open: POST the stored body with a fresh ``X-Signature``, no
   redirects followed, a timeout; only a 2xx answer counts as delivered. Before each send
   the lease is checked: what cannot be sent within it is given back.
3. Record (one short transaction per delivery, only while our claim token still holds): the
   attempt goes to the log; delivered, or retried with exponential backoff
   (``WEBHOOK_RETRY_BASE_SECONDS`` doubling, at most an hour apart) for
   ``WEBHOOK_RETRY_WINDOW_HOURS`` after the event; after that the delivery is ``failed``,
   the subscription is disabled and its other open deliveries are cancelled.

Delivery is at least once: a sender that dies between the POST and the record sends again
after the lease. Receivers drop duplicates by ``X-Event-Id`` (the same for every attempt and
redelivery of an event). Logs carry ids, event types, status codes and error codes; never a
URL, a body or a secret.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select, update

from service.config import Settings
from service.db import Database, utcnow
from service.domain.calendar.models import (
    OPEN_DELIVERY_STATUSES,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from service.domain.errors import InvalidInput
from service.domain.retries import backoff
from service.domain.webhooks import services as webhooks
from service.uow import UnitOfWork

log = logging.getLogger(__name__)

USER_AGENT = "clinic-scheduling-webhooks/1"
RESPONSE_READ_LIMIT = 64 * 1024


@dataclass
class DeliveryReport:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    released: int = 0
    disabled: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in vars(self).items() if v)


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    token: uuid.UUID
    subscription_id: uuid.UUID
    url: str
    secret: str
    event_id: uuid.UUID
    event_type: str
    payload: str
    attempt: int


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None  # None: delivered
    duration_ms: int


class WebhookDispatcher:
    def __init__(self, database: Database, settings: Settings, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.database = database
        self.settings = settings
        self.clock = clock
        self._stopping = False

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self.database.write_sessions, dialect=self.database.dialect)

    def request_stop(self) -> None:
        """Finish the POST in flight, give the rest of the batch back, return."""
        self._stopping = True

    # The job ----------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> DeliveryReport:
        """Send everything due (``now``: a fixed clock, for tests)."""
        report = DeliveryReport()
        batch = max(1, self.settings.webhook_batch_size)
        while not self._stopping:
            cancelled = report.cancelled
            claimed = self.claim(now or self.clock(), limit=batch, report=report)
            if claimed:
                self._send(claimed, now, report)
            if len(claimed) + report.cancelled - cancelled < batch:
                break
        if report.claimed:
            log.info("webhook deliveries: %s", report)
        return report

    def claim(self, at: datetime, *, limit: int,
              report: DeliveryReport | None = None) -> list[Claimed]:
        report = report or DeliveryReport()
        token = uuid.uuid4()
        lease_until = at + timedelta(seconds=self.settings.webhook_lease_seconds)
        with self._uow() as uow:
            session = uow.session
            ids = list(session.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.status.in_(OPEN_DELIVERY_STATUSES),
                       WebhookDelivery.next_attempt_at <= at)
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(limit)
                .with_for_update(skip_locked=True)))
            if not ids:
                return []
            rows = session.execute(
                select(WebhookDelivery, WebhookSubscription)
                .join(WebhookSubscription,
                      WebhookSubscription.id == WebhookDelivery.subscription_id)
                .where(WebhookDelivery.id.in_(ids))).all()
            inactive = [d.id for d, s in rows if not s.active]
            if inactive:
                session.execute(
                    update(WebhookDelivery).where(WebhookDelivery.id.in_(inactive))
                    .values(status=DeliveryStatus.CANCELLED, last_error="subscription_inactive",
                            claim_token=None, lease_until=None, updated_at=at)
                    .execution_options(synchronize_session=False))
                report.cancelled += len(inactive)
            active = {d.id: (d, s) for d, s in rows if s.active}
            if active:
                session.execute(
                    update(WebhookDelivery).where(WebhookDelivery.id.in_(list(active)))
                    .values(status=DeliveryStatus.SENDING, claim_token=token,
                            lease_until=lease_until, next_attempt_at=lease_until,
                            attempts=WebhookDelivery.attempts + 1, updated_at=at)
                    .execution_options(synchronize_session=False))
            claimed = []
            for delivery_id in ids:  # oldest first
                if delivery_id not in active:
                    continue
                delivery, subscription = active[delivery_id]
                claimed.append(Claimed(
                    id=delivery.id, token=token, subscription_id=subscription.id,
                    url=subscription.url, secret=subscription.secret,
                    event_id=delivery.event_id, event_type=delivery.event_type,
                    payload=delivery.payload, attempt=delivery.attempts + 1))
            uow.commit()
        report.claimed += len(claimed)
        return claimed

    def _send(self, claimed: list[Claimed], now: datetime | None,
              report: DeliveryReport) -> None:
        started = time.monotonic()
        budget = self.settings.webhook_lease_seconds - self.settings.webhook_timeout_seconds
        down: set[uuid.UUID] = set()  # subscriptions that failed in this batch
        for index, item in enumerate(claimed):
            if self._stopping or time.monotonic() - started > budget:
                rest = claimed[index:]
                report.released += self._release(rest, when=now or self.clock())
                return
            if item.subscription_id in down:
                when = (now or self.clock()) + backoff(1, self.settings.webhook_retry_base_seconds)
                report.released += self._release([item], when=when)
                continue
            outcome = self.post(item)
            self._record(item, outcome, now or self.clock(), report)
            if outcome.error is not None:
                down.add(item.subscription_id)

    def post(self, item: Claimed) -> Outcome:
        """One signed POST; never raises."""
        body = item.payload.encode()
        try:
            webhooks.check_target(item.url,
                                  allow_private=self.settings.webhook_allow_private_targets)
        except InvalidInput:
            return Outcome(None, "target_not_allowed", 0)
        parts = urlsplit(item.url)
        timeout = self.settings.webhook_timeout_seconds
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=timeout,
                context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                    timeout=timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            webhooks.SIGNATURE_HEADER: webhooks.signature(item.secret, body, int(time.time())),
            "X-Event-Id": str(item.event_id),
            "X-Event-Type": item.event_type,
            "X-Delivery-Id": str(item.id),
            "X-Delivery-Attempt": str(item.attempt),
        }
        started = time.monotonic()
        status: int | None = None
        error: str | None
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read(RESPONSE_READ_LIMIT)
            status = response.status
            error = None if 200 <= status < 300 else f"http_{status}"
        except TimeoutError:
            error = "timeout"
        except ConnectionRefusedError:
            error = "connection_refused"
        except ssl.SSLError:
            error = "tls_error"
        except socket.gaierror:
            error = "dns_error"
        except (http.client.HTTPException, OSError) as exc:
            error = f"network_{type(exc).__name__}"[:64]
        finally:
            connection.close()
        return Outcome(status, error, int((time.monotonic() - started) * 1000))

    def _record(self, item: Claimed, outcome: Outcome, at: datetime,
                report: DeliveryReport) -> None:
        with self._uow() as uow:
            session = uow.session
            delivery = session.scalar(
                select(WebhookDelivery)
                .where(WebhookDelivery.id == item.id, WebhookDelivery.claim_token == item.token,
                       WebhookDelivery.status == DeliveryStatus.SENDING)
                .with_for_update())
            if delivery is None:  # the lease ran out and someone claimed it again
                return
            session.add(WebhookAttempt(delivery_id=delivery.id, attempt=delivery.attempts,
                                       attempted_at=at, status_code=outcome.status_code,
                                       error=outcome.error, duration_ms=outcome.duration_ms))
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error
            delivery.claim_token = None
            delivery.lease_until = None
            delivery.updated_at = at
            if outcome.error is None:
                delivery.status = DeliveryStatus.DELIVERED
                delivery.delivered_at = at
                delivery.next_attempt_at = at
                report.delivered += 1
                log.debug("webhook delivery %s (%s) delivered", delivery.id, item.event_type)
            else:
                retry_at = at + backoff(delivery.attempts,
                                        self.settings.webhook_retry_base_seconds)
                give_up_at = delivery.created_at + timedelta(
                    hours=self.settings.webhook_retry_window_hours)
                if retry_at > give_up_at:
                    delivery.status = DeliveryStatus.FAILED
                    delivery.next_attempt_at = at
                    report.failed += 1
                    session.flush()
                    report.disabled += self._disable(session, item.subscription_id, at)
                    log.warning("webhook delivery %s (%s) failed after %d attempts (%s); "
                                "subscription %s disabled", delivery.id, item.event_type,
                                delivery.attempts, outcome.error, item.subscription_id)
                else:
                    delivery.status = DeliveryStatus.PENDING
                    delivery.next_attempt_at = retry_at
                    report.retried += 1
                    log.info("webhook delivery %s (%s) attempt %d failed (%s); retry at %s",
                             delivery.id, item.event_type, delivery.attempts, outcome.error,
                             retry_at.isoformat())
            uow.commit()

    @staticmethod
    def _disable(session, subscription_id: uuid.UUID, at: datetime) -> int:  # type: ignore[no-untyped-def]
        result = session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == subscription_id,
                   WebhookSubscription.active.is_(True))
            .values(active=False, disabled_reason="delivery_failures", disabled_at=at,
                    updated_at=at, version=WebhookSubscription.version + 1)
            .execution_options(synchronize_session=False))
        webhooks.cancel_open_deliveries(session, subscription_id, "subscription_disabled", at)
        return result.rowcount or 0

    def _release(self, items: list[Claimed], *, when: datetime) -> int:
        """Give claimed, unsent rows back (the attempt is not counted)."""
        if not items:
            return 0
        with self._uow() as uow:
            result = uow.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_([i.id for i in items]),
                       WebhookDelivery.claim_token == items[0].token,
                       WebhookDelivery.status == DeliveryStatus.SENDING)
                .values(status=DeliveryStatus.PENDING, attempts=WebhookDelivery.attempts - 1,
                        claim_token=None, lease_until=None, next_attempt_at=when)
                .execution_options(synchronize_session=False))
            uow.commit()
            return result.rowcount or 0
