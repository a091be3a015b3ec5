"""A booking created in this transaction without an ORM instance (``services.create_booking``),
kept on the unit of work (``uow.memo``) for the handlers of its ``BookingCreated``.

``POST /bookings`` writes the new booking with one Core INSERT and loads its parties as plain
rows (no identity map, no instance state: about a ninth of the request's instructions went
there, issue 14). The
handlers that used to find the booking, its service type and its patient in the session's
identity map (reminders, the connected calendars, the webhooks) ask ``find`` first: it
answers the same values, read nowhere (no statement). A booking written through the ORM
(a treatment series, a waitlist fill) is not here: they look in the session as before.
The memo lives as long as the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

_FRESH = "bookings.fresh"


@dataclass(frozen=True)
class Fresh:
    """The new booking (its columns as attributes), its service type and its patient (plain
    rows with the models' attribute names)."""

    booking: Any
    service_type: Any
    patient: Any


def remember(memo: MutableMapping[object, Any], fresh: Fresh) -> None:
    memo.setdefault(_FRESH, {})[fresh.booking.id] = fresh


def find(memo: MutableMapping[object, Any], booking_id: uuid.UUID) -> Fresh | None:
    """The booking created in this transaction without an ORM instance, if it is one."""
    kept = memo.get(_FRESH)
    return None if kept is None else kept.get(booking_id)
