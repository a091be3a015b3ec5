"""Providers and their licenses: ``/api/v1/providers``, ``/api/v1/licenses/expiring``."""

from __future__ import annotations

import uuid

from flask.views import MethodView

from service.auth import authorize
from service.domain.providers import services
from service.domain.providers.policy import policy
from service.extensions import Blueprint, clinic_today, current_actor, unit_of_work
from service.resources.common import (
    ETAG_HEADER,
    IF_MATCH,
    LOCATION_HEADER,
    Catalog,
    check_read_back,
    etag,
    expected_version,
    not_modified,
    paged,
    register_catalog,
)
from service.resources.idempotency import idempotent
from service.resources.providers.schemas import (
    ExpiringQueryArgsSchema,
    LicenseSchema,
    LicenseUpdateSchema,
    ProviderQueryArgsSchema,
    ProviderSchema,
    ProviderUpdateSchema,
)

blp = Blueprint("providers", __name__, url_prefix="/api/v1",
                description="Clinicians and their Arizona licenses or telehealth registrations.")


register_catalog(
    blp,
    Catalog(noun="provider", plural="providers", id_name="provider_id",
            list=services.list_providers, get=services.get_provider,
            create=services.create_provider, update=services.update_provider,
            deactivate=services.deactivate_provider),
    policy=policy, schema=ProviderSchema, update_schema=ProviderUpdateSchema,
    query_schema=ProviderQueryArgsSchema,
)


@blp.route("/providers/<uuid:provider_id>/licenses")
class Licenses(MethodView):
    @blp.response(200, LicenseSchema(many=True))
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.paginate()
    @authorize(policy, "list_licenses")
    def get(self, provider_id: uuid.UUID, pagination_parameters):
        """List a provider's licenses and registrations"""
        return paged(services.list_licenses, pagination_parameters, provider_id)

    @idempotent
    @blp.arguments(LicenseSchema)
    @blp.response(201, LicenseSchema, headers={**ETAG_HEADER, **LOCATION_HEADER})
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @authorize(policy, "add_license")
    def post(self, data, provider_id: uuid.UUID):
        """Record a license or a 36-3606 telehealth registration"""
        record = services.add_license(unit_of_work(), current_actor(), provider_id, **data)
        return record, 201, {
            **etag(record),
            "Location": f"/api/v1/providers/{provider_id}/licenses/{record.id}",
        }


@blp.route("/providers/<uuid:provider_id>/licenses/<uuid:license_id>")
class LicenseById(MethodView):
    @not_modified
    @blp.response(200, LicenseSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read_license")
    def get(self, provider_id: uuid.UUID, license_id: uuid.UUID):
        """Get one license"""
        record = services.get_license(unit_of_work(read_only=True), current_actor(),
                                      provider_id, license_id)
        return record, etag(record)

    @blp.arguments(LicenseUpdateSchema)
    @blp.response(200, LicenseSchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @blp.alt_response(412, response="PRECONDITION_FAILED")
    @blp.alt_response(428, response="PRECONDITION_REQUIRED")
    @blp.doc(parameters=[IF_MATCH])
    @authorize(policy, "update_license")
    def patch(self, changes, provider_id: uuid.UUID, license_id: uuid.UUID):
        """Update a license: renewal dates, status (suspended, revoked, ...); send If-Match

        A license read by GET may be sent back whole: read-only fields are ignored when
        they equal the current values, refused (422 read_only_field) otherwise."""
        check_read_back(changes, lambda: services.get_license(
            unit_of_work(read_only=True), current_actor(), provider_id, license_id))
        record = services.update_license(unit_of_work(), current_actor(), provider_id,
                                         license_id, expected_version=expected_version(),
                                         changes=changes)
        return record, etag(record)


@blp.route("/licenses/expiring")
class ExpiringLicenses(MethodView):
    @blp.arguments(ExpiringQueryArgsSchema, location="query")
    @blp.response(200, LicenseSchema(many=True))
    @blp.paginate()
    @authorize(policy, "expiring_licenses")
    def get(self, args, pagination_parameters):
        """Active licenses expiring within `within_days` days (default 60)"""
        return paged(services.expiring_licenses, pagination_parameters, today=clinic_today(),
                     within_days=args["within_days"])
