"""A booking reads its day in one statement (``placement.load_visit_schedule``): the very
``Schedule`` the slot search loads (``search.load_schedule``), on random calendars (issue 14:
a slot offered is exactly a start the booking accepts). And the search's own loader, one
statement for many providers and locations (``facts.read``), loads what the previous one
(a query per kind of fact, tests/api/previous_loader.py) loaded."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import event, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import lazyload

from service.domain.availability import facts, placement, search
from service.domain.availability import slots as engine
from service.domain.availability.models import DateOverride, TimeOff, WeeklyHours
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.clinic.models import Location, ServiceType
from service.domain.connections.models import (
    CalendarConnection,
    ConnectionKind,
    ExternalBusy,
    SyncStatus,
)
from service.domain.patients.models import Patient
from service.domain.providers.models import Provider
from tests.api import previous_loader
from tests.factories import NPIS, clinic_payload, patient_payload
from tests.scenario import build_clinic


def _normalized(schedule: search.Schedule) -> dict[str, object]:
    """The facts of a schedule, in an order that does not depend on the database's."""
    def intervals(found) -> list:  # type: ignore[no-untyped-def]
        return sorted((i.start, i.end) for i in found)

    return {
        "weekly": {k: sorted(v, key=repr) for k, v in schedule.weekly.items() if v},
        "overrides": {k: {d: sorted(h) for d, h in v.items()}
                      for k, v in schedule.overrides.items() if v},
        "time_off": {k: intervals(v) for k, v in schedule.time_off.items() if v},
        "credentials": {k: sorted(v, key=repr) for k, v in schedule.credentials.items()},
        "provider_busy": {k: intervals(v) for k, v in schedule.provider_busy.items() if v},
        "patient_busy": intervals(schedule.patient_busy),
        "chairs_busy": {k: [intervals(chair) for chair in v]
                        for k, v in schedule.chairs_busy.items()},
        "stale_sources": schedule.stale_sources,
        "range": (schedule.start, schedule.end, schedule.patient_state),
    }


def _random_calendar(session, rng: random.Random, providers: list[Provider],  # type: ignore[no-untyped-def]
                     locations: list[Location], patients: list[uuid.UUID],
                     service_types: list[ServiceType], first: datetime) -> None:
    for provider in providers:
        for location in locations:
            for weekday in rng.sample(range(7), rng.randint(0, 4)):
                start = rng.randint(6, 12)
                session.add(WeeklyHours(provider_id=provider.id, location_id=location.id,
                                        weekday=weekday, start_time=time(start),
                                        end_time=time(start + rng.randint(1, 8))))
            for offset in rng.sample(range(-3, 12), rng.randint(0, 4)):
                day = (first + timedelta(days=offset)).date()
                start = rng.randint(6, 14)
                hours = rng.choice([(None, None), (time(start), time(start + 2))])
                session.add(DateOverride(provider_id=provider.id, location_id=location.id,
                                         day=day, start_time=hours[0], end_time=hours[1]))
        for _ in range(rng.randint(0, 3)):
            start = first + timedelta(hours=rng.randint(-60, 260))
            session.add(TimeOff(provider_id=provider.id, starts_at=start,
                                ends_at=start + timedelta(hours=rng.randint(1, 30))))
        if rng.random() < 0.6:
            connection = CalendarConnection(
                provider_id=provider.id, kind=ConnectionKind.ICS, label="calendar",
                interval_seconds=900, active=rng.random() < 0.8,
                status=rng.choice(list(SyncStatus)),
                stale_since=first if rng.random() < 0.3 else None)
            session.add(connection)
            session.flush()
            for _ in range(rng.randint(0, 4)):
                start = first + timedelta(hours=rng.randint(-40, 250))
                session.add(ExternalBusy(connection_id=connection.id, provider_id=provider.id,
                                         starts_at=start,
                                         ends_at=start + timedelta(minutes=rng.randint(15,
                                                                                       600))))
    session.flush()
    for _ in range(60):  # bookings in any status; those the constraints refuse are skipped
        service_type = rng.choice(service_types)
        location = rng.choice(locations)
        start = first + timedelta(minutes=15 * rng.randint(-200, 1100))
        status = rng.choice(list(BookingStatus))
        try:
            with session.begin_nested():
                session.add(Booking(
                    patient_id=rng.choice(patients), provider_id=rng.choice(providers).id,
                    service_type_id=service_type.id, location_id=location.id, status=status,
                    starts_at=start, ends_at=start + timedelta(minutes=45),
                    provider_starts_at=start - timedelta(minutes=15),
                    provider_ends_at=start + timedelta(minutes=60),
                    hold_ends_at=start + timedelta(minutes=rng.choice([45, 105, 165])),
                    chair_number=rng.choice([None, 1, 2, 3])
                    if service_type.needs_chair else None,
                    patient_state="AZ",
                    cancelled_at=start if status is BookingStatus.CANCELLED else None))
        except IntegrityError:
            pass


