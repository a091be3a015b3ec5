"""The audit trail: ``GET /api/v1/audit`` for admins.

Registering this blueprint also installs the request hooks that write the trail
(``service/resources/audit/trail.py``).
"""

from __future__ import annotations

from flask.views import MethodView

from service.auth import authorize
from service.domain.audit import services
from service.domain.audit.policy import policy
from service.domain.errors import InvalidInput
from service.extensions import Blueprint
from service.resources.audit import trail
from service.resources.audit.schemas import AuditEventSchema, AuditQueryArgsSchema
from service.resources.common import paged

MAX_RANGE_DAYS = 366

blp = Blueprint(
    "audit", __name__, url_prefix="/api/v1",
    description="The audit trail: one append-only row per request that read or wrote "
                "patient data, refused ones included (action `denied`): who (API key, "
                "role), what (resource, id, patient), outcome, when, from where, request "
                "id. Never a clinical value or a name.")
blp.record_once(trail.install)


@blp.route("/audit")
class AuditEvents(MethodView):
    @blp.arguments(AuditQueryArgsSchema, location="query")
    @blp.response(200, AuditEventSchema(many=True))
    @blp.paginate()
    @authorize(policy, "read")
    def get(self, args, pagination_parameters):
        """Read the audit trail, newest first (filter by patient and time)"""
        since, until = args.get("since"), args.get("until")
        if since is not None and until is not None:
            if until <= since:
                raise InvalidInput("until must come after since.", code="invalid_time_range")
            if (until - since).days > MAX_RANGE_DAYS:
                raise InvalidInput(f"Ask for at most {MAX_RANGE_DAYS} days at a time.",
                                   code="range_too_long")
        return paged(services.list_events, pagination_parameters, **args)
