"""Clinic locations and service types: ``/api/v1/locations``, ``/api/v1/service-types``."""

from __future__ import annotations

from service.domain.clinic import services
from service.domain.clinic.policy import locations, service_types
from service.extensions import Blueprint
from service.resources.clinic.schemas import (
    LocationQueryArgsSchema,
    LocationSchema,
    LocationUpdateSchema,
    ServiceTypeQueryArgsSchema,
    ServiceTypeSchema,
    ServiceTypeUpdateSchema,
)
from service.resources.common import Catalog, register_catalog

locations_blp = Blueprint(
    "locations", __name__, url_prefix="/api/v1",
    description="Clinic sites (IANA zone, chairs, REMS certification) and the virtual "
                "telehealth location.")
service_types_blp = Blueprint(
    "service-types", __name__, url_prefix="/api/v1",
    description="What the clinic offers: durations, recovery, buffers, notice, horizon, "
                "chairs, clearance and REMS rules, reminder plan.")

register_catalog(
    locations_blp,
    Catalog(noun="location", plural="locations", id_name="location_id",
            list=services.list_locations, get=services.get_location,
            create=services.create_location, update=services.update_location,
            deactivate=services.deactivate_location),
    policy=locations, schema=LocationSchema, update_schema=LocationUpdateSchema,
    query_schema=LocationQueryArgsSchema,
)

register_catalog(
    service_types_blp,
    Catalog(noun="service type", plural="service-types", id_name="service_type_id",
            list=services.list_service_types, get=services.get_service_type,
            create=services.create_service_type, update=services.update_service_type,
            deactivate=services.deactivate_service_type),
    policy=service_types, schema=ServiceTypeSchema, update_schema=ServiceTypeUpdateSchema,
    query_schema=ServiceTypeQueryArgsSchema,
)