def _random_clinic(api, app, *, providers: int, seed: int):  # type: ignore[no-untyped-def]
    """The scenario's clinic with a second location, ``providers`` more providers, two more
    patients and a random calendar (``_random_calendar``) from seed ``seed``: the clinic,
    the patients' ids, the random generator (to go on with) and the calendar's first
    instant."""
    clinic = build_clinic(api)
    api.create("/api/v1/locations", clinic_payload(name="Second clinic", chairs=3))
    for index in range(1, providers + 1):
        clinic.add_provider(f"Dr. {index}", NPIS[index])
    patient_ids = [uuid.UUID(clinic.patient["id"])] + [
        uuid.UUID(api.create("/api/v1/patients", patient_payload(first_name=f"P{n}"))["id"])
        for n in range(2)]
    rng = random.Random(seed)
    first = datetime.combine(clinic.day, time(7), tzinfo=UTC)
    with app.extensions["clinic.database"].write_sessions() as session:
        _random_calendar(session, rng, list(session.scalars(select(Provider))),
                         list(session.scalars(select(Location))), patient_ids,
                         list(session.scalars(select(ServiceType))), first)
        session.commit()
    return clinic, patient_ids, rng, first


@pytest.mark.parametrize("seed", range(4))
def test_one_statement_loads_the_schedule_the_search_loads(api, app, seed):
    clinic = build_clinic(api)
    for index in (1, 2):
        clinic.add_provider(f"Dr. {index}", NPIS[index])
    patient_ids = [uuid.UUID(clinic.patient["id"])] + [
        uuid.UUID(api.create("/api/v1/patients", patient_payload(first_name=f"P{n}"))["id"])
        for n in range(2)]
    rng = random.Random(seed)
    first = datetime.combine(clinic.day, time(7), tzinfo=UTC)
    database = app.extensions["clinic.database"]
    with database.write_sessions() as session:
        providers = list(session.scalars(select(Provider)))
        locations = list(session.scalars(select(Location)))
        service_types = list(session.scalars(select(ServiceType)))
        _random_calendar(session, rng, providers, locations, patient_ids, service_types, first)
        session.commit()
    statements: list[str] = []

    def count(*_: object) -> None:
        statements.append("")

    with database.write_sessions() as session:
        providers = list(session.scalars(select(Provider)))
        locations = list(session.scalars(select(Location)))
        service_types = list(session.scalars(select(ServiceType)))
        bookings = list(session.scalars(select(Booking.id)))
        assert session.get(Patient, patient_ids[0]) is not None
        compared = 0
        for _ in range(40):
            service_type, provider = rng.choice(service_types), rng.choice(providers)
            location, patient_id = rng.choice(locations), rng.choice(patient_ids)
            start = first + timedelta(minutes=15 * rng.randint(-20, 900))
            window = dict(start=start - timedelta(days=1), end=start + timedelta(days=1))
            exclude = rng.choice([None, *bookings])
            state = rng.choice(["AZ", "CA", None])
            visit = placement.Visit(service_type=service_type, provider=provider,
                                    location=location, patient_id=patient_id,
                                    patient_state=state)
            event.listen(session.get_bind(), "before_cursor_execute", count)
            try:
                statements.clear()
                narrow = placement.load_visit_schedule(session, visit, exclude_booking_id=exclude,
                                                       **window)
                assert len(statements) == 1
            finally:
                event.remove(session.get_bind(), "before_cursor_execute", count)
            wide = search.load_schedule(
                session, service_type=service_type, providers=[provider], locations=[location],
                patient_id=patient_id, patient_state=state, exclude_booking_id=exclude, **window)
            assert _normalized(narrow) == _normalized(wide)
            # Without a patient the busy time is read in the other shape (the providers'
            # blocks alone, sorted by the database): the same intervals.
            alone = _normalized(search.load_schedule(
                session, service_type=service_type, providers=[provider], locations=[location],
                patient_state=state, exclude_booking_id=exclude, **window))
            assert alone["provider_busy"] == _normalized(narrow)["provider_busy"]
            assert alone["chairs_busy"] == _normalized(narrow)["chairs_busy"]
            # And the same answers (windows, starts).
            assert narrow.windows(provider.id, location.id) == wide.windows(provider.id,
                                                                          location.id)
            day = dict(earliest=start - timedelta(hours=12), latest=start + timedelta(hours=12))
            assert narrow.find(provider.id, location.id, **day) == wide.find(
                provider.id, location.id, **day)
            compared += bool(narrow.provider_busy or narrow.patient_busy)
        assert compared  # some of the compared days had bookings


