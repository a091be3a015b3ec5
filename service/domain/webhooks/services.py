"""Webhooks: subscriptions, the thin event payloads, signing, and the outbox rows.

A subscription names a URL, the events it wants and gets a signing secret (shown once). When
a booking changes or a series is booked, ``enqueue_booking_change`` / ``enqueue_series_created``
(handlers of those domain events, see ``service/bootstrap.py``, run in the transaction of the
change) write one ``WebhookDelivery`` per interested subscription, so an event is delivered
if and only if its change committed. ``delivery.py`` sends them.

Payloads are thin: the event's id, type, time and API version, the booking's id, times and
status. Never a patient's name, contact or a clinical word: a receiver that needs more asks
the API with its own key, under the same access rules as everyone.

Signature (Standard Webhooks, https://www.standardwebhooks.com): ``webhook-id`` (the event
id), ``webhook-timestamp`` (unix seconds of the attempt) and ``webhook-signature:
v1,<base64 HMAC-SHA256("<id>.<timestamp>.<body>")>`` keyed with the base64-decoded part of
the ``whsec_`` secret, computed at each attempt, so a receiver can refuse old timestamps
(replays). After a rotation, deliveries carry the new and the previous signature
(space-separated) until the previous secret expires.

Targets: only ``http``/``https`` URLs without credentials. Unless
``WEBHOOK_ALLOW_PRIVATE_TARGETS`` is on, a literal IP address in a loopback, private,
link-local, multicast or reserved range and ``localhost`` names are refused (also in the
numeric spellings a resolver accepts, such as ``2130706433`` or ``0x7f.1``). Host names are
not resolved here: a name that resolves to an internal address is not caught (run the
scheduler behind an egress proxy for that).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from service.domain import recipients
from service.domain.access.actor import Actor
from service.domain.bookings import fresh
from service.domain.bookings.events import BookingChanged, BookingNeedsAttention
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.calendar.models import (
    OPEN_DELIVERY_STATUSES,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from service.domain.consultations.events import AlertAcknowledged, AlertRaised
from service.domain.errors import InvalidInput, InvalidState, NotFound
from service.domain.records import Page, apply_changes, paginate
from service.domain.series.events import SeriesCreated
from service.domain.series.models import TreatmentSeries
from service.domain.waitlist.events import WaitlistFilled, WaitlistOffered
from service.domain.webhooks.policy import policy
from service.uow import UnitOfWork

API_VERSION = "v1"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec allows 24 to 64
EVENTS = tuple(e.value for e in WebhookEvent)
BOOKING_EVENTS = frozenset({WebhookEvent.BOOKING_CREATED, WebhookEvent.BOOKING_RESCHEDULED,
                            WebhookEvent.BOOKING_CANCELLED, WebhookEvent.BOOKING_NO_SHOW})
MAX_URL_LENGTH = 2000


# Signing ----------------------------------------------------------------------------------


def new_secret() -> str:
    """``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        # Secrets issued before Standard Webhooks were token_urlsafe: decode them leniently
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``body`` for event ``msg_id`` sent at ``timestamp``."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_header(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    return " ".join(signature(s, msg_id, timestamp, body) for s in secrets_)


def signing_secrets(subscription: WebhookSubscription, now: datetime) -> list[str]:
    """The current secret, and the previous one while its overlap lasts."""
    keys = [subscription.secret]
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and expires is not None and now < expires:
        keys.append(subscription.previous_secret)
    return keys


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: float,
           tolerance: float = 300.0) -> bool:
    """What a receiver does (the spec's algorithm): refuse an old or future timestamp,
    compare every ``v1`` signature in constant time."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp = lower.get(ID_HEADER), lower.get(TIMESTAMP_HEADER, "")
    if not msg_id or not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    expected = signature(secret, msg_id, int(stamp), body)
    return any(hmac.compare_digest(expected, candidate)
               for candidate in lower.get(SIGNATURE_HEADER, "").split()
               if candidate.startswith("v1,"))


# Targets ----------------------------------------------------------------------------------

_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.I)


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The address a resolver reads in the numeric forms ``inet_aton`` accepts (``127.1``,
    ``2130706433``, ``0x7f.0.0.1``, ``0177.1``: decimal, hex or octal parts, the last one
    filling the remaining bytes); ``None`` when it is not one."""
    parts = host.lower().split(".")
    values = []
    for part in parts:
        if part.startswith("0x"):
            digits, base = part[2:] or "0", 16
        elif len(part) > 1 and part.startswith("0"):
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        try:
            values.append(int(digits, base))
        except ValueError:
            return None
    *leading, last = values
    if any(value > 255 for value in leading) or last >= 256 ** (4 - len(leading)):
        return None
    number = last
    for index, value in enumerate(leading):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _internal_address(host: str) -> bool:
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if _NUMERIC_HOST.match(host):
            address = _inet_aton(host)
            if address is None:
                return True  # numeric but not an address: refuse rather than guess
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (address.is_private or address.is_loopback or address.is_link_local
            or address.is_multicast or address.is_reserved or address.is_unspecified)


