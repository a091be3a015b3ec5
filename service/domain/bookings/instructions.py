"""What a patient (and their driver) needs to know about one booking: the whole stay and how
to prepare.

The stay: arrive ``arrive_early_minutes`` before the start (check-in, readings before the
dose), the visit itself, then its monitoring or recovery, until ``leaves_at``. A treatment in
the clinic ends with a driver: the patient does not drive home. The service type's
preparation and after-care instructions are the clinic's own words for the patient (they may
name the medicine: only the booking's patient and the clinic read them); reminders use only
their short PHI-free wordings (``reminders/content.py``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.domain.access.actor import Actor
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.bookings.policy import policy
from service.domain.clinic.models import Location, ServiceType
from service.domain.providers.licensing import Modality
from service.domain.reminders.content import PREPARATION
from service.domain.time import in_zone
from service.uow import UnitOfWork


@dataclass(frozen=True)
class Instructions:
    booking_id: uuid.UUID
    service_type_id: uuid.UUID
    status: BookingStatus
    timezone: str  # the location's: every instant below is shown in it
    arrive_at: datetime
    starts_at: datetime
    ends_at: datetime  # the visit (the dose) ends
    leaves_at: datetime  # the patient may leave: visit plus monitoring or recovery
    stay_minutes: int  # from arrival to leaving
    ride_home_required: bool  # arrive with a driver; no driving yourself home
    ride_home_confirmed: bool
    route: str | None
    at_home: bool
    preparation: list[str]
    after_care: list[str]


def arrival(booking: Booking, service_type: ServiceType) -> datetime:
    return booking.starts_at - timedelta(minutes=service_type.arrive_early_minutes or 0)


def texts(instructions: list[dict] | None) -> list[str]:
    return [item["text"] for item in instructions or () if item.get("text")]


def reminder_wordings(instructions: list[dict] | None) -> list[str]:
    """The short PHI-free wordings of the instructions that have one (for reminders)."""
    return [item["reminder"] for item in instructions or () if item.get("reminder")]


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def advice(service_type: ServiceType) -> str:
    """How to prepare, in one text (the booking answer's ``preparation``): the service type's
    own preparation and after-care instructions (the same words the instructions answer
    lists), else the generic advice the reminders give."""
    before, after = texts(service_type.preparation), texts(service_type.after_care)
    if not before and not after:
        in_person = service_type.modality == Modality.IN_PERSON
        return PREPARATION["in_person" if in_person else "telehealth"][0]
    parts = []
    if before:
        parts.append("Before your visit: " + " ".join(_sentence(t) for t in before))
    if after:
        parts.append("After your visit: " + " ".join(_sentence(t) for t in after))
    return " ".join(parts)


def of_booking(booking: Booking, service_type: ServiceType, location: Location
               ) -> Instructions:
    zone = location.timezone
    arrive_at = arrival(booking, service_type)
    return Instructions(
        booking_id=booking.id, service_type_id=service_type.id, status=booking.status,
        timezone=zone, arrive_at=in_zone(arrive_at, zone),
        starts_at=in_zone(booking.starts_at, zone), ends_at=in_zone(booking.ends_at, zone),
        leaves_at=in_zone(booking.leaves_at, zone),
        stay_minutes=int((booking.leaves_at - arrive_at).total_seconds() // 60),
        ride_home_required=service_type.needs_ride_home,
        ride_home_confirmed=booking.ride_home_confirmed,
        route=service_type.route.value if service_type.route else None,
        at_home=service_type.at_home, preparation=texts(service_type.preparation),
        after_care=texts(service_type.after_care))


def get_instructions(uow: UnitOfWork, actor: Actor, booking_id: uuid.UUID) -> Instructions:
    """The booking's stay and instructions, for whoever may read the booking (its patient,
    its provider, the clinic); others: booking_not_found."""
    with uow:
        booking = policy.load(uow.session, actor, booking_id)
        service_type = uow.session.get(ServiceType, booking.service_type_id)
        location = uow.session.get(Location, booking.location_id)
        return of_booking(booking, service_type, location)
