"""The slot search's previous schedule loader (one query per kind of fact), kept as the
reference the one-statement loader (``facts.read`` via ``search.load_schedule``) is compared
with on random calendars (tests/api/test_placement_load.py)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, DateTime, and_, cast, extract, func, or_, select, type_coerce
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import aggregate_order_by

from service.domain.availability import slots as engine
from service.domain.availability.models import DateOverride, TimeOff, WeeklyHours
from service.domain.availability.search import HOLDING, MAX_BUFFER, Schedule
from service.domain.bookings.models import Booking
from service.domain.clinic.models import Location, ServiceType
from service.domain.connections import blocking as connected
from service.domain.connections.models import CalendarConnection, ExternalBusy
from service.domain.providers.licensing import Credential
from service.domain.providers.models import License, Provider
from service.domain.time import to_utc


def _epoch_us(column):  # type: ignore[no-untyped-def]
    return cast(extract("epoch", column) * 1_000_000, BigInteger)


def load_schedule(session, *, service_type: ServiceType, providers: Sequence[Provider],  # type: ignore[no-untyped-def]
                  locations: Sequence[Location], start: datetime, end: datetime,
                  patient_id: uuid.UUID | None = None, patient_state: str | None = None,
                  exclude_booking_id: uuid.UUID | None = None) -> Schedule:
    """Load a Schedule with one query per kind of fact."""
    schedule = Schedule(service_type=service_type, locations={loc.id: loc for loc in locations},
                        providers={p.id: p for p in providers}, start=start, end=end,
                        patient_state=patient_state)
    provider_ids = list(schedule.providers)
    location_ids = list(schedule.locations)
    if not provider_ids or not location_ids:
        return schedule
    lo, hi = start - MAX_BUFFER - timedelta(days=1), end + MAX_BUFFER + timedelta(days=1)

    # Plain column rows through the session's connection: no ORM identity map for what is
    # only read here, and (PostgreSQL) instants that already arrive as UTC.
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"

    def instant(column):  # type: ignore[no-untyped-def]
        return type_coerce(column, DateTime(timezone=True)) if postgres else column

    for provider_id, location_id, weekday, start_time, end_time in connection.execute(select(
            WeeklyHours.provider_id, WeeklyHours.location_id, WeeklyHours.weekday,
            WeeklyHours.start_time, WeeklyHours.end_time).where(
            WeeklyHours.provider_id.in_(provider_ids),
            WeeklyHours.location_id.in_(location_ids))).all():
        schedule.weekly[(provider_id, location_id)].append(
            engine.WeeklyHours(weekday=weekday, start=start_time, end=end_time))
    first_day, last_day = (start - timedelta(days=2)).date(), (end + timedelta(days=2)).date()
    for provider_id, location_id, day, start_time, end_time in connection.execute(select(
            DateOverride.provider_id, DateOverride.location_id, DateOverride.day,
            DateOverride.start_time, DateOverride.end_time).where(
            DateOverride.provider_id.in_(provider_ids),
            DateOverride.location_id.in_(location_ids),
            DateOverride.day >= first_day, DateOverride.day <= last_day)).all():
        hours = schedule.overrides[(provider_id, location_id)].setdefault(day, [])
        if start_time is not None and end_time is not None:
            hours.append((start_time, end_time))
    for provider_id, starts_at, ends_at in connection.execute(select(
            TimeOff.provider_id, instant(TimeOff.starts_at), instant(TimeOff.ends_at)).where(
            TimeOff.provider_id.in_(provider_ids), TimeOff.ends_at > lo,
            TimeOff.starts_at < hi)).all():
        schedule.time_off[provider_id].append(engine.Interval(starts_at, ends_at))
    # Connected calendars: their busy time blocks the provider like another booking (added to
    # the bookings' busy time below).
    external = busy_between(connection, provider_ids, lo, hi)
    schedule.stale_sources = external.stale_providers
    # Licenses: as loaded with the providers, else (``candidates`` leaves them unloaded) as
    # plain rows in one query, in the relationship's order.
    unloaded = [p.id for p in providers if "licenses" in sa_inspect(p).unloaded]
    for provider in providers:
        if provider.id not in unloaded:
            schedule.credentials[provider.id] = [
                Credential(jurisdiction=c.jurisdiction, kind=c.kind.value,
                           status=c.status.value, issued_on=c.issued_on,
                           expires_on=c.expires_on)
                for c in provider.licenses
            ]
    if unloaded:
        for provider_id, jurisdiction, kind, status, issued_on, expires_on in session.execute(
                select(License.provider_id, License.jurisdiction, License.kind, License.status,
                       License.issued_on, License.expires_on).where(
                    License.provider_id.in_(unloaded)).order_by(License.expires_on)).all():
            schedule.credentials[provider_id].append(Credential(
                jurisdiction=jurisdiction, kind=kind.value, status=status.value,
                issued_on=issued_on, expires_on=expires_on))
        for provider_id in unloaded:
            schedule.credentials.setdefault(provider_id, [])

    holding = Booking.status.in_(HOLDING)
    not_excluded = Booking.id != exclude_booking_id if exclude_booking_id else True
    # The provider's bookings and (a patient's search or booking) the patient's own, in one
    # statement; each filter is served by its index (ix_bookings_provider_block,
    # ix_bookings_patient_hold_ends), so past bookings are never read.
    of_providers = and_(Booking.provider_id.in_(provider_ids),
                        Booking.provider_ends_at > lo, Booking.provider_starts_at < hi)
    of_patient = and_(Booking.patient_id == patient_id, Booking.hold_ends_at > lo,
                      Booking.starts_at < hi) if patient_id is not None else None
    # Busy time is handed to the engine as sorted integer microseconds (``engine.Spans``):
    # PostgreSQL computes them (exactly: ``extract`` gives a numeric), SQLite's instants are
    # converted here; the datetimes are built only if some caller reads them.
    us = _epoch_us if postgres else instant
    to_us = int if postgres else engine.to_us
    starts: dict[uuid.UUID, list[int]] = defaultdict(list)
    ends: dict[uuid.UUID, list[int]] = defaultdict(list)
    if of_patient is None and postgres:  # one row per provider: its blocks as two arrays
        ordered = (Booking.provider_starts_at, Booking.provider_ends_at)
        for provider_id, provider_starts, provider_ends in connection.execute(select(
                Booking.provider_id,
                func.array_agg(aggregate_order_by(_epoch_us(ordered[0]), *ordered)),
                func.array_agg(aggregate_order_by(_epoch_us(ordered[1]), *ordered))).where(
                holding, not_excluded, of_providers).group_by(Booking.provider_id)).all():
            starts[provider_id], ends[provider_id] = provider_starts, provider_ends
        provider_pairs = None
    elif of_patient is None:  # the providers' blocks only: exactly what the filter selects
        for provider_id, block_start, block_end in connection.execute(select(
                Booking.provider_id, us(Booking.provider_starts_at),
                us(Booking.provider_ends_at)).where(
                holding, not_excluded, of_providers).order_by(
                Booking.provider_starts_at, Booking.provider_ends_at)).all():
            starts[provider_id].append(to_us(block_start))
            ends[provider_id].append(to_us(block_end))
        provider_pairs = None
    else:
        lo_us, hi_us = engine.to_us(lo), engine.to_us(hi)
        provider_pairs = defaultdict(list)
        patient_pairs = []
        for provider_id, of, block_start, block_end, starts_at, hold_end in connection.execute(
                select(Booking.provider_id, Booking.patient_id,
                       us(Booking.provider_starts_at), us(Booking.provider_ends_at),
                       us(Booking.starts_at), us(Booking.hold_ends_at)).where(
                    holding, not_excluded, or_(of_providers, of_patient))).all():
            block_start, block_end = to_us(block_start), to_us(block_end)
            if provider_id in schedule.providers and block_end > lo_us and block_start < hi_us:
                provider_pairs[provider_id].append((block_start, block_end))
            starts_at, hold_end = to_us(starts_at), to_us(hold_end)
            if of == patient_id and hold_end > lo_us and starts_at < hi_us:
                patient_pairs.append((starts_at, hold_end))
        schedule.patient_busy = engine.Spans.of_pairs(patient_pairs)
    for provider_id, intervals in external.intervals.items():
        if not intervals:
            continue
        if provider_pairs is None:
            pairs = list(zip(starts.pop(provider_id, ()), ends.pop(provider_id, ())))
        else:
            pairs = provider_pairs.setdefault(provider_id, [])
        pairs += ((engine.to_us(to_utc(s)), engine.to_us(to_utc(e))) for s, e in intervals)
        if provider_pairs is None:
            schedule.provider_busy[provider_id] = engine.Spans.of_pairs(pairs)
    if provider_pairs is None:
        for provider_id, provider_starts in starts.items():
            schedule.provider_busy[provider_id] = engine.Spans(provider_starts,
                                                               ends[provider_id])
    else:
        for provider_id, pairs in provider_pairs.items():
            schedule.provider_busy[provider_id] = engine.Spans.of_pairs(pairs)
    if service_type.needs_chair:
        chair_pairs: dict[uuid.UUID, list] = {
            location.id: [[] for _ in range(location.chairs)] for location in locations}
        of_chairs = (holding, not_excluded, Booking.location_id.in_(location_ids),
                     Booking.chair_number.is_not(None),
                     Booking.hold_ends_at > lo, Booking.starts_at < hi)
        if postgres:  # one row per chair: its holds as two arrays
            ordered = (Booking.starts_at, Booking.hold_ends_at)
            for location_id, chair, chair_starts, chair_ends in connection.execute(select(
                    Booking.location_id, Booking.chair_number,
                    func.array_agg(aggregate_order_by(_epoch_us(ordered[0]), *ordered)),
                    func.array_agg(aggregate_order_by(_epoch_us(ordered[1]), *ordered))).where(
                    *of_chairs).group_by(Booking.location_id, Booking.chair_number)).all():
                if 1 <= chair <= len(chair_pairs[location_id]):
                    chair_pairs[location_id][chair - 1] = engine.Spans(chair_starts, chair_ends)
        else:
            for location_id, chair, block_start, block_end in connection.execute(select(
                    Booking.location_id, Booking.chair_number, us(Booking.starts_at),
                    us(Booking.hold_ends_at)).where(*of_chairs)).all():
                chairs = chair_pairs[location_id]
                if 1 <= chair <= len(chairs):
                    chairs[chair - 1].append((to_us(block_start), to_us(block_end)))
        for location_id, chairs in chair_pairs.items():
            schedule.chairs_busy[location_id] = [
                chair if isinstance(chair, engine.Spans) else engine.Spans.of_pairs(chair)
                for chair in chairs]
    return schedule


@dataclass
class ExternalBusyTime:
    """External busy intervals per provider, and the providers with a stale source."""

    intervals: dict[uuid.UUID, list[tuple[datetime, datetime]]]
    stale_providers: set[uuid.UUID]


def busy_between(connection, provider_ids: Sequence[uuid.UUID], start: datetime,  # type: ignore[no-untyped-def]
                 end: datetime) -> ExternalBusyTime:
    """The providers' external busy time overlapping ``[start, end)`` (queries only, on the
    caller's connection), and which of them have a source flagged stale or never synced
    yet: an answer computed with it may offer time that is in fact taken."""
    found = ExternalBusyTime(intervals={}, stale_providers=set())
    if not provider_ids:
        return found
    starts, ends = ExternalBusy.starts_at, ExternalBusy.ends_at
    if connection.dialect.name == "postgresql":  # instants arrive as UTC: no per-row decoding
        starts, ends = (type_coerce(c, DateTime(timezone=True)) for c in (starts, ends))
    for provider_id, first, last in connection.execute(
            select(ExternalBusy.provider_id, starts, ends)
            .join(CalendarConnection, CalendarConnection.id == ExternalBusy.connection_id)
            .where(ExternalBusy.provider_id.in_(list(provider_ids)),
                   CalendarConnection.active.is_(True),
                   ExternalBusy.ends_at > start, ExternalBusy.starts_at < end)).all():
        found.intervals.setdefault(provider_id, []).append((first, last))
    found.stale_providers.update(connected.stale_providers(connection, provider_ids))
    return found
