"""API keys through the API (``/api/v1/api-keys``) and the calling key (``/api/v1/me``).

A front end acting for a signed-in person gets its key here instead of from the command
line: an admin issues any key, staff issue (list, revoke) patient keys. The key itself is in
the creation's answer only; the service keeps its hash.
"""

from __future__ import annotations

import uuid

from flask.views import MethodView

from service.auth import authorize
from service.db import utcnow
from service.domain.access import services as keys
from service.domain.access.policy import keys as policy
from service.extensions import Blueprint, current_actor, unit_of_work
from service.resources.access.schemas import (
    ApiKeyCreatedSchema,
    ApiKeyQueryArgsSchema,
    ApiKeySchema,
    MeSchema,
)
from service.resources.common import ETAG_HEADER, LOCATION_HEADER, etag, not_modified, paged
from service.resources.idempotency import idempotent

blp = Blueprint(
    "access", __name__, url_prefix="/api/v1",
    description="API keys for front ends and integrations: admins issue any key, staff "
                "issue patient keys (for a patient portal acting for a signed-in patient); "
                "the key is shown once. `GET /me` tells the calling key's role and whom it "
                "acts for.")


@blp.route("/api-keys")
class ApiKeys(MethodView):
    @blp.arguments(ApiKeyQueryArgsSchema, location="query")
    @blp.response(200, ApiKeySchema(many=True))
    @blp.paginate()
    @authorize(policy, "list_keys")
    def get(self, args, pagination_parameters):
        """List API keys (never their secrets; staff: patient keys only)"""
        return paged(keys.search_keys, pagination_parameters, **args)

    @idempotent(withhold=("key",))
    @blp.arguments(ApiKeySchema)
    @blp.response(201, ApiKeyCreatedSchema, headers={**ETAG_HEADER, **LOCATION_HEADER})
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "create_key")
    def post(self, data):
        """Issue an API key (the key is in this answer only; staff: patient keys only)

        A provider key names `provider_id`, a patient key `patient_id`; other roles name
        neither (422 key_binding).
        """
        issued = keys.create_key(unit_of_work(), current_actor(), now=utcnow(), **data)
        return issued, 201, {**etag(issued.record),
                             "Location": f"/api/v1/api-keys/{issued.record.id}"}


@blp.route("/api-keys/<uuid:key_id>")
class ApiKeyById(MethodView):
    @not_modified
    @blp.response(200, ApiKeySchema, headers=ETAG_HEADER)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read_key")
    def get(self, key_id: uuid.UUID):
        """Get an API key (never its secret)"""
        record = keys.get_key(unit_of_work(read_only=True), current_actor(), key_id)
        return record, etag(record)

    @blp.response(204)
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "revoke_key")
    def delete(self, key_id: uuid.UUID):
        """Revoke an API key: refused (401 revoked_api_key) from now on; it stays listed
        with include_revoked"""
        keys.revoke(unit_of_work(), current_actor(), key_id, now=utcnow())


@blp.route("/me")
class Me(MethodView):
    @blp.response(200, MeSchema)
    @authorize(policy, "me")
    def get(self):
        """Who is calling: the key's role, label, expiry and the patient or provider it
        acts for"""
        return keys.current_key(unit_of_work(read_only=True), current_actor())
