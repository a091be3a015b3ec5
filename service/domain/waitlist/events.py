"""What happens on the waitlist (webhooks and the offer message react)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from service.domain.events import Event


@dataclass(frozen=True, kw_only=True)
class WaitlistOffered(Event):
    """A freed slot is held for a waitlisted patient (as the pending booking ``booking_id``)
    until ``expires_at``. ``freed_at``: when the slot freed up (the scheduler's lag is
    ``occurred_at - freed_at``)."""

    offer_id: uuid.UUID
    entry_id: uuid.UUID
    booking_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    expires_at: datetime
    freed_at: datetime


@dataclass(frozen=True, kw_only=True)
class WaitlistFilled(Event):
    """The patient accepted: the held booking is booked, the entry filled."""

    offer_id: uuid.UUID
    entry_id: uuid.UUID
    booking_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
