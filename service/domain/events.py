"""Domain events: what happened, recorded by a use case on its unit of work.

Each area declares the events it raises in its own ``events.py`` (``bookings``, ``series``,
``consultations``) as small frozen dataclasses named in the past tense. An area never calls
the areas that react to its changes: ``service/bootstrap.py`` says who handles what, and the
unit of work runs those handlers in the same transaction, right before it commits
(``service/messagebus.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class Event:
    """Something that happened to the clinic's data, at ``occurred_at`` (the use case's
    clock)."""

    occurred_at: datetime
