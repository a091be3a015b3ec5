"""The log channel (``REMINDER_CHANNEL=log``): a reminder is written to the scheduler's log
instead of being sent: ids and sizes only, never the text or the address."""

from __future__ import annotations

import logging

from service.domain.reminders.channels import Outgoing

log = logging.getLogger(__name__)


class LogChannel:
    name = "log"

    def send(self, message: Outgoing) -> None:
        log.info("reminder %s delivered to the log (as %s, key %s, %d characters)",
                 message.reminder_id, message.channel, message.dedupe_key, len(message.text))

    def close(self) -> None:
        pass
