"""The FHIR R4 read facade's use cases: searches and reads under the API's access rules.

Search parameters arrive as FHIR spells them (``patient=Patient/<id>``, ``date=ge2026-12-01``,
``status=booked,pending``) and are parsed here; a value that cannot be understood raises
``invalid_search_parameter`` (400). Appointments are scoped like bookings (a patient sees
only theirs, a provider theirs), patients like ``/api/v1/patients``; practitioners,
schedules and locations are the public directory; slots come from the slot search itself,
so a Slot offered here is a start the booking API accepts. A ``count`` of 0 answers the
total only (``_summary=count``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from service.domain.access.actor import Actor
from service.domain.availability.search import OfferedSlot, find_open_slots
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.clinic.models import Location, ServiceType
from service.domain.errors import NotFound
from service.domain.fhir import mapping
from service.domain.fhir.policy import policy
from service.domain.fhir.search import invalid
from service.domain.patients.models import Patient
from service.domain.patients.policy import policy as patients
from service.domain.patients.services import find_patient
from service.domain.providers.models import Provider
from service.domain.records import Page, paginate
from service.domain.time import SUPPORTED_YEARS, in_supported_range
from service.uow import UnitOfWork

APPOINTMENT_STATUSES = frozenset({"proposed", "pending", "booked", "arrived", "fulfilled",
                                  "cancelled", "noshow", "entered-in-error", "checked-in",
                                  "waitlist"})
DEFAULT_SLOT_DAYS = 7
_PREFIXED = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(\d{4}(-\d{2}(-\d{2}(T.+)?)?)?)$")


# Parameters --------------------------------------------------------------------------------


def reference_id(parameter: str, value: str, resource_type: str) -> uuid.UUID:
    """``Type/<id>``, a full URL ending so, or a bare id."""
    text = value.strip()
    if "/" in text:
        kind, _, text = text.rstrip("/").rpartition("/")
        if kind.rpartition("/")[2] != resource_type:
            raise invalid(parameter, f"expected a {resource_type} reference")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise invalid(parameter, f"not a {resource_type} id") from None


@dataclass(frozen=True)
class TimeBound:
    """A date search parameter: ``prefix`` applied to the period [low, high)."""

    prefix: str
    low: datetime
    high: datetime

    def clauses(self, column) -> list[Any]:  # type: ignore[no-untyped-def]
        if self.prefix == "eq":
            return [column >= self.low, column < self.high]
        if self.prefix == "ge":
            return [column >= self.low]
        if self.prefix == "gt":
            return [column >= self.high]
        if self.prefix == "le":
            return [column < self.high]
        return [column < self.low]  # lt

    @property
    def lower(self) -> datetime | None:
        return {"eq": self.low, "ge": self.low, "gt": self.high}.get(self.prefix)

    @property
    def upper(self) -> datetime | None:
        return {"eq": self.high, "le": self.high, "lt": self.low}.get(self.prefix)


def time_bound(parameter: str, value: str, zone: str) -> TimeBound:
    """``[prefix]YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` (whole periods in ``zone``, the
    clinic's) or an instant with an offset (to the second). Prefixes: eq, ge, gt, le, lt."""
    match = _PREFIXED.match(value.strip())
    if not match:
        raise invalid(parameter, "expected [eq|ge|gt|le|lt]YYYY-MM-DD or an instant with an "
                                 "offset")
    prefix, text = match.group(1) or "eq", match.group(2)
    if prefix not in ("eq", "ge", "gt", "le", "lt"):
        raise invalid(parameter, f"the prefix {prefix} is not supported")
    local = ZoneInfo(zone)
    try:
        if "T" in text:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise invalid(parameter, "an instant needs an offset")
            if not in_supported_range(moment):
                raise invalid(parameter, f"an instant in the years {SUPPORTED_YEARS.start} "
                                         f"to {SUPPORTED_YEARS.stop - 1}")
            low = moment.replace(microsecond=0)
            return TimeBound(prefix, low, low + timedelta(seconds=1))
        if len(text) == 4:
            first, after = date(int(text), 1, 1), date(int(text) + 1, 1, 1)
        elif len(text) == 7:
            year, month = int(text[:4]), int(text[5:7])
            first = date(year, month, 1)
            after = date(year + month // 12, month % 12 + 1, 1)
        else:
            first = date.fromisoformat(text)
            after = first + timedelta(days=1)
    except ValueError:
        raise invalid(parameter, "not a valid date") from None
    if not in_supported_range(first):
        raise invalid(parameter, f"a date in the years {SUPPORTED_YEARS.start} to "
                                 f"{SUPPORTED_YEARS.stop - 1}")
    return TimeBound(prefix, datetime.combine(first, datetime.min.time(), local),
                     datetime.combine(after, datetime.min.time(), local))


def appointment_statuses(values: Sequence[str]) -> list[BookingStatus] | None:
    """``status=a,b`` (OR); repeated parameters AND together. None: no filter."""
    if not values:
        return None
    allowed: set[str] | None = None
    for value in values:
        codes = {code.strip() for code in value.split(",") if code.strip()}
        unknown = codes - APPOINTMENT_STATUSES
        if unknown or not codes:
            raise invalid("status", f"not an Appointment status: {', '.join(sorted(unknown))}")
        allowed = codes if allowed is None else allowed & codes
    ours = {s.value for s in BookingStatus}
    return [BookingStatus(code) for code in sorted((allowed or set()) & ours)]


# Appointments -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppointmentRow:
    booking: Booking
    service_type: ServiceType
    location: Location

    def resource(self) -> dict[str, Any]:
        return mapping.appointment(self.booking, self.service_type, self.location)


def _appointments_query(actor: Actor):  # type: ignore[no-untyped-def]
    return policy.visible(actor, select(Booking, ServiceType, Location)
                          .join(ServiceType, ServiceType.id == Booking.service_type_id)
                          .join(Location, Location.id == Booking.location_id))


def search_appointments(uow: UnitOfWork, actor: Actor, *, zone: str, page: int, count: int,
                        patient: str | None = None, practitioner: str | None = None,
                        dates: Sequence[str] = (), statuses: Sequence[str] = (),
                        ids: Sequence[str] = (), descending: bool = False
                        ) -> Page[AppointmentRow]:
    """Appointments the actor may see, by start (``descending``: latest first)."""
    order = (Booking.starts_at.desc(), Booking.id.desc()) if descending else (
        Booking.starts_at, Booking.id)
    query = _appointments_query(actor).order_by(*order)
    if patient:
        query = query.where(Booking.patient_id == reference_id("patient", patient, "Patient"))
    if practitioner:
        query = query.where(Booking.provider_id == reference_id(
            "practitioner", practitioner, "Practitioner"))
    for value in dates:
        query = query.where(*time_bound("date", value, zone).clauses(Booking.starts_at))
    wanted = appointment_statuses(statuses)
    if wanted is not None:
        query = query.where(Booking.status.in_(wanted))
    if ids:
        query = query.where(Booking.id.in_([reference_id("_id", i, "Appointment")
                                            for v in ids for i in v.split(",")]))
    with uow:
        session = uow.session
        total = session.scalar(select(func.count()).select_from(
            query.order_by(None).subquery())) or 0
        rows = session.execute(query.limit(count).offset((page - 1) * count)).all() if (
            count) else []
        return Page([AppointmentRow(*row) for row in rows], total)


def read_appointment(uow: UnitOfWork, actor: Actor, appointment_id: uuid.UUID
                     ) -> AppointmentRow:
    with uow:
        row = uow.session.execute(
            _appointments_query(actor).where(Booking.id == appointment_id)).first()
        if row is None:
            raise NotFound("No appointment with this id.", code="booking_not_found")
        return AppointmentRow(*row)


# Practitioners and schedules --------------------------------------------------------------


def search_practitioners(uow: UnitOfWork, *, page: int, count: int, name: str | None = None,
                         identifier: str | None = None, active: bool | None = None,
                         ids: Sequence[str] = ()) -> Page[Provider]:
    query = select(Provider).order_by(Provider.name, Provider.id)
    if name:
        query = query.where(Provider.name.ilike(f"%{name}%"))
    if identifier:
        system, _, value = identifier.rpartition("|")
        if system and system != mapping.NPI_SYSTEM:
            return Page([], 0)
        query = query.where(Provider.npi == value)
    if active is not None:
        query = query.where(Provider.active.is_(active))
    if ids:
        query = query.where(Provider.id.in_([reference_id("_id", i, "Practitioner")
                                             for v in ids for i in v.split(",")]))
    with uow:
        return paginate(uow.session, query, page=page, page_size=count)


def read_practitioner(uow: UnitOfWork, provider_id: uuid.UUID) -> Provider:
    with uow:
        provider = uow.session.get(Provider, provider_id)
        if provider is None:
            raise NotFound("No practitioner with this id.", code="provider_not_found")
        return provider


def search_schedules(uow: UnitOfWork, *, page: int, count: int, actor_ref: str | None = None,
                     active: bool | None = None, ids: Sequence[str] = ()) -> Page[Provider]:
    chosen = [reference_id("actor", actor_ref, "Practitioner")] if actor_ref else []
    chosen += [reference_id("_id", i, "Schedule") for v in ids for i in v.split(",")]
    return search_practitioners(uow, page=page, count=count, active=active,
                                ids=[str(i) for i in chosen] if chosen else ())


# Patients and locations ---------------------------------------------------------------------


def _by_identifier(identifier: str, column):  # type: ignore[no-untyped-def]
    """``urn:ietf:rfc:3986|urn:uuid:<id>`` or ``urn:uuid:<id>``: a clause on ``column``; an
    identifier of another system (or not one of ours) matches nothing."""
    system, _, value = identifier.rpartition("|")
    if system and system != mapping.URI_SYSTEM:
        return None
    prefix = "urn:uuid:"
    if not value.lower().startswith(prefix):
        return None
    try:
        return column == uuid.UUID(value[len(prefix):])
    except ValueError:
        return None


def _ids(values: Sequence[str], resource_type: str) -> list[uuid.UUID]:
    return [reference_id("_id", i, resource_type) for v in values for i in v.split(",")]


def search_patients(uow: UnitOfWork, actor: Actor, *, page: int, count: int,
                    identifier: str | None = None, name: str | None = None,
                    ids: Sequence[str] = ()) -> Page[Patient]:
    """The patients the actor may see (as ``/api/v1/patients``), by name."""
    query = patients.visible(actor, select(Patient)).order_by(
        Patient.last_name, Patient.first_name, Patient.id)
    if identifier:
        clause = _by_identifier(identifier, Patient.id)
        if clause is None:
            return Page([], 0)
        query = query.where(clause)
    if name:
        pattern = f"%{name}%"
        query = query.where(Patient.last_name.ilike(pattern) | Patient.first_name.ilike(pattern))
    if ids:
        query = query.where(Patient.id.in_(_ids(ids, "Patient")))
    with uow:
        return paginate(uow.session, query, page=page, page_size=count)


def read_patient(uow: UnitOfWork, actor: Actor, patient_id: uuid.UUID) -> Patient:
    with uow:
        return find_patient(uow, actor, patient_id)


def search_locations(uow: UnitOfWork, *, page: int, count: int, identifier: str | None = None,
                     name: str | None = None, ids: Sequence[str] = ()) -> Page[Location]:
    query = select(Location).order_by(Location.name, Location.id)
    if identifier:
        clause = _by_identifier(identifier, Location.id)
        if clause is None:
            return Page([], 0)
        query = query.where(clause)
    if name:
        query = query.where(Location.name.ilike(f"%{name}%"))
    if ids:
        query = query.where(Location.id.in_(_ids(ids, "Location")))
    with uow:
        return paginate(uow.session, query, page=page, page_size=count)


def read_location(uow: UnitOfWork, location_id: uuid.UUID) -> Location:
    with uow:
        location = uow.session.get(Location, location_id)
        if location is None:
            raise NotFound("No location with this id.", code="location_not_found")
        return location


# Slots --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotRow:
    slot: OfferedSlot
    service_type: ServiceType

    def resource(self) -> dict[str, Any]:
        return mapping.slot(self.slot, self.service_type)


def search_slots(uow: UnitOfWork, actor: Actor, *, now: datetime, zone: str, count: int,
                 schedule: str | None = None, service_types: Sequence[str] = (),
                 starts: Sequence[str] = (), status: str | None = None) -> list[SlotRow]:
    """Free slots, earliest first, at most ``count``: of one Schedule (provider) or all,
    of the named service types (codes) or every active one, within ``start`` (default: the
    next 7 days)."""
    if status is not None and set(status.split(",")) != {"free"}:
        raise invalid("status", "only free slots are served (status=free)")
    provider_ids = [reference_id("schedule", schedule, "Schedule")] if schedule else None
    low, high = now, None
    for value in starts:
        bound = time_bound("start", value, zone)
        if bound.lower is not None:
            low = max(low, bound.lower)
        if bound.upper is not None:
            high = bound.upper if high is None else min(high, bound.upper)
    high = high or low + timedelta(days=DEFAULT_SLOT_DAYS)
    if high <= low:
        return []
    codes = {c.rpartition("|")[2] for v in service_types for c in v.split(",") if c}
    with uow:
        query = select(ServiceType).where(ServiceType.active.is_(True)).order_by(
            ServiceType.code)
        if codes:
            query = query.where(ServiceType.code.in_(sorted(codes)))
        types = list(uow.session.scalars(query))
    rows: list[SlotRow] = []
    for service_type in types:
        found = find_open_slots(uow, actor, service_type_id=service_type.id, start=low,
                                end=high, now=now, default_zone=zone,
                                provider_ids=provider_ids, limit=count)
        rows += [SlotRow(s, service_type) for s in found.slots]
    rows.sort(key=lambda r: (r.slot.start, str(r.slot.provider_id), r.service_type.code))
    return rows[:count]
