"""Slot search: which start times can be booked for a service type.

Loads, in a handful of queries, everything a decision needs (working hours, overrides, time
off, licenses, existing bookings including pending ones, chairs), then hands plain interval
lists to the pure engine in ``slots.py``. Booking uses the very same ``Schedule`` to re-check
a chosen start, so a slot offered here is exactly a start the booking accepts.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time as clock
import uuid
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import repeat
from operator import add, attrgetter, floordiv, itemgetter, mod, mul
from typing import Protocol, TypeVar

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select

from service.domain.access.actor import Actor, Role
from service.domain.availability import cache, facts, versions
from service.domain.availability import slots as engine
from service.domain.availability.policy import policy
from service.domain.clinic.models import Location, LocationKind, ServiceType
from service.domain.connections import blocking as connected
from service.domain.errors import Conflict, InvalidInput, NotFound
from service.domain.patients.models import Patient
from service.domain.patients.services import find_patient
from service.domain.providers.licensing import Credential, Modality, covered_days
from service.domain.providers.models import Provider
from service.domain.time import in_zone, local_to_utc, to_utc
from service.uow import UnitOfWork

MAX_RANGE = timedelta(days=62)
MAX_BUFFER = timedelta(hours=12)
HOLDING = facts.HOLDING
R = TypeVar("R")


def rules_of(service_type: ServiceType) -> engine.SlotRules:
    return _rules(service_type.duration_minutes, service_type.buffer_before_minutes,
                  service_type.buffer_after_minutes, service_type.recovery_minutes,
                  service_type.slot_interval_minutes, service_type.needs_chair)


@functools.lru_cache(maxsize=256, typed=True)
def _rules(duration: int, before: int, after: int, recovery: int, step: int,
           needs_chair: bool) -> engine.SlotRules:
    """The rules of these minutes, made once (they are frozen: every booking and search
    of a service type shares them)."""
    return engine.SlotRules(
        duration=timedelta(minutes=duration), buffer_before=timedelta(minutes=before),
        buffer_after=timedelta(minutes=after), recovery=timedelta(minutes=recovery),
        step=timedelta(minutes=step), needs_chair=needs_chair)


def booking_window(service_type: ServiceType, now: datetime) -> tuple[datetime, datetime]:
    """Earliest and latest bookable start: minimum notice and horizon."""
    return (now + timedelta(minutes=service_type.min_notice_minutes),
            now + timedelta(days=service_type.horizon_days))


def location_offers(location: Location, service_type: ServiceType) -> bool:
    """Can this location host this service at all (kind, chairs, REMS certification)?"""
    if not location.active:
        return False
    if service_type.modality == Modality.TELEHEALTH:
        return location.kind == LocationKind.VIRTUAL
    if location.kind != LocationKind.CLINIC:
        return False
    if service_type.needs_chair and location.chairs < 1:
        return False
    return not (service_type.requires_rems and not location.rems_certified)


class Candidate(Protocol):
    """A provider as a search reads it: a plain row of ``candidates`` (a ``Provider``
    qualifies too)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def active(self) -> bool: ...

    @property
    def is_rems_prescriber(self) -> bool: ...


def provider_offers(provider: Candidate, service_type: ServiceType) -> bool:
    if not provider.active:
        return False
    return not (service_type.requires_rems and not provider.is_rems_prescriber)


