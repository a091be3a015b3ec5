"""The webhook outbox: what ``service.domain.outbox.OutboxRunner`` needs to deliver webhooks.

- Due: open deliveries whose ``next_attempt_at`` has come. Deliveries of a disabled
  subscription are cancelled at the claim instead of sent.
- Not guarded: the stored body is POSTed with a fresh Standard Webhooks signature
  (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) with no transaction
  open (no redirects followed, a timeout; only a 2xx answer counts as delivered), through
  the HTTP adapter the scheduler hands in; the outcome is recorded right after, in its own
  short transaction, only while our claim token still holds.
- Outcomes: each attempt goes to the log; delivered, or retried with exponential backoff
  (``WEBHOOK_RETRY_BASE_SECONDS`` doubling, at most an hour apart) for
  ``WEBHOOK_RETRY_WINDOW_HOURS`` after the event; after that the delivery is ``failed``,
  the subscription is disabled and its other open deliveries are cancelled.

Delivery is at least once: a sender that dies between the POST and the record sends again
after the lease. Receivers drop duplicates by ``webhook-id`` (the event id, the same for
every attempt and redelivery of an event). Logs carry ids, event types, status codes and
error codes; never a URL, a body or a secret.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.config import Settings
from service.domain.calendar.models import (
    OPEN_DELIVERY_STATUSES,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from service.domain.errors import InvalidInput
from service.domain.outbox import (
    Adapter,
    DeliveryError,
    Done,
    Due,
    Postponed,
    Report,
    Result,
    RowUpdate,
    Send,
    Table,
)
from service.domain.webhooks import services as webhooks

log = logging.getLogger(__name__)

USER_AGENT = "clinic-scheduling-webhooks/1"
TABLE = Table(model=WebhookDelivery, open=OPEN_DELIVERY_STATUSES,
              sending=DeliveryStatus.SENDING, waiting=DeliveryStatus.PENDING)


@dataclass(frozen=True)
class HttpPost:
    """What the HTTP adapter sends: a POST of ``body`` to ``url`` with ``headers``."""

    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class ClaimedDelivery:
    id: uuid.UUID
    token: uuid.UUID
    attempt: int
    subscription_id: uuid.UUID
    url: str
    secrets: tuple[str, ...]  # the current secret, and the previous one during an overlap
    event_id: uuid.UUID
    event_type: str
    payload: str
    created_at: datetime  # retries stop WEBHOOK_RETRY_WINDOW_HOURS after it


class WebhookOutbox:
    name = "webhooks"
    title = "webhook delivery outbox"
    summary = "webhook deliveries"
    table = TABLE
    guarded = False

    def __init__(self, settings: Settings, http: Adapter) -> None:
        self.settings = settings
        self.http = http
        self.poll_seconds = settings.webhook_poll_seconds
        self.lease_seconds = settings.webhook_lease_seconds
        self.batch_size = settings.webhook_batch_size
        self.send_timeout_seconds = settings.webhook_timeout_seconds
        self.retry_base_seconds = settings.webhook_retry_base_seconds

    def load(self, session: Session, due: list[Due], *, token: uuid.UUID, at: datetime,
             report: Report) -> list[ClaimedDelivery]:
        rows = {d.id: (d, s) for d, s in session.execute(
            select(WebhookDelivery, WebhookSubscription)
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .where(WebhookDelivery.id.in_([d.id for d in due]))).all()}
        inactive = {d.id for d, s in rows.values() if not s.active}
        if inactive:
            session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id.in_(inactive))
                .values(status=DeliveryStatus.CANCELLED, last_error="subscription_inactive",
                        claim_token=None, lease_until=None, updated_at=at)
                .execution_options(synchronize_session=False))
            report.add("cancelled", len(inactive))
        claimed = []
        for d in due:  # oldest first
            if d.id not in rows or d.id in inactive:
                continue
            delivery, subscription = rows[d.id]
            claimed.append(ClaimedDelivery(
                id=delivery.id, token=token, attempt=d.attempt,
                subscription_id=subscription.id, url=subscription.url,
                secrets=tuple(webhooks.signing_secrets(subscription, at)),
                event_id=delivery.event_id,
                event_type=delivery.event_type, payload=delivery.payload,
                created_at=delivery.created_at))
        return claimed

    def guard(self, session: Session, items: list[ClaimedDelivery]) -> None:
        return None  # not guarded: nothing is locked while a delivery is sent

    def prepare(self, item: ClaimedDelivery, guarded: None, *,
                at: datetime) -> Send | Done | None:
        body = item.payload.encode()
        refused = None
        try:
            webhooks.check_target(item.url,
                                  allow_private=self.settings.webhook_allow_private_targets)
        except InvalidInput:
            refused = DeliveryError("target_not_allowed", permanent=False)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            webhooks.ID_HEADER: str(item.event_id),
            webhooks.TIMESTAMP_HEADER: str(timestamp),
            webhooks.SIGNATURE_HEADER: webhooks.signature_header(
                list(item.secrets), str(item.event_id), timestamp, body),
            "X-Event-Type": item.event_type,
            "X-Delivery-Id": str(item.id),
            "X-Delivery-Attempt": str(item.attempt),
        }
        return Send(HttpPost(item.url, body, headers), adapter=self.http,
                    circuit=item.subscription_id, refused=refused)

    def record(self, item: ClaimedDelivery, result: Result, *, row: None,
               at: datetime) -> RowUpdate:
        assert not isinstance(result, Done)  # prepare always sends
        if isinstance(result, Postponed):  # given back, the attempt not counted
            return RowUpdate("released", {
                "status": DeliveryStatus.PENDING, "attempts": item.attempt - 1,
                "next_attempt_at": result.until})

        def log_attempt(session: Session, report: Report) -> None:
            session.add(WebhookAttempt(delivery_id=item.id, attempt=item.attempt,
                                       attempted_at=at, status_code=result.status_code,
                                       error=result.error, duration_ms=result.duration_ms))

        values: dict[str, Any] = {"last_status_code": result.status_code,
                                  "last_error": result.error, "updated_at": at}
        if result.accepted:
            log.debug("webhook delivery %s (%s) delivered", item.id, item.event_type)
            return RowUpdate("delivered", {**values, "status": DeliveryStatus.DELIVERED,
                                           "delivered_at": at, "next_attempt_at": at},
                             then=log_attempt)
        assert result.retry_at is not None
        give_up_at = item.created_at + timedelta(hours=self.settings.webhook_retry_window_hours)
        if result.retry_at <= give_up_at:
            log.info("webhook delivery %s (%s) attempt %d failed (%s); retry at %s", item.id,
                     item.event_type, item.attempt, result.error, result.retry_at.isoformat())
            return RowUpdate("retried", {**values, "status": DeliveryStatus.PENDING,
                                         "next_attempt_at": result.retry_at},
                             then=log_attempt)

        def log_attempt_and_disable(session: Session, report: Report) -> None:
            log_attempt(session, report)
            report.add("disabled", _disable(session, item.subscription_id, at))
            log.warning("webhook delivery %s (%s) failed after %d attempts (%s); "
                        "subscription %s disabled", item.id, item.event_type, item.attempt,
                        result.error, item.subscription_id)

        return RowUpdate("failed", {**values, "status": DeliveryStatus.FAILED,
                                    "next_attempt_at": at}, then=log_attempt_and_disable)


def _disable(session: Session, subscription_id: uuid.UUID, at: datetime) -> int:
    result: Any = session.execute(
        update(WebhookSubscription)
        .where(WebhookSubscription.id == subscription_id, WebhookSubscription.active.is_(True))
        .values(active=False, disabled_reason="delivery_failures", disabled_at=at,
                updated_at=at, version=WebhookSubscription.version + 1)
        .execution_options(synchronize_session=False))
    webhooks.cancel_open_deliveries(session, subscription_id, "subscription_disabled", at)
    return result.rowcount or 0
