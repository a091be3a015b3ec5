"""What the reminder outbox hands to a channel: one ``Outgoing`` message.

The channels themselves (email over SMTP, SMS through a Twilio-compatible HTTP gateway, or
the log, the local default ``REMINDER_CHANNEL=log``) are adapters in ``service.adapters``;
the scheduler chooses them and hands them to ``ReminderOutbox``.

Every message carries its dedupe key (``<booking>.<kind>.v<version>``): a channel sends it
as the SMTP ``Message-ID`` (and ``X-Reminder-Key``), or as the gateway request's
``Idempotency-Key`` header, so a message sent again after a crash can be recognized and
dropped downstream. A channel raises ``service.domain.outbox.DeliveryError`` with a machine
reason; it never puts an address, a phone number or message text in a log line or a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

EMAIL = "email"
SMS = "sms"


@dataclass(frozen=True)
class Outgoing:
    reminder_id: str
    channel: str  # "email" or "sms"
    to: str
    subject: str
    text: str
    dedupe_key: str
