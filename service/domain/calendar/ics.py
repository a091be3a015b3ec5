"""Rendering an iCalendar feed (RFC 5545, RFC 7986) with the ``icalendar`` library (pure).

What a feed says about a visit, and nothing more: when (UTC), how long, in the clinic or by
video, and whether it is tentative, confirmed or cancelled. Never a patient's name, a
service's name or a note: a summary reads "Clinic visit (60 min)", so a calendar shared with
an assistant or shown on a locked phone reveals nothing clinical. Locations are checked with
the reminders' word list; a site name that fails it is shown as "Clinic".

The body is deterministic for the same data (DTSTAMP is the booking's last revision time,
the calendar UID is the feed token's id), so its hash is a strong ETag and an unchanged
feed answers 304.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from icalendar import Calendar, Event, vDuration

from service.domain.reminders.content import forbidden_words

STATUS_TENTATIVE = "TENTATIVE"
STATUS_CONFIRMED = "CONFIRMED"
STATUS_CANCELLED = "CANCELLED"
NEUTRAL_LOCATION = "Clinic"
VIDEO_LOCATION = "Video visit"


@dataclass(frozen=True)
class FeedEvent:
    """One booking as the feed shows it (plain values)."""

    uid: str
    start: datetime
    end: datetime
    created: datetime
    modified: datetime
    sequence: int
    status: str  # TENTATIVE, CONFIRMED or CANCELLED
    in_person: bool
    location: str | None = None  # the site's name and address (in person)

    @property
    def summary(self) -> str:
        minutes = int((self.end - self.start).total_seconds() // 60)
        return f"{'Clinic' if self.in_person else 'Video'} visit ({minutes} min)"


def neutral_location(text: str | None, *, in_person: bool) -> str:
    """The location line: the site for in-person visits (unless it names anything
    clinical), "Video visit" for telehealth."""
    if not in_person:
        return VIDEO_LOCATION
    if not text or forbidden_words(text):
        return NEUTRAL_LOCATION
    return text


def render(events: Iterable[FeedEvent], *, calendar_id: uuid.UUID, name: str, prodid: str,
           refresh: timedelta) -> bytes:
    """The VCALENDAR (METHOD:PUBLISH) with one VEVENT per booking, CRLF-ended and folded."""
    calendar = Calendar.new(prodid=prodid, method="PUBLISH", name=name, uid=str(calendar_id))
    calendar.add("CALSCALE", "GREGORIAN")
    # RFC 7986 wants VALUE=DURATION on REFRESH-INTERVAL; X-PUBLISHED-TTL for older clients.
    calendar.add("REFRESH-INTERVAL", vDuration(refresh), parameters={"VALUE": "DURATION"})
    calendar.add("X-PUBLISHED-TTL", vDuration(refresh))
    for item in events:
        event = Event.new(
            uid=item.uid, start=item.start, end=item.end, stamp=item.modified,
            created=item.created, last_modified=item.modified, sequence=item.sequence,
            status=item.status, summary=item.summary,  # type: ignore[arg-type]
            location=neutral_location(item.location, in_person=item.in_person))
        event.add("CLASS", "PRIVATE")
        event.add("TRANSP", "OPAQUE")
        calendar.add_component(event)
    return calendar.to_ical()