def _sorted_spans(schedule: search.Schedule) -> bool:
    """The engine takes busy time as it is: each provider's, the patient's and each chair's
    sorted by (start, end)."""
    def ordered(busy) -> bool:  # type: ignore[no-untyped-def]
        pairs = [(i.start, i.end) for i in busy]
        return pairs == sorted(pairs)

    return (all(map(ordered, schedule.provider_busy.values())) and ordered(schedule.patient_busy)
            and all(ordered(chair) for chairs in schedule.chairs_busy.values()
                    for chair in chairs))


@pytest.mark.parametrize("seed", range(4))
def test_one_statement_loads_what_a_query_per_kind_loaded(api, app, seed):
    """Many providers at many locations, any range, with or without a patient, a booking
    left out, licenses loaded with the providers or not, or the providers as the plain rows
    of ``candidates``: the same schedule, the same windows and free starts, in one
    statement."""
    clinic, patient_ids, rng, first = _random_clinic(api, app, providers=3, seed=100 + seed)
    database = app.extensions["clinic.database"]
    statements: list[str] = []

    def count(*_: object) -> None:
        statements.append("")

    compared = 0
    for _ in range(25):
        with database.read_sessions() as session:
            lazy = rng.random() < 0.5  # as candidates() loads them: licenses not loaded
            query = select(Provider).options(lazyload(Provider.licenses)) if lazy else select(
                Provider)
            providers = rng.sample(list(session.scalars(query)), rng.randint(1, 4))
            locations = rng.sample(list(session.scalars(select(Location))), rng.randint(1, 3))
            service_type = rng.choice(list(session.scalars(select(ServiceType))))
            bookings = list(session.scalars(select(Booking.id)))
            start = first + timedelta(minutes=15 * rng.randint(-20, 500))
            window = dict(start=start, end=start + timedelta(days=rng.choice([1, 3, 9])))
            asked = dict(service_type=service_type, providers=providers, locations=locations,
                         patient_id=rng.choice([None, *patient_ids]),
                         patient_state=rng.choice(["AZ", "CA", None]),
                         exclude_booking_id=rng.choice([None, None, *bookings]), **window)
            # Or the plain rows ``candidates`` gives a search (those of the providers that
            # offer the service).
            rows = search.candidates(session, service_type,
                                     provider_ids=[p.id for p in providers])[0]
            if rows and rng.random() < 0.5:
                offered = {row.id for row in rows}
                providers = asked["providers"] = [p for p in providers if p.id in offered]
                given = dict(asked, providers=rows)
            else:
                given = asked
            event.listen(session.get_bind(), "before_cursor_execute", count)
            try:
                statements.clear()
                new = search.load_schedule(session, **given)
                assert len(statements) == 1
            finally:
                event.remove(session.get_bind(), "before_cursor_execute", count)
            before = previous_loader.load_schedule(session, **asked)
            assert _normalized(new) == _normalized(before)
            assert _sorted_spans(new)
            for provider in providers:
                for location in locations:
                    assert new.windows(provider.id, location.id) == before.windows(
                        provider.id, location.id)
                    day = dict(earliest=window["start"], latest=window["end"])
                    assert new.find(provider.id, location.id, **day) == before.find(
                        provider.id, location.id, **day)
            compared += bool(new.provider_busy or new.patient_busy)
    assert compared  # some of the compared ranges had bookings


