"""Use cases for clinic locations and service types."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from service.domain.access.actor import Actor
from service.domain.clinic.models import (
    HOME_ROUTES,
    MIN_MONITORING_MINUTES,
    Location,
    LocationKind,
    Route,
    ServiceType,
)
from service.domain.errors import Conflict, InvalidInput
from service.domain.providers.licensing import Modality
from service.domain.records import Page, apply_changes, deactivate, get_or_raise, paginate
from service.domain.reminders import content
from service.uow import UnitOfWork

# Locations -------------------------------------------------------------------------------


def _location(uow: UnitOfWork, location_id: uuid.UUID) -> Location:
    return get_or_raise(uow.session, Location, location_id, code="location_not_found",
                        what="location")


def _check_location(values: dict[str, Any]) -> None:
    if values["kind"] == LocationKind.CLINIC:
        required = ("address_line1", "city", "state", "postal_code")
        missing = [name for name in required if not values.get(name)]
        if missing:
            raise InvalidInput("A clinic location needs a full address.",
                               code="address_required", missing=missing)
    elif values.get("chairs"):
        raise InvalidInput("A virtual location has no treatment chairs.",
                           code="virtual_location_chairs")


def list_locations(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                   active: bool | None = None, kind: LocationKind | None = None
                   ) -> Page[Location]:
    query = select(Location).order_by(Location.name, Location.id)
    if active is not None:
        query = query.where(Location.active.is_(active))
    if kind is not None:
        query = query.where(Location.kind == kind)
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)


def get_location(uow: UnitOfWork, actor: Actor, location_id: uuid.UUID) -> Location:
    with uow:
        return _location(uow, location_id)


def create_location(uow: UnitOfWork, actor: Actor, **values: Any) -> Location:
    _check_location(values)

    def work() -> Location:
        location = Location(**values)
        uow.session.add(location)
        return location

    return uow.run(work)


def update_location(uow: UnitOfWork, actor: Actor, location_id: uuid.UUID, *,
                    expected_version: int | None, changes: dict[str, Any]) -> Location:
    def work() -> Location:
        location = _location(uow, location_id)
        current = {c: getattr(location, c) for c in
                   ("kind", "address_line1", "city", "state", "postal_code", "chairs")}
        _check_location({**current, **changes})
        apply_changes(location, changes, expected_version=expected_version)
        return location

    return uow.run(work)


def deactivate_location(uow: UnitOfWork, actor: Actor, location_id: uuid.UUID) -> Location:
    return deactivate(uow, Location, location_id, code="location_not_found", what="location")


# Service types ---------------------------------------------------------------------------


def _service_type(uow: UnitOfWork, service_type_id: uuid.UUID) -> ServiceType:
    return get_or_raise(uow.session, ServiceType, service_type_id,
                        code="service_type_not_found", what="service type")


def _check_service_type(values: dict[str, Any]) -> None:
    if values.get("needs_chair") and values["modality"] == Modality.TELEHEALTH:
        raise InvalidInput("A telehealth visit cannot need a treatment chair.",
                           code="telehealth_chair")
    _check_route(values)
    for field in ("preparation", "after_care"):
        _check_reminder_wording(field, values.get(field) or [])
    if values.get("requires_rems"):
        if values["modality"] != Modality.IN_PERSON or not values.get("needs_chair"):
            raise InvalidInput("A REMS service is given in person, in a chair.",
                               code="rems_in_person")
        if (values.get("recovery_minutes") or 0) < 120:
            raise InvalidInput(
                "A REMS (esketamine) service needs at least 120 minutes of monitoring.",
                code="rems_monitoring_too_short")


def _check_route(values: dict[str, Any]) -> None:
    """Every modality keeps one safety standard: a dose in the clinic is given in a chair, to
    a cleared patient, followed by its route's least monitoring; the pill alone may be taken
    at home, and then the service type is the telehealth check-in of a cleared patient."""
    route = values.get("route")
    route = Route(route) if route is not None else None
    if values.get("at_home"):
        if route not in HOME_ROUTES:
            raise InvalidInput("Only the pill (oral or sublingual) is taken at home; IV "
                               "ketamine and esketamine are given in the clinic.",
                               code="home_route_not_allowed")
        if values["modality"] != Modality.TELEHEALTH or not values.get("needs_clearance"):
            raise InvalidInput("A home protocol's visits are telehealth check-ins of a "
                               "cleared patient (modality telehealth, needs_clearance).",
                               code="home_check_in_telehealth")
        return
    if route is None:
        return
    if (values["modality"] != Modality.IN_PERSON or not values.get("needs_chair")
            or not values.get("needs_clearance")):
        raise InvalidInput("A dose given in the clinic is given in person, in a chair, to a "
                           "cleared patient (needs_chair, needs_clearance).",
                           code="clinic_dose_in_chair")
    if (route is Route.INTRANASAL) != bool(values.get("requires_rems")):
        raise InvalidInput("Intranasal esketamine, and only it, is given under the REMS.",
                           code="rems_route_mismatch")
    least = MIN_MONITORING_MINUTES[route]
    if (values.get("recovery_minutes") or 0) < least:
        raise InvalidInput(f"A {route.value} dose in the clinic is followed by at least "
                           f"{least} minutes of monitoring (recovery_minutes).",
                           code="monitoring_too_short", least_minutes=least)


def _check_reminder_wording(field: str, instructions: list[dict[str, Any]]) -> None:
    """An instruction's reminder wording goes into SMS and e-mail reminders: no drug,
    diagnosis or treatment word, GSM-7 characters only."""
    for index, item in enumerate(instructions):
        wording = item.get("reminder")
        if not wording:
            continue
        words = content.forbidden_words(wording)
        if words:
            raise InvalidInput("A reminder wording names a drug, a diagnosis or a treatment; "
                               "say it generically (the instruction's text may name them).",
                               code="reminder_wording_not_phi_free",
                               field=f"{field}[{index}].reminder", words=words)
        if any(ch not in content.GSM7 for ch in wording):
            raise InvalidInput("A reminder wording uses only characters an SMS can carry "
                               "(GSM-7).", code="reminder_wording_not_gsm7",
                               field=f"{field}[{index}].reminder")


def list_service_types(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                       active: bool | None = None, modality: Modality | None = None
                       ) -> Page[ServiceType]:
    query = select(ServiceType).order_by(ServiceType.code)
    if active is not None:
        query = query.where(ServiceType.active.is_(active))
    if modality is not None:
        query = query.where(ServiceType.modality == modality)
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)


def get_service_type(uow: UnitOfWork, actor: Actor, service_type_id: uuid.UUID) -> ServiceType:
    with uow:
        return _service_type(uow, service_type_id)


def create_service_type(uow: UnitOfWork, actor: Actor, **values: Any) -> ServiceType:
    _check_service_type(values)

    def work() -> ServiceType:
        if uow.session.scalar(select(ServiceType.id).where(ServiceType.code == values["code"])):
            raise Conflict("A service type with this code already exists.",
                           code="duplicate_code")
        service_type = ServiceType(**values)
        uow.session.add(service_type)
        return service_type

    return uow.run(work)


_SERVICE_TYPE_RULE_FIELDS = ("modality", "needs_chair", "requires_rems", "recovery_minutes",
                             "route", "at_home", "needs_clearance")


def update_service_type(uow: UnitOfWork, actor: Actor, service_type_id: uuid.UUID, *,
                        expected_version: int | None, changes: dict[str, Any]) -> ServiceType:
    def work() -> ServiceType:
        service_type = _service_type(uow, service_type_id)
        current = {f: getattr(service_type, f) for f in _SERVICE_TYPE_RULE_FIELDS}
        _check_service_type({**current, **changes})
        if "code" in changes and changes["code"] != service_type.code and uow.session.scalar(
            select(ServiceType.id).where(ServiceType.code == changes["code"])
        ):
            raise Conflict("A service type with this code already exists.",
                           code="duplicate_code")
        apply_changes(service_type, changes, expected_version=expected_version)
        return service_type

    return uow.run(work)


def deactivate_service_type(uow: UnitOfWork, actor: Actor, service_type_id: uuid.UUID
                            ) -> ServiceType:
    return deactivate(uow, ServiceType, service_type_id, code="service_type_not_found",
                      what="service type")