def check_target(url: str, *, allow_private: bool) -> str:
    """The URL, if deliveries may go there (raises ``webhook_url_not_allowed``)."""

    def refuse(why: str) -> InvalidInput:
        return InvalidInput(f"The webhook URL is not allowed: {why}.",
                            code="webhook_url_not_allowed")

    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse("not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise refuse("only http and https URLs are delivered to")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise refuse("no host")
    if parts.username is not None or parts.password is not None:
        raise refuse("credentials in the URL (put a token in the path, or verify the "
                      "signature)")
    if port == 0:
        raise refuse("port 0")
    if parts.fragment:
        raise refuse("a fragment is never sent")
    if not allow_private and (host == "localhost" or host.endswith(".localhost")
                              or _internal_address(host)):
        raise refuse("an internal address")
    return url


# Payloads and the outbox ------------------------------------------------------------------


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def payload(event_id: uuid.UUID, event_type: str, occurred_at: datetime,
            data: dict[str, Any]) -> str:
    """The JSON body of an event, the same bytes for every subscription and attempt."""
    return json.dumps({"id": str(event_id), "type": event_type,
                       "occurred_at": _instant(occurred_at), "api_version": API_VERSION,
                       "data": data}, separators=(",", ":"))


def booking_data(booking_id: uuid.UUID, start: datetime, end: datetime,
                 status: BookingStatus) -> dict[str, Any]:
    return {"booking_id": str(booking_id), "start": _instant(start), "end": _instant(end),
            "status": status.value}


def _enqueue(uow: UnitOfWork, event_type: str, data: dict[str, Any],
             occurred_at: datetime, *, provider_id: uuid.UUID | None = None) -> int:
    """Outbox rows for every active subscription that asked for ``event_type``; the
    subscriptions are read once per transaction (``service/domain/recipients.py``), with the
    write-back calendars of ``provider_id`` when given."""
    subscriptions = [s for s in recipients.subscribers(uow, provider_id=provider_id)
                     if s.wants(event_type)]
    if not subscriptions:
        return 0
    session = uow.session
    event_id = uuid.uuid4()
    body = payload(event_id, event_type, occurred_at, data)
    for subscription in subscriptions:
        session.add(WebhookDelivery(
            subscription_id=subscription.id, event_id=event_id, event_type=event_type,
            payload=body, status=DeliveryStatus.PENDING, attempts=0,
            next_attempt_at=occurred_at, created_at=occurred_at, updated_at=occurred_at))
    return len(subscriptions)


def enqueue_booking_change(uow: UnitOfWork, event: BookingChanged) -> None:
    """Outbox rows for a booking change (inside its transaction); kinds no subscription can
    ask for (confirmed, checked in, completed): none."""
    kind = event.kind.value
    if kind not in BOOKING_EVENTS:
        return
    data = booking_data(event.booking_id, event.starts_at, event.ends_at, event.status)
    # The booking's provider, when the transaction loaded it: its write-back calendars are
    # read with the subscriptions (the calendars' handler comes next, bootstrap.py).
    created = fresh.find(uow.memo, event.booking_id)  # written without an ORM instance
    booking = (created.booking if created is not None
               else uow.session.identity_map.get(identity_key(Booking, event.booking_id)))
    _enqueue(uow, kind, data, event.occurred_at,
             provider_id=booking.provider_id if created is not None
             or isinstance(booking, Booking) else None)


def enqueue_booking_attention(uow: UnitOfWork, event: BookingNeedsAttention) -> None:
    """Outbox rows for a booking flagged for attention: its id, times, status and the code
    of the rule it no longer passes (no patient data)."""
    data = {**booking_data(event.booking_id, event.starts_at, event.ends_at, event.status),
            "attention": event.code}
    _enqueue(uow, WebhookEvent.BOOKING_ATTENTION.value, data, event.occurred_at)


def enqueue_alert_raised(uow: UnitOfWork, event: AlertRaised) -> None:
    """Outbox rows for a new alert: its id, whether it is urgent and when it was raised (no
    patient, no kind, no value: a receiver asks ``GET /api/v1/alerts`` with its own key)."""
    data = {"alert_id": str(event.alert_id), "urgent": event.urgent,
            "raised_at": _instant(event.occurred_at)}
    _enqueue(uow, WebhookEvent.ALERT_RAISED.value, data, event.occurred_at)


def enqueue_alert_acknowledged(uow: UnitOfWork, event: AlertAcknowledged) -> None:
    """Outbox rows for an acknowledged alert: its id and when."""
    data = {"alert_id": str(event.alert_id), "acknowledged_at": _instant(event.occurred_at)}
    _enqueue(uow, WebhookEvent.ALERT_ACKNOWLEDGED.value, data, event.occurred_at)


def enqueue_series_created(uow: UnitOfWork, event: SeriesCreated) -> None:
    """Outbox rows for a new treatment series (inside its transaction)."""
    session = uow.session
    series = session.get(TreatmentSeries, event.series_id)
    session.flush()
    sessions = list(session.scalars(select(Booking).where(Booking.series_id == series.id)
                                    .order_by(Booking.starts_at, Booking.id)))
    data = {"series_id": str(series.id), "status": series.status.value,
            "planned_sessions": series.planned_sessions,
            "first_start": _instant(series.first_start),
            "bookings": [booking_data(b.id, b.starts_at, b.ends_at, b.status)
                         for b in sessions]}
    _enqueue(uow, WebhookEvent.SERIES_CREATED.value, data, event.occurred_at)


def enqueue_waitlist_offered(uow: UnitOfWork, event: WaitlistOffered) -> None:
    """Outbox rows for a waitlist offer: ids and times only (no patient data)."""
    data = {"offer_id": str(event.offer_id), "entry_id": str(event.entry_id),
            "booking_id": str(event.booking_id), "start": _instant(event.starts_at),
            "end": _instant(event.ends_at), "expires_at": _instant(event.expires_at)}
    _enqueue(uow, WebhookEvent.WAITLIST_OFFERED.value, data, event.occurred_at)


def enqueue_waitlist_filled(uow: UnitOfWork, event: WaitlistFilled) -> None:
    data = {"offer_id": str(event.offer_id), "entry_id": str(event.entry_id),
            "booking_id": str(event.booking_id), "start": _instant(event.starts_at),
            "end": _instant(event.ends_at)}
    _enqueue(uow, WebhookEvent.WAITLIST_FILLED.value, data, event.occurred_at)


# Subscriptions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedSubscription:
    record: WebhookSubscription
    secret: str  # shown once

    def __getattr__(self, name: str) -> Any:  # the schema reads the record's fields
        return getattr(self.record, name)


def _subscription(uow: UnitOfWork, actor: Actor, subscription_id: uuid.UUID, *,
                  lock: bool = False) -> WebhookSubscription:
    return policy.load(uow.session, actor, subscription_id, lock=lock)


def _events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENTS))
    if unknown or not events:
        raise InvalidInput(f"Subscribe to some of {', '.join(EVENTS)}.", code="invalid_input",
                           unknown=unknown)
    return [e for e in EVENTS if e in events]  # canonical order, no duplicates