def test_busy_time_is_read_to_the_microsecond(api, app):
    """Busy instants anywhere in time, to the microsecond, as the engine's integers (on
    PostgreSQL the statement sends arrays of instants, read from their binary form)."""
    build_clinic(api)
    database = app.extensions["clinic.database"]
    instants = [datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
                datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
                datetime(2000, 1, 1, tzinfo=UTC),
                datetime(2038, 1, 19, 3, 14, 7, 654_321, tzinfo=UTC),
                datetime(2038, 1, 19, 3, 14, 7, 654_322, tzinfo=UTC),
                datetime(2263, 6, 1, 12, 0, 0, 1, tzinfo=UTC)]
    with database.write_sessions() as session:
        provider = session.scalars(select(Provider)).first()
        location = session.scalars(select(Location)).first()
        assert provider is not None and location is not None
        connection = CalendarConnection(provider_id=provider.id, kind=ConnectionKind.ICS,
                                        label="calendar", interval_seconds=900, active=True,
                                        status=SyncStatus.OK)
        session.add(connection)
        session.flush()
        for index, instant in enumerate(reversed(instants)):
            session.add(ExternalBusy(connection_id=connection.id, provider_id=provider.id,
                                     starts_at=instant,
                                     ends_at=instant + timedelta(microseconds=7 + index)))
        session.flush()
        found = facts.read(session.connection(), provider_ids=[provider.id],
                           location_ids=[location.id], license_ids=[], chairs=None,
                           lo=instants[0] - timedelta(days=1),
                           hi=instants[-1] + timedelta(days=1),
                           first_day=instants[0].date(), last_day=instants[-1].date())
        busy = found.provider_busy[provider.id]
        assert list(zip(busy.starts, busy.ends, strict=True)) == [
            (engine.to_us(instant), engine.to_us(instant) + 7 + index)
            for index, instant in reversed(list(enumerate(reversed(instants))))]
        assert [(i.start, i.end) for i in busy] == [
            (instant, instant + timedelta(microseconds=7 + index))
            for index, instant in reversed(list(enumerate(reversed(instants))))]


@pytest.mark.parametrize("seed", range(3))
def test_the_search_reads_busy_time_as_far_as_its_service_reaches(api, app, seed):
    """The search loads busy time and time off only as far as the service's visits and
    blocks reach from the range (``search.service_reach``): the same free starts, in every
    pair, as the schedule loaded with the default (wider) margins."""
    clinic, patient_ids, rng, first = _random_clinic(api, app, providers=2, seed=200 + seed)
    database = app.extensions["clinic.database"]
    found = 0
    with database.read_sessions() as session:
        providers = list(session.scalars(select(Provider).options(lazyload(Provider.licenses))))
        locations = list(session.scalars(select(Location)))
        bookings = list(session.scalars(select(Booking).where(
            Booking.status != BookingStatus.CANCELLED)))
        for _ in range(40):
            service_type = rng.choice(list(session.scalars(select(ServiceType))))
            # Ranges ending just before a booking's block or hold, or starting just after
            # one: where a margin too short would show.
            booking = rng.choice(bookings)
            reach = search.service_reach(service_type)
            length = timedelta(days=rng.choice([1, 2, 5]), minutes=rng.randint(0, 90))
            near = timedelta(minutes=rng.randint(0, reach // timedelta(minutes=1)))
            if rng.random() < 0.5:
                end = rng.choice([booking.provider_starts_at, booking.starts_at]) - near
                start = end - length
            else:
                start = rng.choice([booking.provider_ends_at, booking.hold_ends_at]) + near
                end = start + length
            asked = dict(service_type=service_type, providers=providers, locations=locations,
                         start=start, end=end,
                         patient_id=rng.choice([None, booking.patient_id]),
                         patient_state=rng.choice(["AZ", "CA", None]))
            wide = search.load_schedule(session, **asked)
            near = search.load_schedule(session, **asked,
                                        reach=search.service_reach(service_type))
            bounds = dict(earliest=asked["start"],
                          latest=asked["end"] - timedelta(microseconds=1))
            starts = list(search.first_starts(wide, providers, locations, **bounds))
            assert list(search.first_starts(near, providers, locations, **bounds)) == starts
            found += len(starts)
    assert found  # some ranges had free starts


def test_providers_bookings_index_holds_both_bounds_of_a_block(app):
    """The statement's filter on a provider's block (end after the range's start, start
    before its end) is served by one index whose keys hold both: the end bounds the scan
    (the past is never read) and the start is checked in the index, so a week's search
    fetches from the table only the blocks that overlap it, not every later booking (with
    history, the table's largest read; issue 14)."""
    database = app.extensions["clinic.database"]
    indexes = {index["name"]: index["column_names"]
               for index in inspect(database.writer).get_indexes("bookings")}
    assert indexes["ix_bookings_provider_block"] == [
        "provider_id", "provider_ends_at", "provider_starts_at"]
    assert "ix_bookings_provider_ends" not in indexes  # its prefix: the new one serves it
