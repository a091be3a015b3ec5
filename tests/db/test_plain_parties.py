"""``POST /bookings`` reads a booking's parties as plain rows and writes the booking with no
ORM instance (``bookings.services.book_plain``): the rows hold exactly what the models'
instances hold, and what the models derive is derived the same way."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import inspect

from service import bootstrap
from service.config import Settings
from service.db import utcnow
from service.domain.access.actor import SYSTEM, Actor, Role
from service.domain.bookings import services
from service.domain.bookings.models import Booking
from service.extensions import database
from service.uow import UnitOfWork
from tests.scenario import build_clinic


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def _properties(model: type) -> set[str]:
    return {name for klass in model.__mro__ for name, value in vars(klass).items()
            if isinstance(value, property)}


def test_plain_rows_derive_what_the_models_derive():
    for model, plain_class in services._PLAIN_MODELS:
        assert _properties(model) <= set(dir(plain_class)), model.__name__
    assert _properties(Booking) <= set(dir(services.NewBooking))


def _patient(clinic) -> Actor:
    return Actor(key_id=None, role=Role.PATIENT, patient_id=uuid.UUID(clinic.patient["id"]))


@pytest.mark.parametrize("actor", [
    pytest.param(lambda _clinic: SYSTEM, id="sees-every-patient"),  # a DirectStatement
    pytest.param(_patient, id="the-patient")])  # the policy's query, executed
def test_plain_parties_hold_what_the_orm_loads(app, clinic, actor):
    actor = actor(clinic)
    with app.app_context():
        db = database()
    for service in clinic.services.values():
        location = clinic.virtual if service["modality"] == "telehealth" else clinic.clinic
        request = services.BookingRequest(
            patient_id=uuid.UUID(clinic.patient["id"]), provider_id=uuid.UUID(clinic.doctor["id"]),
            service_type_id=uuid.UUID(service["id"]), location_id=uuid.UUID(location["id"]),
            start=clinic.at(14), patient_state="AZ")
        uow = UnitOfWork(db.write_sessions, dialect=db.dialect)
        with uow:
            postgres = db.dialect == "postgresql"
            plain = services._plain_parties(uow.connection(), actor, postgres,
                                            {"patient_id": request.patient_id,
                                             "provider_id": request.provider_id,
                                             "service_type_id": request.service_type_id,
                                             "location_id": request.location_id})
            loaded = uow.session.execute(services._parties_query(postgres), {
                "patient_id": request.patient_id, "provider_id": request.provider_id,
                "service_type_id": request.service_type_id,
                "location_id": request.location_id}).unique().first()
            assert plain is not None and loaded is not None
            assert tuple(plain[4:]) == tuple(loaded[4:])  # the recipients (PostgreSQL)
            for row, instance in zip(plain[:4], loaded[:4], strict=True):
                attributes = inspect(type(instance)).column_attrs
                assert {a.key: getattr(row, a.key) for a in attributes} == {
                    a.key: getattr(instance, a.key) for a in attributes}
                assert {a.key: type(getattr(row, a.key)) for a in attributes} == {
                    a.key: type(getattr(instance, a.key)) for a in attributes}
            licenses = loaded[1].licenses
            assert licenses, "the doctor holds a license"
            attributes = inspect(type(licenses[0])).column_attrs
            key = lambda found: found.id  # noqa: E731
            assert [{a.key: getattr(row, a.key) for a in attributes}
                    for row in sorted(plain[1].licenses, key=key)] == [
                {a.key: getattr(instance, a.key) for a in attributes}
                for instance in sorted(licenses, key=key)]


def test_a_booking_made_finds_its_handlers_rows_without_the_session(app, clinic):
    with app.app_context():
        db = database()
    bus = bootstrap.bootstrap(Settings())
    uow = UnitOfWork(db.write_sessions, dialect=db.dialect, bus=bus)
    booking = services.create_booking(uow, SYSTEM, services.BookingRequest(
        patient_id=uuid.UUID(clinic.patient["id"]), provider_id=uuid.UUID(clinic.doctor["id"]),
        service_type_id=uuid.UUID(clinic.services["consultation"]["id"]),
        location_id=uuid.UUID(clinic.virtual["id"]), start=clinic.at(14),
        patient_state="AZ"), now=utcnow())
    reading = UnitOfWork(db.write_sessions, dialect=db.dialect)
    with reading:
        stored = reading.session.get(Booking, booking.id)
        assert stored is not None
        for column in Booking.__table__.columns:
            assert getattr(stored, column.key) == getattr(booking, column.key), column.key
        assert stored.leaves_at == booking.leaves_at


def test_an_actor_who_does_not_see_the_patient_finds_no_parties(app, clinic):
    """The direct statement serves only actors who see every patient: another patient's
    key finds no row (and the booking then answers ``patient_not_found``)."""
    with app.app_context():
        db = database()
    stranger = Actor(key_id=None, role=Role.PATIENT, patient_id=uuid.uuid4())
    uow = UnitOfWork(db.write_sessions, dialect=db.dialect)
    with uow:
        assert services._plain_parties(uow.connection(), stranger, db.dialect == "postgresql", {
            "patient_id": uuid.UUID(clinic.patient["id"]),
            "provider_id": uuid.UUID(clinic.doctor["id"]),
            "service_type_id": uuid.UUID(clinic.services["consultation"]["id"]),
            "location_id": uuid.UUID(clinic.virtual["id"])}) is None