def create_subscription(uow: UnitOfWork, actor: Actor, *, url: str, events: list[str],
                        allow_private: bool, now: datetime, description: str | None = None,
                        active: bool = True) -> CreatedSubscription:
    check_target(url, allow_private=allow_private)
    secret = new_secret()

    def work() -> CreatedSubscription:
        record = WebhookSubscription(url=url, events=_events(events), secret=secret,
                                     description=description, active=active,
                                     created_by_key_id=actor.key_id, created_at=now,
                                     updated_at=now)
        uow.session.add(record)
        return CreatedSubscription(record=record, secret=secret)

    return uow.run(work)


def list_subscriptions(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                       active: bool | None = None) -> Page[WebhookSubscription]:
    query = policy.visible(actor, select(WebhookSubscription)).order_by(
        WebhookSubscription.created_at, WebhookSubscription.id)
    if active is not None:
        query = query.where(WebhookSubscription.active.is_(active))
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)


def get_subscription(uow: UnitOfWork, actor: Actor,
                     subscription_id: uuid.UUID) -> WebhookSubscription:
    with uow:
        return _subscription(uow, actor, subscription_id)


def update_subscription(uow: UnitOfWork, actor: Actor, subscription_id: uuid.UUID, *,
                        expected_version: int | None, changes: dict[str, Any], allow_private: bool,
                        now: datetime) -> WebhookSubscription:
    """Change the URL, events, description or ``active`` (enabling clears why it was
    disabled; deliveries cancelled meanwhile can be redelivered)."""
    changes = dict(changes)
    if "url" in changes:
        check_target(changes["url"], allow_private=allow_private)
    if "events" in changes:
        changes["events"] = _events(changes["events"])

    def work() -> WebhookSubscription:
        record = _subscription(uow, actor, subscription_id, lock=True)
        if changes.get("active") is True:
            changes.update(disabled_reason=None, disabled_at=None)
        elif changes.get("active") is False and record.active:
            changes.update(disabled_reason="disabled_by_user", disabled_at=now)
        apply_changes(record, changes, expected_version=expected_version)
        return record

    return uow.run(work)


