"""The log channels (``REMINDER_CHANNEL=log``, ``WEBHOOK_CHANNEL=log``): a reminder or a
webhook delivery is written to the scheduler's log instead of being sent: ids and sizes only,
never the text, the address or the target URL."""

from __future__ import annotations

import logging

from service.domain.reminders.channels import Outgoing
from service.domain.webhooks.delivery import HttpPost

log = logging.getLogger(__name__)


class LogChannel:
    name = "log"

    def send(self, message: Outgoing) -> None:
        log.info("reminder %s delivered to the log (as %s, key %s, %d characters)",
                 message.reminder_id, message.channel, message.dedupe_key, len(message.text))

    def close(self) -> None:
        pass


class LogWebhookChannel:
    """Webhook deliveries accepted by the log (200), nothing leaves the machine."""

    name = "log"

    def send(self, message: HttpPost) -> int:
        log.info("webhook delivery %s (%s) delivered to the log (%d bytes)",
                 message.headers.get("X-Delivery-Id", "-"),
                 message.headers.get("X-Event-Type", "-"), len(message.body))
        return 200

    def close(self) -> None:
        pass
