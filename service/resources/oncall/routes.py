"""The on-call rota: ``/api/v1/on-call-contacts`` (who is told of an urgent alert, in
which order; administrators keep it)."""

from __future__ import annotations

from service.domain.oncall import services
from service.domain.oncall.policy import policy
from service.extensions import Blueprint
from service.resources.common import Catalog, register_catalog
from service.resources.oncall.schemas import (
    OnCallContactQueryArgsSchema,
    OnCallContactSchema,
    OnCallContactUpdateSchema,
)

blp = Blueprint(
    "on-call", __name__, url_prefix="/api/v1",
    description="The on-call rota: clinicians and staff in tier order with the email "
                "address and phone number an urgent alert's notice goes to (\"Urgent "
                "clinical alert: open the console\", no patient data). Tier 1 is told at "
                "once; the next tier when nobody acknowledged the alert in time.")

register_catalog(
    blp,
    Catalog(noun="on-call contact", plural="on-call-contacts", id_name="contact_id",
            list=services.list_contacts, get=services.get_contact,
            create=services.create_contact, update=services.update_contact,
            deactivate=services.deactivate_contact),
    policy=policy, schema=OnCallContactSchema, update_schema=OnCallContactUpdateSchema,
    query_schema=OnCallContactQueryArgsSchema,
)
