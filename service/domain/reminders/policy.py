"""Who may see and act on reminders.

A booking's reminders are read by whoever may see the booking (the bookings policy: others
get "not found"); the outbox of every reminder and its retry are for clinic staff; the SMS
gateway's replies come in with an integration key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from service.domain.access.actor import Role
from service.domain.access.policy import EVERYONE, STAFF, Policy, Rule


class ReminderPolicy(Policy):
    name = "reminders"
    rules: ClassVar[Mapping[str, Rule]] = {
        "list_for_booking": Rule(EVERYONE),
        "list": Rule(STAFF),
        "retry": Rule(STAFF),
        "receive_sms": Rule((Role.INTEGRATION,)),
    }


policy = ReminderPolicy()
