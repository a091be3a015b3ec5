"""A slot search's schedule facts, read in ONE statement (issue 14).

``search.load_schedule`` needs, for some providers at some locations over a range: weekly
hours, date overrides, time off, licenses, connected calendars' busy time and staleness,
bookings (the providers', the patient's own, the chairs'). Each kind of fact is a branch of
one UNION ALL whose rows say which kind they are: one round trip, one statement the driver
prepares once (the id lists are single array parameters on PostgreSQL), instead of one per
kind.

On PostgreSQL busy time arrives already aggregated: one row per provider (bookings and
connected calendars together), one for the patient, one per chair, each a pair of arrays of
instants sorted by (start, end), read straight from their binary form as integer
microseconds since the Unix epoch (``_EpochMicroseconds``), which the engine takes as they
are (``engine.Spans``).
Weekly hours arrive as one row per (provider, location) too, a
day, a start and an end array. SQLite sends one row per block and per weekly hours,
converted and sorted here.

The filters are those of the loader this replaced (one query per kind); a test compares the
two on random calendars on both databases (tests/api/test_placement_load.py).
"""

from __future__ import annotations

import functools
import itertools
import struct
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from operator import lt
from typing import Any

import psycopg
from sqlalchemy import (
    ARRAY,
    Date,
    DateTime,
    Integer,
    Interval,
    String,
    Time,
    Uuid,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.types import NullType

from service.db import UTCDateTime
from service.domain.availability import slots as engine
from service.domain.availability.models import DateOverride, TimeOff, WeeklyHours
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.connections.models import CalendarConnection, ExternalBusy, SyncStatus
from service.domain.providers.licensing import Credential
from service.domain.providers.models import License

HOLDING = (BookingStatus.PENDING, BookingStatus.BOOKED, BookingStatus.CHECKED_IN,
           BookingStatus.FULFILLED, BookingStatus.NOSHOW)


def is_holding():  # type: ignore[no-untyped-def]
    """A booking holds its time (``HOLDING``), the statuses as literals of the statement's
    text, not bound values: PostgreSQL then compares each booking with a constant list. As
    parameters of a prepared statement's generic plan the list is an ARRAY[$8, ...] built
    again for every booking the filter checks (a month of bookings: about a third of the
    search statement's time), and an expanding list is rendered into the text again at
    every execution."""
    return Booking.status.in_([literal_column(f"'{status.value}'", String)
                               for status in HOLDING])

# The kinds of rows (the first column).
WEEKLY, OVERRIDE, TIME_OFF, STALE, LICENSE, PROVIDER_BUSY, PATIENT_BUSY, CHAIR = range(8)


WeeklyByPair = dict[tuple[uuid.UUID, uuid.UUID], list[engine.WeeklyHours]]


@dataclass
class Facts:
    """What the statement read, in the shapes ``search.Schedule`` holds."""

    weekly: dict[tuple[uuid.UUID, uuid.UUID], list[engine.WeeklyHours]] = field(
        default_factory=lambda: defaultdict(list))
    overrides: dict[tuple[uuid.UUID, uuid.UUID], dict[date, list[tuple[time, time]]]] = field(
        default_factory=lambda: defaultdict(dict))
    time_off: dict[uuid.UUID, list[engine.Interval]] = field(
        default_factory=lambda: defaultdict(list))
    credentials: dict[uuid.UUID, list[Credential]] = field(
        default_factory=lambda: defaultdict(list))
    provider_busy: dict[uuid.UUID, engine.Spans] = field(default_factory=dict)
    patient_busy: engine.Spans | None = None  # None: no patient asked
    chairs_busy: dict[uuid.UUID, list[engine.Spans]] = field(default_factory=dict)
    stale_sources: set[uuid.UUID] = field(default_factory=set)


def read(connection, *, provider_ids: Sequence[uuid.UUID],  # type: ignore[no-untyped-def]
         location_ids: Sequence[uuid.UUID], license_ids: Sequence[uuid.UUID],
         chairs: dict[uuid.UUID, int] | None, lo: datetime, hi: datetime,
         first_day: date, last_day: date, patient_id: uuid.UUID | None = None,
         exclude_booking_id: uuid.UUID | None = None) -> Facts:
    """The facts of ``provider_ids`` at ``location_ids``: hours (overrides from
    ``first_day`` to ``last_day``), time off, busy time (the providers', the patient's and,
    ``chairs`` given as {location id: number of chairs}, each chair's) overlapping
    ``[lo, hi)``, connected calendars' staleness, and the licenses of ``license_ids``."""
    postgres = connection.dialect.name == "postgresql"
    provider_ids, license_ids = list(provider_ids), list(license_ids)
    # The licenses of every provider (as ``candidates`` leaves them): the one id list, sent
    # once.
    licenses = (False if not license_ids
                else "provider_ids" if license_ids == provider_ids else "license_ids")
    statement = _statement(postgres, patient=patient_id is not None, chairs=chairs is not None,
                           licenses=licenses, exclude=exclude_booking_id is not None)
    parameters = {
        "provider_ids": provider_ids, "location_ids": list(location_ids),
        "license_ids": license_ids, "lo": lo, "hi": hi, "first_day": first_day,
        "last_day": last_day, "patient_id": patient_id,
        "exclude_booking_id": exclude_booking_id}
    if postgres:
        rows = _binary_rows(connection, statement, parameters)
    else:
        rows = connection.execute(statement, parameters).all()
    facts = Facts()
    if patient_id is not None:
        facts.patient_busy = engine.Spans([], [])
    if chairs is not None:
        facts.chairs_busy = {location_id: [engine.Spans([], []) for _ in range(count)]
                             for location_id, count in chairs.items()}
    (_fill_postgresql if postgres else _fill_sqlite)(facts, rows)
    for credentials in facts.credentials.values():
        credentials.sort(key=_EXPIRES)  # as ordered by the database (nulls cannot occur)
    for provider_id in license_ids:
        facts.credentials.setdefault(provider_id, [])
    return facts


# The binary form of a one-dimensional array: dimensions, a has-nulls flag, the element
# type, then the length and lower bound of the dimension; each element its length (4 bytes)
# and, for an instant, a big-endian int64 of microseconds since 2000-01-01 UTC.
_ARRAY_HEADER = struct.Struct(">iiIii")
_TIMESTAMPTZ_ARRAY_OID = 1185
# Added to each instant in the statement (an interval of seconds alone: no calendar or zone
# arithmetic), so that its binary form counts microseconds since 1970-01-01 UTC.
_POSTGRES_EPOCH_SHIFT = "INTERVAL '946684800 seconds'"


@functools.lru_cache(maxsize=512)
def _instants(count: int) -> struct.Struct:
    """The elements of an array of ``count`` instants: each length skipped, each value read."""
    return struct.Struct(">" + "4xq" * count)


class _EpochMicroseconds(psycopg.adapt.Loader):
    """(PostgreSQL) a ``timestamptz[]`` in binary format, its instants shifted by the
    statement (``_POSTGRES_EPOCH_SHIFT``), as a list of integer microseconds since the Unix
    epoch: unpacked in one C call per array. The server sends the instants as stored (it
    used to turn each into microseconds itself, through ``numeric``: about a third of the
    statement's time)."""

    format = psycopg.pq.Format.BINARY

    def load(self, data: Any) -> list[int]:
        if len(data) <= 12:  # no dimension: an empty array
            return []
        dimensions, has_nulls, _, count, _ = _ARRAY_HEADER.unpack_from(data)
        # Without nulls every element is 8 bytes long: the length checks them all.
        if dimensions != 1 or has_nulls or len(data) != _ARRAY_HEADER.size + 12 * count:
            raise ValueError("busy time arrays have one dimension and no nulls")
        return list(_instants(count).unpack_from(data, _ARRAY_HEADER.size))


class _BinaryCursor(psycopg.Cursor[Any]):
    """A psycopg cursor asking for results in binary format: ids, dates and instants
    decoded from their binary forms, not parsed from text (the busy time of 50 providers
    over 30 days: about 4 ms of CPU less per load), arrays of instants as integer
    microseconds (``_EpochMicroseconds``)."""

    def __init__(self, connection: psycopg.Connection[Any], *,
                 row_factory: Any = None) -> None:
        super().__init__(connection, row_factory=row_factory)
        self.format = psycopg.pq.Format.BINARY
        self.adapters.register_loader(_TIMESTAMPTZ_ARRAY_OID, _EpochMicroseconds)


def _binary_rows(connection, statement, parameters: dict[str, Any]  # type: ignore[no-untyped-def]
                 ) -> Sequence[Any]:
    """(PostgreSQL) the rows of ``statement`` executed as usual (same connection, events and
    transaction) by a cursor that receives them in binary format: the driver connection
    makes its cursors so only while this statement runs."""
    driver = connection.connection.driver_connection
    factory = driver.cursor_factory
    driver.cursor_factory = _BinaryCursor
    try:
        return connection.execute(statement, parameters).all()
    finally:
        driver.cursor_factory = factory


def _fill_common(facts: Facts, kind: int, row: Any) -> None:
    """The kinds both databases send one row each (weekly hours aside)."""
    if kind == OVERRIDE:
        day = facts.overrides[(row[1], row[2])].setdefault(row[6], [])
        if row[4] is not None and row[5] is not None:
            day.append((row[4], row[5]))
    elif kind == TIME_OFF:
        facts.time_off[row[1]].append(engine.Interval(row[11], row[12]))
    elif kind == STALE:
        facts.stale_sources.add(row[1])
    elif kind == LICENSE:
        facts.credentials[row[1]].append(Credential(
            jurisdiction=row[8], kind=row[9], status=row[10], issued_on=row[6],
            expires_on=row[7]))


def _add_weekly(weekly: WeeklyByPair, hours: dict[tuple[Any, ...], engine.WeeklyHours],
                row: Any) -> None:
    """A weekly-hours row, its (day, start, end) shared through ``hours``: providers share
    patterns, so one ``WeeklyHours`` per distinct hours (the working windows are memoised
    by pattern)."""
    found = hours.get(row[3:6])
    if found is None:
        found = hours[row[3:6]] = engine.WeeklyHours(row[3], row[4], row[5])
    weekly[row[1], row[2]].append(found)


def _fill_postgresql(facts: Facts, rows: Sequence[Any]) -> None:
    weekly: WeeklyByPair = facts.weekly
    patterns: dict[tuple[Any, ...], list[engine.WeeklyHours]] = {}
    for row in rows:
        kind = row[0]
        if kind == WEEKLY:
            # A pair's hours as arrays; pairs with the same arrays share their objects.
            pattern = (tuple(row[15]), tuple(row[16]), tuple(row[17]))
            found = patterns.get(pattern)
            if found is None:
                found = patterns[pattern] = list(map(engine.WeeklyHours, *pattern))
            weekly[row[1], row[2]] = list(found)
        elif kind == PROVIDER_BUSY:
            facts.provider_busy[row[1]] = _spans(row[13], row[14])
        elif kind == PATIENT_BUSY:
            facts.patient_busy = _spans(row[13], row[14])
        elif kind == CHAIR:
            chairs = facts.chairs_busy.get(row[1])
            if chairs is not None and 1 <= row[3] <= len(chairs):
                chairs[row[3] - 1] = _spans(row[13], row[14])
        else:
            _fill_common(facts, kind, row)


def _spans(starts: list[int], ends: list[int]) -> engine.Spans:
    """(PostgreSQL) a group's arrays as ``Spans``: taken as they are when the starts ascend
    strictly (then they are sorted by (start, end)), else sorted here. An aggregate without
    ``ORDER BY`` keeps the order of its sorted subquery in practice, which PostgreSQL does not
    promise: the check (two C-level passes) makes the order this function's, not the plan's."""
    if all(map(lt, starts, itertools.islice(starts, 1, None))):
        return engine.Spans(starts, ends)
    return engine.Spans.of_pairs(zip(starts, ends, strict=True))


def _fill_sqlite(facts: Facts, rows: Sequence[Any]) -> None:
    weekly: WeeklyByPair = facts.weekly
    hours: dict[tuple[Any, ...], engine.WeeklyHours] = {}
    to_us = engine.to_us
    provider: dict[uuid.UUID, list[tuple[int, int]]] = defaultdict(list)
    patient: list[tuple[int, int]] = []
    chairs: dict[tuple[uuid.UUID, int], list[tuple[int, int]]] = defaultdict(list)
    for row in rows:
        kind = row[0]
        if kind == WEEKLY:
            _add_weekly(weekly, hours, row)
        elif kind == PROVIDER_BUSY:
            provider[row[1]].append((to_us(row[11]), to_us(row[12])))
        elif kind == PATIENT_BUSY:
            patient.append((to_us(row[11]), to_us(row[12])))
        elif kind == CHAIR:
            chairs[(row[1], row[3])].append((to_us(row[11]), to_us(row[12])))
        else:
            _fill_common(facts, kind, row)
    for provider_id, pairs in provider.items():
        facts.provider_busy[provider_id] = engine.Spans.of_pairs(pairs)
    if facts.patient_busy is not None:
        facts.patient_busy = engine.Spans.of_pairs(patient)
    for (location_id, chair), pairs in chairs.items():
        found = facts.chairs_busy.get(location_id)
        if found is not None and 1 <= chair <= len(found):
            found[chair - 1] = engine.Spans.of_pairs(pairs)


def _expires(credential: Credential) -> date:
    return credential.expires_on


_EXPIRES: Callable[[Credential], date] = _expires


INSTANTS = ARRAY(DateTime(timezone=True))  # timestamptz[]: _EpochMicroseconds reads them


@functools.cache
def _statement(postgres: bool, *, patient: bool, chairs: bool,  # type: ignore[no-untyped-def]
               licenses: str | bool, exclude: bool):
    """The UNION ALL, built once per shape. Its columns: the kind, two ids, a number, two
    wall-clock times, two dates, three strings, two instants and (PostgreSQL) two arrays of
    instants (read as integer microseconds); NULL where a kind has none (the first branch's
    types decode every row). ``licenses``: the id list whose licenses are read (``False``:
    none)."""
    instant_type = DateTime(timezone=True) if postgres else UTCDateTime()
    lo, hi = bindparam("lo", type_=instant_type), bindparam("hi", type_=instant_type)

    def among(column, name: str):  # type: ignore[no-untyped-def]
        if postgres:  # one array parameter: the same text for any number of ids
            return column == any_(bindparam(name, type_=ARRAY(Uuid())))
        return column.in_(bindparam(name, expanding=True))

    def instant(column):  # type: ignore[no-untyped-def]
        # PostgreSQL: instants arrive as UTC, no per-row decoding.
        return type_coerce(column, instant_type)

    def row(kind: int, a=None, b=None, number=None, t1=None, t2=None, d1=None, d2=None,  # type: ignore[no-untyped-def]
            s1=None, s2=None, s3=None, at1=None, at2=None, us1=None, us2=None, days=None,
            starts=None, ends=None):
        def typed(value, type_):  # type: ignore[no-untyped-def]
            return cast(null(), type_) if value is None else value
        columns = [literal_column(str(kind), Integer).label("kind"), typed(a, Uuid()).label("a"),
                   typed(b, Uuid()).label("b"), typed(number, Integer()).label("number"),
                   typed(t1, Time()).label("t1"), typed(t2, Time()).label("t2"),
                   typed(d1, Date()).label("d1"), typed(d2, Date()).label("d2"),
                   typed(s1, String()).label("s1"), typed(s2, String()).label("s2"),
                   typed(s3, String()).label("s3"),
                   instant(typed(at1, instant_type)).label("at1"),
                   instant(typed(at2, instant_type)).label("at2")]
        if postgres:  # lists of integers as the driver gives them (no per-item processing)
            columns += [type_coerce(typed(us1, INSTANTS), NullType()).label("us1"),
                        type_coerce(typed(us2, INSTANTS), NullType()).label("us2"),
                        type_coerce(typed(days, ARRAY(Integer())), NullType()).label("days"),
                        type_coerce(typed(starts, ARRAY(Time())), NullType()).label("starts"),
                        type_coerce(typed(ends, ARRAY(Time())), NullType()).label("ends")]
        return columns

    def spans(start, end):  # type: ignore[no-untyped-def]
        """(PostgreSQL) the group's blocks as two arrays, in the order of the (sorted)
        subquery they are read from: no sort per group and aggregate (``_spans`` checks the
        order and sorts what is not)."""
        shift = literal_column(_POSTGRES_EPOCH_SHIFT, Interval())
        return dict(us1=func.array_agg(start + shift, type_=INSTANTS),
                    us2=func.array_agg(end + shift, type_=INSTANTS))

    holding = is_holding()
    not_excluded = Booking.id != bindparam("exclude_booking_id") if exclude else true()
    of_pairs = (among(WeeklyHours.provider_id, "provider_ids"),
                among(WeeklyHours.location_id, "location_ids"))
    if postgres:
        # A pair's weekly hours in one row, as three arrays (a day, a start and an end per
        # hours), in the order of a sorted subquery: pairs with the same hours send the
        # same arrays (their order only decides which pairs share a pattern's objects).
        hours = (select(WeeklyHours.provider_id, WeeklyHours.location_id, WeeklyHours.weekday,
                        WeeklyHours.start_time, WeeklyHours.end_time).where(*of_pairs)
                 .order_by(WeeklyHours.provider_id, WeeklyHours.location_id,
                           WeeklyHours.weekday, WeeklyHours.start_time, WeeklyHours.end_time)
                 .subquery())
        weekly = (select(*row(WEEKLY, hours.c.provider_id, hours.c.location_id,
                              days=func.array_agg(hours.c.weekday, type_=ARRAY(Integer())),
                              starts=func.array_agg(hours.c.start_time, type_=ARRAY(Time())),
                              ends=func.array_agg(hours.c.end_time, type_=ARRAY(Time()))))
                  .group_by(hours.c.provider_id, hours.c.location_id))
    else:
        weekly = select(*row(WEEKLY, WeeklyHours.provider_id, WeeklyHours.location_id,
                             WeeklyHours.weekday, WeeklyHours.start_time,
                             WeeklyHours.end_time)).where(*of_pairs)
    branches = [
        weekly,
        select(*row(OVERRIDE, DateOverride.provider_id, DateOverride.location_id,
                    t1=DateOverride.start_time, t2=DateOverride.end_time,
                    d1=DateOverride.day))
        .where(among(DateOverride.provider_id, "provider_ids"),
               among(DateOverride.location_id, "location_ids"),
               DateOverride.day >= bindparam("first_day", type_=Date()),
               DateOverride.day <= bindparam("last_day", type_=Date())),
        select(*row(TIME_OFF, TimeOff.provider_id, at1=TimeOff.starts_at,
                    at2=TimeOff.ends_at))
        .where(among(TimeOff.provider_id, "provider_ids"), TimeOff.ends_at > lo,
               TimeOff.starts_at < hi),
        select(*row(STALE, CalendarConnection.provider_id))
        .where(among(CalendarConnection.provider_id, "provider_ids"),
               CalendarConnection.active.is_(True),
               or_(CalendarConnection.stale_since.is_not(None),
                   CalendarConnection.status == SyncStatus.PENDING)),
    ]
    if licenses:
        branches.append(
            select(*row(LICENSE, License.provider_id, d1=License.issued_on,
                        d2=License.expires_on, s1=License.jurisdiction,
                        s2=type_coerce(License.kind, String()),
                        s3=type_coerce(License.status, String())))
            .where(among(License.provider_id, licenses)))
    # The providers' bookings (served by ix_bookings_provider_block: past bookings are never
    # read, and both bounds are checked in the index, so only the blocks overlapping the
    # range are fetched) and their connected calendars' busy time: both block the provider
    # alike.
    of_providers = (holding, not_excluded, among(Booking.provider_id, "provider_ids"),
                    Booking.provider_ends_at > lo, Booking.provider_starts_at < hi)
    of_calendars = (among(ExternalBusy.provider_id, "provider_ids"),
                    CalendarConnection.active.is_(True),
                    ExternalBusy.ends_at > lo, ExternalBusy.starts_at < hi)
    connected = CalendarConnection.id == ExternalBusy.connection_id
    # The patient's own (ix_bookings_patient_hold_ends) and the chairs' holds
    # (ix_bookings_location_hold_ends): the block from the start to the hold's end.
    of_patient = (Booking.patient_id == bindparam("patient_id", type_=Uuid()),
                  Booking.hold_ends_at > lo, Booking.starts_at < hi)
    of_chairs = (among(Booking.location_id, "location_ids"), Booking.chair_number.is_not(None),
                 Booking.hold_ends_at > lo, Booking.starts_at < hi)
    if postgres:
        # Each group's rows come from a subquery sorted by (group, start, end), so PostgreSQL
        # sorts once, not twice per group (15 has no presorted aggregates: an ``ORDER BY``
        # inside array_agg is a sort per group and aggregate).
        busy = union_all(
            select(Booking.provider_id.label("owner"), Booking.provider_starts_at.label("starts"),
                   Booking.provider_ends_at.label("ends")).where(*of_providers),
            select(ExternalBusy.provider_id, ExternalBusy.starts_at, ExternalBusy.ends_at)
            .join(CalendarConnection, connected).where(*of_calendars)).subquery()
        busy = select(busy).order_by(busy.c.owner, busy.c.starts, busy.c.ends).subquery()
        branches.append(select(*row(PROVIDER_BUSY, busy.c.owner,
                                    **spans(busy.c.starts, busy.c.ends)))
                        .group_by(busy.c.owner))
        if patient:
            own = (select(Booking.patient_id, Booking.starts_at, Booking.hold_ends_at)
                   .where(holding, not_excluded, *of_patient)
                   .order_by(Booking.starts_at, Booking.hold_ends_at).subquery())
            branches.append(select(*row(PATIENT_BUSY, own.c.patient_id,
                                        **spans(own.c.starts_at, own.c.hold_ends_at)))
                            .group_by(own.c.patient_id))
        if chairs:
            held = (select(Booking.location_id, Booking.chair_number, Booking.starts_at,
                           Booking.hold_ends_at)
                    .where(holding, not_excluded, *of_chairs)
                    .order_by(Booking.location_id, Booking.chair_number, Booking.starts_at,
                              Booking.hold_ends_at).subquery())
            branches.append(select(*row(CHAIR, held.c.location_id, number=held.c.chair_number,
                                        **spans(held.c.starts_at, held.c.hold_ends_at)))
                            .group_by(held.c.location_id, held.c.chair_number))
    else:
        branches += [
            select(*row(PROVIDER_BUSY, Booking.provider_id, at1=Booking.provider_starts_at,
                        at2=Booking.provider_ends_at)).where(*of_providers),
            select(*row(PROVIDER_BUSY, ExternalBusy.provider_id, at1=ExternalBusy.starts_at,
                        at2=ExternalBusy.ends_at))
            .join(CalendarConnection, connected).where(*of_calendars),
        ]
        if patient:
            branches.append(select(*row(PATIENT_BUSY, Booking.patient_id,
                                        at1=Booking.starts_at, at2=Booking.hold_ends_at))
                            .where(holding, not_excluded, *of_patient))
        if chairs:
            branches.append(select(*row(CHAIR, Booking.location_id,
                                        number=Booking.chair_number, at1=Booking.starts_at,
                                        at2=Booking.hold_ends_at))
                            .where(holding, not_excluded, *of_chairs))
    return union_all(*branches)
