"""Write-back: a provider's visits written into their CalDAV calendars that allow it.

- ``enqueue_writes`` (message-bus handler of booking creation, confirmation, reschedule and
  cancellation, in the transaction of the change): one ``CalendarWrite`` row per
  (connection, booking), due now. A row already there is simply due again; so a visit has
  one row per calendar however often it changes.
- ``CalendarWriteOutbox`` (run by the one ``OutboxRunner``, lease + SKIP LOCKED): the
  sender reads the booking as it is at send time and PUTs it under the booking's id as UID
  (the feeds' UID), with the feeds' PHI-free summary ("Video visit (60 min)"), its status
  (a cancelled visit, or one moved to another provider, is written as STATUS:CANCELLED) and
  SEQUENCE from the booking's version. The version written is remembered: a row due again
  with nothing new to say is settled without a write. A sender that dies after the PUT
  writes the same UID again after the lease: the calendar holds one copy, never two.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from icalendar import Calendar, Event
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.domain import recipients
from service.domain.bookings import fresh
from service.domain.bookings.events import BookingChanged, BookingCreated
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.calendar import ics
from service.domain.clinic.models import Location, LocationKind
from service.domain.connections.models import (
    OPEN_WRITE_STATUSES,
    CalendarConnection,
    CalendarWrite,
    WriteStatus,
)
from service.domain.connections.secrets import Sealed, SecretBox, SecretsUnavailable
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
from service.uow import UnitOfWork

log = logging.getLogger(__name__)

TABLE = Table(model=CalendarWrite, open=OPEN_WRITE_STATUSES, sending=WriteStatus.SENDING,
              waiting=WriteStatus.PENDING)
PRODID = "-//Clinic scheduling//Connected calendars//EN"
WRITTEN_STATUSES = (BookingStatus.PENDING, BookingStatus.BOOKED, BookingStatus.CHECKED_IN)


# The handler ----------------------------------------------------------------------------------


def enqueue_writes(uow: UnitOfWork, event: BookingChanged) -> None:
    """Queue the visit for every write-back calendar of its provider (and again for any
    calendar it was written to before, so a move to another provider cancels that copy)."""
    # Written without an ORM instance (``POST /bookings``): kept on the unit of work.
    created = fresh.find(uow.memo, event.booking_id)
    booking = (uow.session.get(Booking, event.booking_id) if created is None
               else created.booking)
    if booking is None:
        return
    # Read with the webhook subscriptions, once per transaction (domain/recipients.py).
    targets = set(recipients.write_back_calendars(uow, booking.provider_id))
    # A booking just created was written to no calendar yet (one statement fewer a booking).
    existing = {} if isinstance(event, BookingCreated) else {
        row.connection_id: row for row in uow.session.scalars(
            select(CalendarWrite).where(CalendarWrite.booking_id == booking.id))}
    if not (targets or existing):
        return  # (no session asked for: ``POST /bookings`` may have none)
    session = uow.session
    for connection_id in targets | set(existing):
        row = existing.get(connection_id)
        if row is None:
            session.add(CalendarWrite(connection_id=connection_id, booking_id=booking.id,
                                      status=WriteStatus.PENDING, attempts=0,
                                      next_attempt_at=event.occurred_at,
                                      created_at=event.occurred_at,
                                      updated_at=event.occurred_at))
        else:  # due again (a send in flight no longer matches: it is sent again, newer)
            row.status = WriteStatus.PENDING
            row.attempts = 0
            row.next_attempt_at = event.occurred_at
            row.updated_at = event.occurred_at


def queue_future_visits(session: Session, connection: CalendarConnection, *,
                        now: datetime, limit: int = 2000) -> int:
    """A calendar just set to write-back: queue the provider's upcoming visits (not the
    cancelled ones), so it shows them all, not only those that change from now on."""
    upcoming = session.scalars(
        select(Booking.id).where(Booking.provider_id == connection.provider_id,
                                 Booking.starts_at >= now,
                                 Booking.status.in_(WRITTEN_STATUSES))
        .order_by(Booking.starts_at).limit(limit)).all()
    queued = set(session.scalars(select(CalendarWrite.booking_id).where(
        CalendarWrite.connection_id == connection.id)))
    for booking_id in upcoming:
        if booking_id not in queued:
            session.add(CalendarWrite(connection_id=connection.id, booking_id=booking_id,
                                      status=WriteStatus.PENDING, attempts=0,
                                      next_attempt_at=now, created_at=now, updated_at=now))
    return len(upcoming)


# What one write is ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CalDavPut:
    """What the CalDAV adapter writes: ``body`` (one VEVENT) under ``uid``."""

    secret: Sealed
    uid: str
    body: bytes


@dataclass(frozen=True)
class ClaimedWrite:
    id: uuid.UUID
    token: uuid.UUID
    attempt: int
    connection_id: uuid.UUID
    secret: str | None
    event: ics.FeedEvent
    version: int
    written_version: int | None


def visit_event(item: ics.FeedEvent) -> bytes:
    """One visit as a calendar object resource (no METHOD: RFC 4791 forbids it there)."""
    calendar = Calendar.new(prodid=PRODID, uid=item.uid)
    event = Event.new(
        uid=item.uid, start=item.start, end=item.end, stamp=item.modified,
        created=item.created, last_modified=item.modified, sequence=item.sequence,
        status=item.status, summary=item.summary,  # type: ignore[arg-type]
        location=ics.neutral_location(item.location, in_person=item.in_person))
    event.add("CLASS", "PRIVATE")
    event.add("TRANSP", "OPAQUE")
    calendar.add_component(event)
    return calendar.to_ical()


def _address(location: Location) -> str:
    parts = [location.name, location.address_line1,
             " ".join(p for p in (location.city, location.state) if p)]
    return ", ".join(p for p in parts if p)


class CalendarWriteOutbox:
    name = "calendar-writes"
    title = "connected calendars: visits written back"
    summary = "calendar writes"
    table = TABLE
    guarded = False

    def __init__(self, caldav: Adapter, box: SecretBox, *, poll_seconds: float = 10.0,
                 lease_seconds: float = 60.0, batch_size: int = 20,
                 send_timeout_seconds: float = 15.0, retry_base_seconds: float = 60.0,
                 max_attempts: int = 8) -> None:
        self.caldav = caldav
        self.box = box
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.batch_size = batch_size
        self.send_timeout_seconds = send_timeout_seconds
        self.retry_base_seconds = retry_base_seconds
        self.max_attempts = max_attempts

    def load(self, session: Session, due: list[Due], *, token: uuid.UUID, at: datetime,
             report: Report) -> list[ClaimedWrite]:
        rows = {write.id: (write, connection, booking, location)
                for write, connection, booking, location in session.execute(
                    select(CalendarWrite, CalendarConnection, Booking, Location)
                    .join(CalendarConnection,
                          CalendarConnection.id == CalendarWrite.connection_id)
                    .join(Booking, Booking.id == CalendarWrite.booking_id)
                    .join(Location, Location.id == Booking.location_id)
                    .where(CalendarWrite.id.in_([d.id for d in due]))).all()}
        off = [write_id for write_id, (_, connection, _, _) in rows.items()
               if not (connection.active and connection.write_back)]
        if off:
            session.execute(update(CalendarWrite).where(CalendarWrite.id.in_(off))
                            .values(status=WriteStatus.DONE, last_error="write_back_off",
                                    claim_token=None, lease_until=None, updated_at=at)
                            .execution_options(synchronize_session=False))
            report.add("skipped", len(off))
        claimed = []
        for d in due:
            if d.id not in rows or d.id in off:
                continue
            write, connection, booking, location = rows[d.id]
            cancelled = (booking.status is BookingStatus.CANCELLED
                         or booking.provider_id != connection.provider_id)
            claimed.append(ClaimedWrite(
                id=write.id, token=token, attempt=d.attempt, connection_id=connection.id,
                secret=connection.secret, version=booking.version,
                written_version=write.written_version,
                event=ics.FeedEvent(
                    uid=str(booking.id), start=booking.starts_at, end=booking.leaves_at,
                    created=booking.created_at, modified=booking.updated_at,
                    sequence=booking.version - 1,
                    status=ics.STATUS_CANCELLED if cancelled else (
                        ics.STATUS_TENTATIVE if booking.status is BookingStatus.PENDING
                        else ics.STATUS_CONFIRMED),
                    in_person=location.kind is LocationKind.CLINIC,
                    location=_address(location))))
        return claimed

    def guard(self, session: Session, items: list[ClaimedWrite]) -> None:
        return None

    def prepare(self, item: ClaimedWrite, guarded: None, *,
                at: datetime) -> Send | Done | None:
        if item.written_version == item.version:
            return Done("skipped", reason="unchanged")
        if item.event.status == ics.STATUS_CANCELLED and item.written_version is None:
            return Done("skipped", reason="never_written")  # nothing to cancel there
        refused = None
        secret = Sealed(url="")
        try:
            if item.secret is None:
                raise SecretsUnavailable("no secret")
            secret = self.box.open(item.secret)
        except SecretsUnavailable:
            refused = DeliveryError("secret_key_unavailable", permanent=False)
        return Send(CalDavPut(secret=secret, uid=item.event.uid, body=visit_event(item.event)),
                    adapter=self.caldav, circuit=item.connection_id, refused=refused)

    def record(self, item: ClaimedWrite, result: Result, *, row: Any,
               at: datetime) -> RowUpdate:
        if isinstance(result, Done):
            return RowUpdate(result.outcome, {"status": WriteStatus.DONE,
                                              "next_attempt_at": at, "updated_at": at})
        if isinstance(result, Postponed):
            return RowUpdate("released", {"status": WriteStatus.PENDING,
                                          "attempts": item.attempt - 1,
                                          "next_attempt_at": result.until})
        if result.accepted:
            return RowUpdate("written", {
                "status": WriteStatus.DONE, "written_version": item.version,
                "written_at": at, "last_error": None, "next_attempt_at": at,
                "updated_at": at})
        if result.permanent or item.attempt >= self.max_attempts or result.retry_at is None:
            log.warning("calendar write %s to connection %s failed (%s)", item.id,
                        item.connection_id, result.error)
            return RowUpdate("failed", {"status": WriteStatus.FAILED,
                                        "last_error": result.error, "next_attempt_at": at,
                                        "updated_at": at})
        return RowUpdate("retried", {"status": WriteStatus.PENDING, "last_error": result.error,
                                     "next_attempt_at": result.retry_at, "updated_at": at})
