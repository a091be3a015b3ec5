"""Syncing iCalendar and CalDAV connections: claim due connections with a lease, read each
source with no transaction open, replace its busy intervals, record its freshness.

The scheduler (``service/scheduler.py``, job ``calendar-sync``) runs ``CalendarSync.run_once``
every ``CALENDAR_SYNC_POLL_SECONDS``:

1. Claim (one short transaction): active polled connections whose ``next_sync_at`` has come
   (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so several schedulers split them; SQLite: BEGIN
   IMMEDIATE) get this run's ``claim_token`` and ``next_sync_at`` moved to the end of a
   lease, so a connection whose syncer died is claimed again after it.
2. Read through the reader the scheduler hands in (``service/adapters/calendars.py``): an
   iCalendar address with a conditional GET (``If-None-Match`` / ``If-Modified-Since``: a
   304 keeps what is stored), a CalDAV calendar with an event query over the sync window.
3. Record (one transaction per connection, only while our claim holds): the busy
   intervals of the whole window replaced (``busy.py`` reads them; the visits this service
   wrote back, whose UID is a booking of the provider, are left out), ``status`` ok and
   ``last_synced_at``; or, on failure, ``status`` error and ``last_error`` (a machine code)
   with the intervals kept. The next sync is one interval later; after failures in a row,
   the interval doubles up to four times the interval (``failures``; a success resets it).
4. Freshness: connections not synced for ``CALENDAR_STALE_MULTIPLE`` times their interval are
   flagged (``stale_since``), logged at WARNING once and raise one ``calendar_stale`` alert
   (no patient: its provider and connection ids; ``GET /api/v1/alerts``), resolved when the
   connection syncs again; staff also list them at
   ``GET /api/v1/calendar-connections?stale=true``; slot answers name them meanwhile.

Log lines carry connection ids and reason codes, never an address, a credential or an
event's text.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select

from service.db import Database, utcnow
from service.domain.bookings.models import Booking
from service.domain.connections import busy, services
from service.domain.connections.models import CalendarConnection, ConnectionKind, SyncStatus
from service.domain.connections.secrets import Sealed, SecretBox, SecretsUnavailable
from service.messagebus import MessageBus
from service.uow import UnitOfWork

log = logging.getLogger(__name__)

MAX_BACKOFF = 4  # a failing source is retried at most every 4 intervals


class SourceError(Exception):
    """A source could not be read (``reason``: a machine code such as ``http_404``,
    ``timeout``, ``unauthorized``); never its address or its answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:64]


@dataclass(frozen=True)
class Fetched:
    documents: list[bytes] | None  # None: not modified since the last sync
    etag: str | None = None
    last_modified: str | None = None


class CalendarReader(Protocol):
    def read(self, kind: ConnectionKind, secret: Sealed, *, start: datetime, end: datetime,
             etag: str | None, last_modified: str | None) -> Fetched: ...


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    token: uuid.UUID
    kind: ConnectionKind
    provider_id: uuid.UUID
    secret: str | None
    etag: str | None
    last_modified: str | None
    include_all_day: bool


@dataclass(frozen=True)
class SyncSettings:
    default_zone: str = "America/Phoenix"
    window_days: int = 120
    stale_multiple: float = 3.0
    poll_seconds: float = 60.0
    lease_seconds: float = 120.0
    batch_size: int = 20