@dataclass
class Schedule:
    """Everything the engine needs for some providers at some locations over a range."""

    service_type: ServiceType
    locations: dict[uuid.UUID, Location]
    providers: dict[uuid.UUID, Candidate]
    start: datetime
    end: datetime
    patient_state: str | None = None
    weekly: dict[tuple[uuid.UUID, uuid.UUID], list[engine.WeeklyHours]] = field(
        default_factory=lambda: defaultdict(list))
    overrides: dict[tuple[uuid.UUID, uuid.UUID], dict[date, list[tuple[time, time]]]] = field(
        default_factory=lambda: defaultdict(dict))
    time_off: dict[uuid.UUID, list[engine.Interval]] = field(
        default_factory=lambda: defaultdict(list))
    credentials: dict[uuid.UUID, list[Credential]] = field(
        default_factory=lambda: defaultdict(list))
    provider_busy: dict[uuid.UUID, list[engine.Interval]] = field(
        default_factory=lambda: defaultdict(list))
    patient_busy: list[engine.Interval] = field(default_factory=list)
    chairs_busy: dict[uuid.UUID, list[list[engine.Interval]]] = field(default_factory=dict)
    stale_sources: set[uuid.UUID] = field(default_factory=set)  # providers (connected calendars)
    # Memos, shared between providers and between the spans of a search: working windows per
    # weekly pattern, licensed days per set of credentials, windows per pair and per alike
    # providers (with their bounds in microseconds), and the ranges of starts that busy time
    # forbids: per provider, for the patient, per chair and (all chairs taken) per span.
    _patterns: dict[tuple, list[engine.Interval]] = field(default_factory=dict, init=False,
                                                          repr=False)
    _licensed: dict[tuple, list[engine.Interval]] = field(default_factory=dict, init=False,
                                                          repr=False)
    _windows: dict[tuple, Windows] = field(default_factory=dict, init=False, repr=False)
    _shared_windows: dict[tuple, Windows] = field(default_factory=dict, init=False, repr=False)
    _blocked: dict[uuid.UUID | None, engine.Blocked] = field(default_factory=dict, init=False,
                                                             repr=False)
    _chairs_blocked: dict[uuid.UUID, list[engine.Blocked]] = field(
        default_factory=dict, init=False, repr=False)
    _chairs_taken: dict[tuple, tuple[list[int], list[int]]] = field(
        default_factory=dict, init=False, repr=False)
    _local_days: dict[str, tuple[date, date]] = field(default_factory=dict, init=False,
                                                      repr=False)

    @functools.cached_property
    def rules(self) -> engine.SlotRules:
        return rules_of(self.service_type)

    @functools.cached_property
    def in_us(self) -> tuple[int, int, int, int, int]:
        """(duration, before, after, held, step) in microseconds: the provider's block reaches
        ``before`` before a start and ``after`` after it, the patient's and the chair's
        ``held`` after it."""
        rules, unit = self.rules, engine.MICROSECOND
        duration = rules.duration // unit
        return (duration, rules.buffer_before // unit, duration + rules.buffer_after // unit,
                duration + rules.recovery // unit, rules.step // unit)

    def local_days(self, location: Location) -> tuple[date, date]:
        found = self._local_days.get(location.timezone)
        if found is None:
            first = in_zone(self.start, location.timezone).date() - timedelta(days=1)
            last = in_zone(self.end, location.timezone).date() + timedelta(days=1)
            found = self._local_days[location.timezone] = first, last
        return found

    def windows(self, provider_id: uuid.UUID, location_id: uuid.UUID) -> list[engine.Interval]:
        """Working windows at the location, less time off, within licensed days.

        Providers often share one weekly pattern (and licenses): the working windows of a
        pattern and the licensed days of a set of credentials are built once per schedule
        and shared, then each provider's own time off is cut out."""
        return self._pair(provider_id, location_id)[0]

    def _pair(self, provider_id: uuid.UUID, location_id: uuid.UUID) -> Windows:
        pair = (provider_id, location_id)
        found = self._windows.get(pair)
        if found is None:
            found = self._windows[pair] = self._pair_windows(provider_id, location_id)
        return found

    def _pair_windows(self, provider_id: uuid.UUID, location_id: uuid.UUID) -> Windows:
        location = self.locations[location_id]
        weekly = self.weekly.get((provider_id, location_id), [])
        overrides = self.overrides.get((provider_id, location_id), {})
        if not weekly and not overrides:
            return [], [], []
        first, last = self.local_days(location)
        # Keys of plain values (hashed and compared in C), not of the dataclasses.
        pattern = (tuple(map(_HOURS, weekly)), tuple(sorted((day, tuple(hours))
                                                            for day, hours in overrides.items())),
                   location.timezone, first, last)
        working = self._patterns.get(pattern)
        if working is None:
            working = self._patterns[pattern] = _working_windows(pattern)
        time_off = self.time_off.get(provider_id, ())
        credentials = self.credentials.get(provider_id, ())
        shared = (pattern, tuple(map(_SPAN, time_off)), tuple(map(_CREDENTIAL, credentials)))
        found = self._shared_windows.get(shared)  # providers alike share their windows
        if found is not None:
            return found
        if time_off:
            working = engine.subtract(working, time_off)
        licence = (shared[2], location.timezone, first, last)
        licensed = self._licensed.get(licence)
        if licensed is None:
            licensed = self._licensed[licence] = _licensed_days(
                *licence, self.service_type.modality, self.patient_state)
        windows = engine.intersect(working, licensed)  # sorted and apart
        found = self._shared_windows[shared] = (windows, [engine.to_us(w.start) for w in windows],
                                                [engine.to_us(w.end) for w in windows])
        return found

    def licensed_on(self, provider_id: uuid.UUID, location: Location, start: datetime) -> bool:
        day = in_zone(start, location.timezone).date()
        return bool(covered_days(self.credentials.get(provider_id, []), first=day, last=day,
                                 modality=self.service_type.modality,
                                 patient_state=self.patient_state))

    def chairs(self, location_id: uuid.UUID) -> list[list[engine.Interval]] | None:
        return self.chairs_busy.get(location_id) if self.service_type.needs_chair else None

    def find(self, provider_id: uuid.UUID, location_id: uuid.UUID, *, earliest: datetime,
             latest: datetime) -> list[datetime]:
        return list(self.starts(provider_id, location_id, earliest=earliest, latest=latest))

    def starts(self, provider_id: uuid.UUID, location_id: uuid.UUID, *, earliest: datetime,
               latest: datetime) -> Iterator[datetime]:
        """The free starts one at a time, earliest first (computed as they are taken)."""
        step = self.in_us[4]
        for first, last in self.runs(provider_id, location_id,
                                     engine.to_us(to_utc(earliest)), engine.to_us(to_utc(latest))):
            yield from map(engine.from_us, range(first, last + 1, step))

    def runs(self, provider_id: uuid.UUID, location_id: uuid.UUID, earliest: int, latest: int
             ) -> Iterator[tuple[int, int]]:
        """The free starts in ``[earliest, latest]`` (integer microseconds), as runs of the
        slot grid (``engine.free_runs``)."""
        return self.pair_runs(self.pair(provider_id, location_id), earliest, latest)

    def pair(self, provider_id: uuid.UUID, location_id: uuid.UUID) -> Pair:
        """What the engine needs of one (provider, location), looked up once: the bounds of
        its windows, the provider's forbidden ranges, the location."""
        _, window_starts, window_ends = self._pair(provider_id, location_id)
        blocked = self._blocked.get(provider_id)
        if blocked is None:
            _, before, after, _, _ = self.in_us
            blocked = self._blocked[provider_id] = engine.Blocked(
                self.provider_busy.get(provider_id, ()), before, after)
        return window_starts, window_ends, blocked, location_id

    def pair_runs(self, pair: Pair, earliest: int, latest: int) -> Iterator[tuple[int, int]]:
        """``runs`` of a ``pair``. Only the windows near the bounds are handed to the engine
        (found by bisection), and the forbidden ranges are taken in from the busy time only
        as far as the bounds reach, so a day of a long range costs about a day."""
        window_starts, window_ends, blocked, location_id = pair
        first = bisect_right(window_ends, earliest)
        stop = bisect_right(window_starts, latest)
        if first >= stop:
            return NO_RUNS
        duration, _, _, _, step = self.in_us
        # Every start considered lies in [low, high]: within the bounds and some window.
        low = max(earliest, window_starts[first])
        high = min(latest, window_ends[stop - 1] - duration)
        if low > high:
            return NO_RUNS
        busy = self._busy_near(blocked, location_id, low, high, earliest, latest)
        if busy is None:
            return NO_RUNS  # no chairs: no slots
        lows, reach = busy
        return engine.free_runs(window_starts[first:stop], window_ends[first:stop], lows, reach,
                                duration=duration, step=step, low=low, high=high)

    def pair_keys(self, pair: Pair, earliest: int, latest: int, keys: list[int], rank: int,
                  count: int) -> None:
        """``pair_runs`` of a ``pair``, each free start ``s`` added to ``keys`` as
        ``s * count + rank`` (``engine.free_keys``): what ``first_starts`` asks of each pair
        in each span, without a generator or slices of the lists."""
        window_starts, window_ends, blocked, location_id = pair
        first = bisect_right(window_ends, earliest)
        stop = bisect_right(window_starts, latest)
        if first >= stop:
            return
        duration, _, _, _, step = self.in_us
        low = window_starts[first]
        if earliest > low:
            low = earliest
        high = window_ends[stop - 1] - duration
        if latest < high:
            high = latest
        if low > high:
            return
        if not self.patient_busy and not self.service_type.needs_chair:
            lows, reach = blocked.upto(high)  # the provider's ranges, as they are
        else:
            busy = self._busy_near(blocked, location_id, low, high, earliest, latest)
            if busy is None:
                return  # no chairs: no slots
            lows, reach = busy
        engine.free_keys(window_starts, window_ends, first, stop, lows, reach, keys,
                         duration=duration, step=step, low=low, high=high, rank=rank,
                         count=count)

    def _busy_near(self, blocked: engine.Blocked, location_id: uuid.UUID, low: int, high: int,
                   earliest: int, latest: int) -> tuple[list[int], list[int]] | None:
        """The forbidden ranges near [low, high] of a pair: the provider's, the patient's
        and, for a chair-bound service, the times every chair is taken (None: the location
        has no chairs, so no slots)."""
        parts = [blocked.near(low, high)]
        if self.patient_busy:
            patient = self._blocked.get(None)
            if patient is None:
                patient = self._blocked[None] = engine.Blocked(self.patient_busy, 0,
                                                               self.in_us[3])
            parts.append(patient.near(low, high))
        if self.service_type.needs_chair:
            if not self.chairs_busy.get(location_id):
                return None
            parts.append(self._all_chairs_taken(location_id, earliest, latest))
        return engine.union(parts)

    def _all_chairs_taken(self, location_id: uuid.UUID, low: int, high: int
                          ) -> tuple[list[int], list[int]]:
        """The ranges of starts in ``[low, high]`` at which every chair of the location is
        taken; the same for every provider searched there, so computed once per span."""
        key = (location_id, low, high)
        found = self._chairs_taken.get(key)
        if found is None:
            chairs = self._chairs_blocked.get(location_id)
            if chairs is None:
                held = self.in_us[3]
                chairs = self._chairs_blocked[location_id] = [
                    engine.Blocked(busy, 0, held) for busy in self.chairs_busy[location_id]]
            found = self._chairs_taken[key] = engine.all_chairs_taken(chairs, low, high)
        return found


# Working windows of a weekly pattern, and the licensed days of a set of credentials, are
# pure functions of plain values (the key): kept for the searches that follow in this
# process (the same days, zones and patterns recur), never changed by a reader. Nothing a
# booking or another worker changes is among them: a changed pattern or license is another
# key, so they are never stale.
@functools.lru_cache(maxsize=256)
def _working_windows(pattern: tuple) -> list[engine.Interval]:
    weekly, overrides, zone_name, first, last = pattern
    return engine.working_windows(
        [engine.WeeklyHours(*hours) for hours in weekly],
        [engine.DateOverride(day=day, hours=hours) for day, hours in overrides],
        [], zone_name, first, last)


@functools.lru_cache(maxsize=256)
def _licensed_days(credentials: tuple, zone_name: str, first: date, last: date,
                   modality: Modality | str, patient_state: str | None
                   ) -> list[engine.Interval]:
    return [engine.Interval(local_to_utc(d1, time(0), zone_name),
                            local_to_utc(d2 + timedelta(days=1), time(0), zone_name))
            for d1, d2 in covered_days([Credential(*c) for c in credentials], first=first,
                                       last=last, modality=modality,
                                       patient_state=patient_state)]


Windows = tuple[list[engine.Interval], list[int], list[int]]  # the windows, their bounds in us
Pair = tuple[list[int], list[int], engine.Blocked, uuid.UUID]  # see Schedule.pair
NO_RUNS: Iterator[tuple[int, int]] = iter(())
_HOURS = attrgetter("weekday", "start", "end")
_SPAN = attrgetter("start", "end")
_CREDENTIAL = attrgetter("jurisdiction", "kind", "status", "issued_on", "expires_on")


def load_schedule(session, *, service_type: ServiceType, providers: Sequence[Candidate],  # type: ignore[no-untyped-def]
                  locations: Sequence[Location], start: datetime, end: datetime,
                  patient_id: uuid.UUID | None = None, patient_state: str | None = None,
                  exclude_booking_id: uuid.UUID | None = None,
                  reach: timedelta | None = None) -> Schedule:
    """Load a Schedule in one statement (``facts.read``).

    Busy time and time off are read from ``reach`` before ``start`` to ``reach`` after
    ``end``: by default a day and the longest buffer (any service type), or, given
    ``service_reach(service_type)``, as far as this service's visits and blocks reach from
    a start in ``[start, end)``: the same free starts in that range, fewer rows."""
    if reach is None:
        reach = MAX_BUFFER + timedelta(days=1)
    schedule = Schedule(service_type=service_type, locations={loc.id: loc for loc in locations},
                        providers={p.id: p for p in providers}, start=start, end=end,
                        patient_state=patient_state)
    if not schedule.providers or not schedule.locations:
        return schedule
    # Licenses: as loaded with the providers (ORM objects), else (the plain rows of
    # ``candidates``, or not loaded) read with the rest.
    unloaded = []
    for provider in providers:
        if not isinstance(provider, Provider) or "licenses" in sa_inspect(provider).unloaded:
            unloaded.append(provider.id)
        else:
            schedule.credentials[provider.id] = [
                Credential(jurisdiction=c.jurisdiction, kind=c.kind.value,
                           status=c.status.value, issued_on=c.issued_on,
                           expires_on=c.expires_on)
                for c in provider.licenses
            ]
    found = facts.read(
        session.connection(), provider_ids=list(schedule.providers),
        location_ids=list(schedule.locations), license_ids=unloaded,
        chairs={loc.id: loc.chairs for loc in locations} if service_type.needs_chair else None,
        lo=start - reach, hi=end + reach,
        first_day=(start - timedelta(days=2)).date(), last_day=(end + timedelta(days=2)).date(),
        patient_id=patient_id, exclude_booking_id=exclude_booking_id)
    schedule.weekly.update(found.weekly)
    schedule.overrides.update(found.overrides)
    schedule.time_off.update(found.time_off)
    schedule.credentials.update(found.credentials)
    schedule.provider_busy.update(found.provider_busy)
    if found.patient_busy is not None:
        schedule.patient_busy = found.patient_busy
    schedule.chairs_busy = found.chairs_busy
    schedule.stale_sources = found.stale_sources
    return schedule


def service_reach(service_type: ServiceType) -> timedelta:
    """How far from a start busy time or time off can matter to it: a start ``s`` is free
    unless the provider's block ``[s - before, s + duration + after)``, the patient's or a
    chair's hold ``[s, s + duration + recovery)`` or the visit ``[s, s + duration]`` (which
    must lie in working hours less time off) meets something; all lie within ``reach`` of
    ``s`` on either side. A microsecond more keeps the strict comparisons of the loader on
    the safe side."""
    return timedelta(minutes=service_type.duration_minutes + service_type.buffer_before_minutes
                     + service_type.buffer_after_minutes + service_type.recovery_minutes,
                     microseconds=1)


# The search use case ----------------------------------------------------------------------


@dataclass(frozen=True)
class OfferedSlot:
    start: datetime
    end: datetime
    provider_id: uuid.UUID
    location_id: uuid.UUID


@dataclass(frozen=True)
class SlotSearch:
    service_type: ServiceType
    slots: list[OfferedSlot]
    truncated: bool
    timezone: str = "UTC"  # the zone the answer is shown in
    stale_sources: tuple[uuid.UUID, ...] = ()  # providers whose connected calendar is stale
    # Each offered location's own zone (a slot is shown in it unless a zone is asked for).
    zones: dict[uuid.UUID, str] = dataclasses.field(default_factory=dict)
    # The schedule versions the answer was computed under (read before its data), and for
    # how long it holds as the clock moves (answers.py caches it by request).
    versions: dict[str, int] = dataclasses.field(default_factory=dict)
    holds: Holds | None = None


@dataclass(frozen=True)
class Holds:
    """The same answer is given for any bookable window ``[e, l]`` with ``earliest <= e <=
    earliest_up_to`` and ``latest <= l <= latest_up_to`` (None: no bound): nothing starts
    between. The window moves with the clock (minimum notice, horizon)."""

    start: datetime  # the range searched
    end: datetime
    earliest: datetime
    latest: datetime
    earliest_up_to: datetime | None
    latest_up_to: datetime | None


_CANDIDATE_COLUMNS = (Provider.id, Provider.name, Provider.version, Provider.active,
                      Provider.is_rems_prescriber)  # the properties of ``Candidate``


def candidates(session, service_type: ServiceType, *,  # type: ignore[no-untyped-def]
               provider_ids: Iterable[uuid.UUID] | None = None,
               location_id: uuid.UUID | None = None
               ) -> tuple[list[Candidate], list[Location]]:
    """The providers (plain rows) and locations that could offer this service type."""
    query = select(Location).where(Location.active.is_(True))
    if location_id is not None:
        query = query.where(Location.id == location_id)
    locations = [loc for loc in session.scalars(query) if location_offers(loc, service_type)]
    # Plain rows, not ORM objects (what a search reads of a provider: half the CPU of
    # loading them); their licenses are read by ``load_schedule`` with the rest.
    query = select(*_CANDIDATE_COLUMNS).where(Provider.active.is_(True))
    if provider_ids:
        query = query.where(Provider.id.in_(list(provider_ids)))
    providers = [p for p in session.execute(query) if provider_offers(p, service_type)]
    return providers, locations


# The catalog rows a search considers, kept per process (issue 14). A computed search of
# the slots resource reads the ``catalog`` and ``all`` versions before any row
# (answers.py); its service type, and which providers and locations it considers (and their
# zones, chairs, versions), change only with those versions (versions.py). So the rows read
# under them are kept, per database, and given to the searches made later under the very
# same versions: three statements (and their ORM work) fewer. The rows were read after the
# versions, so never older than them; the records kept are copies in no session (nothing
# expires, refreshes or flushes them). Nothing here is state another worker must see: each
# reads its own, under the versions its request read.
_CATALOG_KEPT = 256
_catalog_rows: dict[tuple, object] = {}


def _catalog_key(session, catalog: Mapping[str, int] | None, *what: object  # type: ignore[no-untyped-def]
                 ) -> tuple | None:
    if catalog is None:
        return None
    return (session.get_bind().engine.url, catalog[versions.CATALOG], catalog[versions.ALL],
            *what)


def _keep_catalog_rows(key: tuple, rows: object) -> None:
    if len(_catalog_rows) >= _CATALOG_KEPT:
        _catalog_rows.clear()
    _catalog_rows[key] = rows


def _unattached(record: R) -> R:
    """A copy of a loaded record, in no session, with every column's value."""
    mapper = sa_inspect(record).mapper
    return mapper.class_(**{attr.key: getattr(record, attr.key)  # type: ignore[no-any-return]
                            for attr in mapper.column_attrs})


def _service_type(session, service_type_id: uuid.UUID,  # type: ignore[no-untyped-def]
                  catalog: Mapping[str, int] | None) -> ServiceType | None:
    key = _catalog_key(session, catalog, ServiceType, service_type_id)
    if key is None:
        return session.get(ServiceType, service_type_id)  # type: ignore[no-any-return]
    found = _catalog_rows.get(key)
    if found is None:
        loaded = session.get(ServiceType, service_type_id)
        if loaded is None:
            return None
        found = _unattached(loaded)
        _keep_catalog_rows(key, found)
    return found  # type: ignore[return-value]


@dataclass(frozen=True)
class Considered:
    """The providers and locations a search considers, in the order of their ids, and what
    a search derives from them alone (kept with them, ``_considered``)."""

    providers: list[Candidate]
    locations: list[Location]
    scopes: list[str]  # of the providers, and of the locations' chairs for a chair-bound service
    rows: str  # the providers' and locations' ids and versions, for the cache key
    pairs: list[tuple[uuid.UUID, uuid.UUID]]  # ``pairs_of``

    @classmethod
    def of(cls, service_type: ServiceType, providers: Iterable[Candidate],
           locations: Iterable[Location]) -> Considered:
        # Sorted as the ids compare, as integers (without a Python call per comparison).
        providers = sorted(providers, key=_id_order)
        locations = sorted(locations, key=_id_order)
        scopes = [versions.provider_scope(p.id) for p in providers]
        if service_type.needs_chair:
            scopes += [versions.chairs_scope(loc.id) for loc in locations]
        rows = json.dumps([[(str(p.id), p.version) for p in providers],
                           [(str(loc.id), loc.version) for loc in locations]],
                          separators=(",", ":"))
        return cls(providers=providers, locations=locations, scopes=scopes, rows=rows,
                   pairs=pairs_of(providers, locations))


def _considered(session, service_type: ServiceType, *,  # type: ignore[no-untyped-def]
                provider_ids: Sequence[uuid.UUID] | None, location_id: uuid.UUID | None,
                catalog: Mapping[str, int] | None) -> Considered:
    """``candidates``, kept under the catalog versions when they were read."""
    key = _catalog_key(session, catalog, Location, service_type.id,
                       tuple(provider_ids or ()), location_id)
    if key is None:
        return Considered.of(service_type, *candidates(
            session, service_type, provider_ids=provider_ids, location_id=location_id))
    found = _catalog_rows.get(key)
    if found is None:
        providers, locations = candidates(session, service_type, provider_ids=provider_ids,
                                          location_id=location_id)
        found = Considered.of(service_type, providers, map(_unattached, locations))
        _keep_catalog_rows(key, found)
    return found  # type: ignore[return-value]


def search(session, *, service_type: ServiceType, start: datetime, end: datetime, now: datetime,  # type: ignore[no-untyped-def]
           provider_ids: Sequence[uuid.UUID] | None = None,
           location_id: uuid.UUID | None = None, patient_id: uuid.UUID | None = None,
           patient_state: str | None = None, limit: int = 200,
           catalog: Mapping[str, int] | None = None) -> SlotSearch:
    """Free starts in [start, end), every rule applied, earliest first.

    ``catalog``: the ``catalog`` and ``all`` versions, read in this transaction before any
    catalog row (answers.py): the catalog rows read under them are kept and reused; and
    maybe, read in the same statement, the versions of the scopes the search depends on
    (those it finds there are not read again)."""
    if end <= start:
        raise InvalidInput("The end of the range must come after its start.",
                           code="invalid_time_range")
    if end - start > MAX_RANGE:
        raise InvalidInput(f"Search at most {MAX_RANGE.days} days at a time.",
                           code="range_too_long", max_days=MAX_RANGE.days)
    if not service_type.active:
        raise NotFound("No active service type with this id.", code="service_type_not_found")
    began = clock.perf_counter()
    considered = _considered(session, service_type, provider_ids=provider_ids,
                             location_id=location_id, catalog=catalog)
    providers, locations = considered.providers, considered.locations
    earliest, latest = booking_window(service_type, now)
    earliest = max(earliest, start)
    latest = min(latest, end - timedelta(microseconds=1))
    duration = timedelta(minutes=service_type.duration_minutes)

    read: dict[str, int] = {}

    def answer(starts: list[tuple[datetime, uuid.UUID, uuid.UUID]], truncated: bool,
               stale: Iterable[uuid.UUID] | None = None, *,
               latest_up_to: datetime | None = None) -> SlotSearch:
        # Connected calendars flagged stale (or not synced yet): the schedule read them when
        # it was loaded; a cached answer asks now (the flag is set by the scheduler's
        # freshness job and bumps the provider's version: answers.py relies on that).
        if stale is None:
            stale = connected.stale_providers(session.connection(), [p.id for p in providers])
        holds = Holds(start=start, end=end, earliest=earliest, latest=latest,
                      earliest_up_to=starts[0][0] if starts else None,
                      latest_up_to=None if truncated else (latest_up_to or latest))
        return SlotSearch(service_type=service_type, truncated=truncated,
                          stale_sources=tuple(sorted(stale, key=str)),
                          zones={loc.id: loc.timezone for loc in locations}, slots=list(map(
                              OfferedSlot, map(_FIRST, starts),
                              map(add, map(_FIRST, starts), repeat(duration)),
                              map(_SECOND, starts), map(_THIRD, starts))),
                          versions=read, holds=holds)

    if not providers or not locations or earliest > latest:
        # Nothing to compute; the answer still lists the stale sources of the providers.
        if providers:
            read.update(versions.read(session, [versions.provider_scope(p.id)
                                                for p in providers]))
        found = answer([], False)
        if earliest > latest:
            return found
        return dataclasses.replace(found, holds=dataclasses.replace(
            found.holds, latest_up_to=None))  # type: ignore[type-var]
    # The cached computation covers a little more than this request, so searches made in
    # the same few minutes share it: from the notice rounded down, to the horizon rounded up,
    # and a few more starts than the limit.
    bounds = (max(start, _floor(earliest)), min(end - timedelta(microseconds=1),
                                               _floor(latest) + CACHE_BUCKET))
    scopes = considered.scopes
    if patient_id is not None:
        scopes = [*scopes, versions.patient_scope(patient_id)]
    # Read before the schedule is loaded: an answer is never stored under versions older
    # than the data it was computed from. The caller may have read them already, with the
    # catalog's (answers.py: in its one statement, before any row).
    if catalog is not None and all(scope in catalog for scope in scopes):
        read.update({scope: catalog[scope] for scope in sorted({*scopes, versions.ALL})})
    else:
        read.update(versions.read(session, scopes))
    key = _cache_key(service_type, considered.rows, read,
                     start=start, end=end, bounds=bounds, patient_id=patient_id,
                     patient_state=patient_state, limit=limit + CACHE_SLACK)
    store = cache.store()
    cached = store.get(key)
    # The wide answer as keys (``span_keys``: start in microseconds * pairs + the pair's
    # rank), the starts' datetimes made only for the ones served.
    pairs = considered.pairs
    count = len(pairs)
    low, high = engine.to_us(earliest), engine.to_us(latest)
    if cached is not None:
        wide = _decode(cached)
        served = _serve(wide, low, high, limit, count)
        if served is not None:
            cache.REQUESTS.labels("hit").inc()
            cache.LATENCY.labels("hit").observe(clock.perf_counter() - began)
            return answer(_starts(served[0], pairs), served[1],
                          latest_up_to=_latest_up_to(wide, latest, bounds, count))
    cache.REQUESTS.labels("miss").inc()
    # Only the busy time the range's starts can meet (``service_reach``).
    schedule = load_schedule(session, service_type=service_type, providers=providers,
                             locations=locations, start=start, end=end, patient_id=patient_id,
                             patient_state=patient_state, reach=service_reach(service_type))
    wide = _first_keys(schedule, pairs, engine.to_us(bounds[0]), engine.to_us(bounds[1]),
                       limit + CACHE_SLACK)
    store.set(key, _encode(wide))
    served = _serve(wide, low, high, limit, count)
    latest_up_to = _latest_up_to(wide, latest, bounds, count)
    if served is None:  # the bounds' extra starts took the place of some this request needs
        served = _first_keys(schedule, pairs, low, high, limit)
        latest_up_to = latest
    cache.LATENCY.labels("miss").observe(clock.perf_counter() - began)
    return answer(_starts(served[0], pairs), served[1], stale=schedule.stale_sources,
                  latest_up_to=latest_up_to)


CACHE_BUCKET = timedelta(minutes=5)
CACHE_SLACK = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
Starts = list[tuple[datetime, uuid.UUID, uuid.UUID]]


Keys = tuple[list[int], bool]  # sorted keys (``span_keys``), and whether cut at a count


def _latest_up_to(wide: Keys, latest: datetime, bounds: tuple[datetime, datetime],
                  count: int) -> datetime:
    """How far ``latest`` may move with the answer unchanged (when it is not cut at the
    limit): to just before the next start the wide answer knows of, else to the end of its
    bounds when it was not cut, else nowhere."""
    keys, cut = wide
    following = bisect_right(keys, engine.to_us(latest) * count + count - 1)
    if following < len(keys):
        return engine.from_us(keys[following] // count) - _MICROSECOND
    return latest if cut else max(latest, bounds[1])


def _floor(instant: datetime) -> datetime:
    return instant - (instant - _EPOCH) % CACHE_BUCKET


def _cache_key(service_type: ServiceType, rows: str, scope_versions: dict[str, int], *,
               start: datetime, end: datetime, bounds: tuple[datetime, datetime],
               patient_id: uuid.UUID | None, patient_state: str | None, limit: int) -> str:
    """Everything the answer depends on: the query, the rows' own versions (providers,
    locations and the service type carry one: ``Considered.rows``) and the schedule
    versions."""
    parts = [str(service_type.id), service_type.version, rows,
             sorted(scope_versions.items()), start.isoformat(), end.isoformat(),
             bounds[0].isoformat(), bounds[1].isoformat(),
             str(patient_id), patient_state, limit]
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()
    return f"slots:v3:{digest}"  # v3: the keys


def _encode(found: Keys) -> bytes:
    """The keys as they are (the key of the cache names the providers and locations, so
    the pairs' ranks): one flat array of integers."""
    keys, truncated = found
    return json.dumps({"t": truncated, "k": keys}, separators=(",", ":")).encode()


def _decode(value: bytes) -> Keys:
    data = json.loads(value)
    return data["k"], data["t"]


def _starts(keys: list[int], pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> Starts:
    """The (start, provider id, location id) of each key."""
    count = len(pairs)
    chosen = list(map(pairs.__getitem__, map(mod, keys, repeat(count))))
    return list(zip(map(add, repeat(_EPOCH), map(mul, repeat(_MICROSECOND),
                                                 map(floordiv, keys, repeat(count)))),
                    map(_FIRST, chosen), map(_SECOND, chosen)))


def _serve(found: Keys, earliest: int, latest: int, limit: int, count: int) -> Keys | None:
    """This request's answer out of a wider one (the earliest starts in ``bounds``, cut at
    some count), or None when the wider answer cannot tell (it was cut before ``latest``
    and holds fewer than ``limit`` of this request's starts). ``earliest`` and ``latest``
    in microseconds; ``count`` pairs."""
    keys, cut = found
    mine = keys[bisect_left(keys, earliest * count):bisect_right(keys, latest * count + count - 1)]
    if len(mine) > limit:
        return mine[:limit], True
    if cut and (not keys or keys[-1] // count <= latest):
        return None
    return mine, False


def first_starts(schedule: Schedule, providers: Sequence[Candidate],
                 locations: Sequence[Location], *, earliest: datetime, latest: datetime,
                 wanted: int | None = None
                 ) -> Iterator[tuple[datetime, uuid.UUID, uuid.UUID]]:
    """Every free (start, provider id, location id), earliest first.

    Day by day: the range is cut into consecutive spans, the first a day long; within a span
    every (provider, location) pair gives its free starts (``Schedule.pair_keys``, integer
    microseconds) and they are put in order together. A caller that stops after ``limit``
    (a search) never computes the starts, nor the busy ranges, of the spans after it. Ties
    are ordered by provider id, then location id.

    Each next span is twice as long, or, told how many starts the caller will take
    (``wanted``, a hint: any number gives the same starts), as many whole days as the starts
    found so far per day say the rest needs: a search whose starts are sparse computes them
    in two or three spans, not one per doubling.

    A start is sorted as one integer, ``start * pairs + the pair's rank``: the runs of the
    slot grid become ranges of such keys (built in C), a span is one sort of integers, and
    its starts, provider and location ids are read off the keys by C-level maps."""
    pairs = pairs_of(providers, locations)
    count = len(pairs)
    if not count:
        return
    if count == 1:
        provider_ids, location_ids = [pairs[0][0]], [pairs[0][1]]
    else:
        provider_ids, location_ids = list(map(_FIRST, pairs)), list(map(_SECOND, pairs))
    for keys in span_keys(schedule, pairs, engine.to_us(earliest), engine.to_us(latest),
                          wanted=wanted):
        if count == 1:
            yield from zip(map(add, repeat(_EPOCH), map(mul, repeat(_MICROSECOND), keys)),
                           repeat(provider_ids[0]), repeat(location_ids[0]))
        else:
            ranks = list(map(mod, keys, repeat(count)))
            yield from zip(map(add, repeat(_EPOCH), map(
                mul, repeat(_MICROSECOND), map(floordiv, keys, repeat(count)))),
                map(provider_ids.__getitem__, ranks), map(location_ids.__getitem__, ranks))


def pairs_of(providers: Sequence[Candidate], locations: Sequence[Location]
             ) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Every (provider id, location id), in the order of the ids: a pair's rank in this
    list is the one in ``span_keys``' keys."""
    return sorted([(provider.id, location.id) for location in locations
                   for provider in providers], key=_pair_order)


def span_keys(schedule: Schedule, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]], low: int,
              high_end: int, *, wanted: int | None = None) -> Iterator[list[int]]:
    """``first_starts`` as keys (``start * len(pairs) + rank``, the start in integer
    microseconds), one sorted list per span: every free start in ``[low, high_end]``."""
    count = len(pairs)
    span = day = FIRST_SPAN // engine.MICROSECOND
    began, found = low, 0
    keys_of = schedule.pair_keys
    prepared = [schedule.pair(provider_id, location_id) for provider_id, location_id in pairs]
    while low <= high_end:
        high = min(high_end, low + span - 1)
        keys: list[int] = []
        for rank, pair in enumerate(prepared):
            keys_of(pair, low, high, keys, rank, count)
        if keys:
            keys.sort()
            yield keys
        found += len(keys)
        low = high + 1
        if wanted is not None and found:
            if found >= wanted:  # the caller has what it asked for (or asks for one more)
                span = day
            else:  # the days the rest needs at the rate found so far (and an eighth more:
                # one more span costs as much as a day), rounded up
                span = max(1, -(-(wanted - found) * (low - began) * 9 // (found * day * 8))) * day
        else:
            span *= 2


def _first_keys(schedule: Schedule, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]], low: int,
                high: int, taken: int) -> tuple[list[int], bool]:
    """The keys of the first ``taken`` free starts in ``[low, high]``, and whether there
    are more."""
    found: list[int] = []
    for keys in span_keys(schedule, pairs, low, high, wanted=taken + 1):
        found += keys
        if len(found) > taken:
            return found[:taken], True
    return found, False


_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_THIRD = itemgetter(2)


def _id_order(row: Candidate | Location) -> int:
    return row.id.int


def _pair_order(pair: tuple[uuid.UUID, uuid.UUID]) -> tuple[int, int]:
    return pair[0].int, pair[1].int  # the order of the ids, compared as integers


FIRST_SPAN = timedelta(days=1)


def find_open_slots(uow: UnitOfWork, actor: Actor, *, service_type_id: uuid.UUID,
                    start: date | datetime, end: date | datetime, now: datetime,
                    default_zone: str, zone_name: str | None = None,
                    provider_ids: Sequence[uuid.UUID] | None = None,
                    location_id: uuid.UUID | None = None, patient_id: uuid.UUID | None = None,
                    patient_state: str | None = None, limit: int = 200) -> SlotSearch:
    """The slot search use case.

    Dates (rather than times) are whole local days in the answer's zone: ``zone_name``, else
    the location's zone, else the clinic's. A patient searches for themselves: their own
    bookings count as busy, and their home state is the default telehealth location.
    """
    patient_id = policy.searching_for(actor, patient_id)
    with uow:
        return open_slots(uow, actor, service_type_id=service_type_id, start=start, end=end,
                          now=now, default_zone=default_zone, zone_name=zone_name,
                          provider_ids=provider_ids, location_id=location_id,
                          patient_id=patient_id, patient_state=patient_state, limit=limit)


def open_slots(uow: UnitOfWork, actor: Actor, *, service_type_id: uuid.UUID,
               start: date | datetime, end: date | datetime, now: datetime,
               default_zone: str, zone_name: str | None, provider_ids: Sequence[uuid.UUID] | None,
               location_id: uuid.UUID | None, patient_id: uuid.UUID | None,
               patient_state: str | None, limit: int,
               catalog: Mapping[str, int] | None = None) -> SlotSearch:
    """``find_open_slots`` inside its unit of work (``patient_id`` as the policy decided);
    ``catalog`` as ``search`` takes it."""
    service_type = _service_type(uow.session, service_type_id, catalog)
    if service_type is None:
        raise NotFound("No service type with this id.", code="service_type_not_found")
    if zone_name is None and location_id is not None:
        location = uow.session.get(Location, location_id)
        if location is None:
            raise NotFound("No location with this id.", code="location_not_found")
        zone_name = location.timezone
    zone_name = zone_name or default_zone
    if patient_id is not None:
        patient = find_patient(uow, actor, patient_id)
        patient_state = patient_state or patient.home_state
        check_clearance(actor, patient, needs_clearance=service_type.needs_clearance)
    found = search(uow.session, service_type=service_type,
                   start=_instant(start, zone_name), end=_instant(end, zone_name, end=True),
                   now=now, provider_ids=provider_ids, location_id=location_id,
                   patient_id=patient_id,
                   patient_state=patient_state, limit=limit, catalog=catalog)
    return dataclasses.replace(found, timezone=zone_name)


def check_clearance(actor: Actor, patient: Patient, *, needs_clearance: bool) -> None:
    """Self-service: a consultation first, treatments once a clinician cleared the patient
    (the booking would refuse it anyway)."""
    if actor.role is Role.PATIENT and needs_clearance and not patient.cleared_for_treatment:
        raise Conflict("Treatments can be booked after a clinician cleared you at a "
                       "consultation; book a consultation first.",
                       code="clearance_required", clearance="not_cleared")


def _instant(value: date | datetime, zone_name: str, *, end: bool = False) -> datetime:
    """A date is a whole local day: its start, or (for the end of a range) the next midnight."""
    if isinstance(value, datetime):
        return value
    return local_to_utc(value + timedelta(days=1) if end else value, time(0), zone_name)