def rotate_secret(uow: UnitOfWork, actor: Actor, subscription_id: uuid.UUID, *,
                  overlap: timedelta, now: datetime) -> CreatedSubscription:
    """A new signing secret (shown once). Deliveries are signed with the new and the old one
    until ``now + overlap``, then with the new one only."""
    secret = new_secret()

    def work() -> CreatedSubscription:
        record = _subscription(uow, actor, subscription_id, lock=True)
        apply_changes(record, {"previous_secret": record.secret,
                               "previous_secret_expires_at": now + overlap,
                               "secret": secret, "updated_at": now}, expected_version=None)
        return CreatedSubscription(record=record, secret=secret)

    return uow.run(work)


def delete_subscription(uow: UnitOfWork, actor: Actor, subscription_id: uuid.UUID) -> None:
    """Remove the subscription with its delivery log."""

    def work() -> None:
        record = _subscription(uow, actor, subscription_id, lock=True)
        uow.session.delete(record)

    uow.run(work)


# The delivery log and redelivery ----------------------------------------------------------


def list_deliveries(uow: UnitOfWork, actor: Actor, subscription_id: uuid.UUID, *, page: int,
                    page_size: int, status: list[DeliveryStatus] | None = None,
                    event_type: str | None = None) -> Page[WebhookDelivery]:
    with uow:
        _subscription(uow, actor, subscription_id)
        query = (select(WebhookDelivery)
                 .where(WebhookDelivery.subscription_id == subscription_id)
                 .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id))
        if status:
            query = query.where(WebhookDelivery.status.in_(status))
        if event_type:
            query = query.where(WebhookDelivery.event_type == event_type)
        return paginate(uow.session, query, page=page, page_size=page_size)


@dataclass(frozen=True)
class DeliveryRecord:
    delivery: WebhookDelivery
    attempt_log: list[WebhookAttempt]

    def __getattr__(self, name: str) -> Any:  # the schema reads the delivery's fields
        return getattr(self.delivery, name)


def _delivery(uow: UnitOfWork, subscription_id: uuid.UUID,
              delivery_id: uuid.UUID) -> WebhookDelivery:
    delivery = uow.session.scalar(select(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.subscription_id == subscription_id))
    if delivery is None:
        raise NotFound("No delivery with this id for this subscription.",
                       code="webhook_delivery_not_found")
    return delivery


def get_delivery(uow: UnitOfWork, actor: Actor, subscription_id: uuid.UUID,
                 delivery_id: uuid.UUID) -> DeliveryRecord:
    with uow:
        _subscription(uow, actor, subscription_id)
        delivery = _delivery(uow, subscription_id, delivery_id)
        log = list(uow.session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery.id)
            .order_by(WebhookAttempt.id)))
        return DeliveryRecord(delivery, log)


def redeliver(uow: UnitOfWork, actor: Actor, subscription_id: uuid.UUID,
              delivery_id: uuid.UUID, *, now: datetime) -> WebhookDelivery:
    """Queue the same event (same id and body, a fresh signature) again, at once, as a new
    delivery with a fresh retry window. The original keeps its log."""

    def work() -> WebhookDelivery:
        subscription = _subscription(uow, actor, subscription_id)
        if not subscription.active:
            raise InvalidState("The subscription is disabled; enable it, then redeliver.",
                               code="webhook_inactive")
        original = _delivery(uow, subscription_id, delivery_id)
        again = WebhookDelivery(
            subscription_id=subscription.id, event_id=original.event_id,
            event_type=original.event_type, payload=original.payload,
            status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now,
            redelivery_of=original.id, created_at=now, updated_at=now)
        uow.session.add(again)
        return again

    return uow.run(work)


def cancel_open_deliveries(session: Session, subscription_id: uuid.UUID, reason: str,
                           now: datetime) -> None:
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription_id,
               WebhookDelivery.status.in_(OPEN_DELIVERY_STATUSES))
        .values(status=DeliveryStatus.CANCELLED, last_error=reason, claim_token=None,
                lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False))