class CalendarSync:
    name = "calendar-sync"
    title = "connected calendars: read busy time, flag stale sources"

    def __init__(self, database: Database, reader: CalendarReader, box: SecretBox,
                 settings: SyncSettings, *, bus: MessageBus,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.database = database
        self.reader = reader
        self.box = box
        self.settings = settings
        self.clock = clock
        self.bus = bus  # runs the consequences of staleness (the alert) in its transaction
        self.poll_seconds = settings.poll_seconds

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self.database.write_sessions, dialect=self.database.dialect,
                          bus=self.bus)

    def run_once(self, now: datetime | None = None) -> Counter[str]:
        counts: Counter[str] = Counter()
        while True:
            at = now or self.clock()
            claimed = self.claim(at)
            if not claimed:
                break
            for item in claimed:
                counts[self.sync(item, at)] += 1
        at = now or self.clock()
        for connection_id in services.flag_stale(self._uow(), now=at,
                                                 multiple=self.settings.stale_multiple):
            counts["stale"] += 1
            log.warning("connected calendar %s is stale: not synced for %g times its "
                        "interval", connection_id, self.settings.stale_multiple)
        if any(counts.values()):
            log.info("calendar sync: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
        return counts

    def claim(self, at: datetime) -> list[Claimed]:
        token = uuid.uuid4()
        uow = self._uow()

        def work() -> list[Claimed]:
            rows = uow.session.scalars(
                select(CalendarConnection)
                .where(CalendarConnection.active.is_(True),
                       CalendarConnection.kind.in_([ConnectionKind.ICS, ConnectionKind.CALDAV]),
                       CalendarConnection.next_sync_at <= at)
                .order_by(CalendarConnection.next_sync_at, CalendarConnection.id)
                .limit(self.settings.batch_size)
                .with_for_update(skip_locked=True)).all()
            claimed = []
            for row in rows:
                row.claim_token = token
                row.next_sync_at = at + timedelta(seconds=self.settings.lease_seconds)
                row.last_attempt_at = at
                claimed.append(Claimed(
                    id=row.id, token=token, kind=row.kind, provider_id=row.provider_id,
                    secret=row.secret, etag=row.etag, last_modified=row.last_modified,
                    include_all_day=row.include_all_day))
            return claimed

        return uow.run(work)

    def sync(self, item: Claimed, at: datetime) -> str:
        """Read one claimed source and record the outcome; returns the outcome's name."""
        start = at - timedelta(days=1)
        end = at + timedelta(days=self.settings.window_days)
        try:
            if item.secret is None:
                raise SourceError("no_address")
            secret = self.box.open(item.secret)
            fetched = self.reader.read(item.kind, secret, start=start, end=end,
                                       etag=item.etag, last_modified=item.last_modified)
            found = None
            if fetched.documents is not None:
                found = busy.busy_intervals(
                    fetched.documents, start=start, end=end,
                    default_zone=self.settings.default_zone,
                    include_all_day=item.include_all_day)
        except SecretsUnavailable:
            return self._failed(item, at, "secret_key_unavailable")
        except (SourceError, busy.UnreadableCalendar) as error:
            return self._failed(item, at, error.reason)
        except Exception as error:  # noqa: BLE001 - one odd document must not stop the others
            return self._failed(item, at, f"unexpected_{type(error).__name__}")
        return self._synced(item, at, fetched, found)

    def _mine(self, uow: UnitOfWork, item: Claimed) -> CalendarConnection | None:
        return uow.session.scalar(select(CalendarConnection).where(
            CalendarConnection.id == item.id, CalendarConnection.claim_token == item.token)
            .with_for_update())

    def _synced(self, item: Claimed, at: datetime, fetched: Fetched,
                found: list[busy.Busy] | None) -> str:
        uow = self._uow()

        def work() -> str:
            record = self._mine(uow, item)
            if record is None:
                return "lost"  # removed meanwhile, or claimed again after our lease
            if found is not None:
                ours = _own_visits(uow, item.provider_id, {b.uid for b in found})
                services.replace_busy(uow.session, record, busy.merge(
                    b for b in found if b.uid not in ours))
                record.etag, record.last_modified = fetched.etag, fetched.last_modified
            services.mark_synced(uow, record, at)
            record.claim_token = None
            record.next_sync_at = at + timedelta(seconds=record.interval_seconds)
            return "synced" if found is not None else "not_modified"

        return uow.run(work)

    def _failed(self, item: Claimed, at: datetime, reason: str) -> str:
        log.warning("connected calendar %s: sync failed (%s)", item.id, reason)
        uow = self._uow()

        def work() -> str:
            record = self._mine(uow, item)
            if record is None:
                return "lost"
            record.status = SyncStatus.ERROR
            record.last_error = reason
            record.claim_token = None
            record.failures += 1
            record.next_sync_at = at + retry_delay(record.interval_seconds, record.failures)
            record.updated_at = at
            return "failed"

        return uow.run(work)


def retry_delay(interval_seconds: int, failures: int) -> timedelta:
    """After ``failures`` failed syncs in a row: the interval, then twice it, then four
    times it at most (a success starts over)."""
    doublings = min(max(failures - 1, 0), 8)
    return timedelta(seconds=interval_seconds * min(2 ** doublings, MAX_BACKOFF))


def _own_visits(uow: UnitOfWork, provider_id: uuid.UUID, uids: set[str]) -> set[str]:
    """The UIDs that are this provider's bookings: visits written back, not outside time."""
    ids = []
    for uid in uids:
        try:
            ids.append(uuid.UUID(uid))
        except ValueError:
            continue
    if not ids:
        return set()
    return {str(booking_id) for booking_id in uow.session.scalars(
        select(Booking.id).where(Booking.id.in_(ids), Booking.provider_id == provider_id))}
