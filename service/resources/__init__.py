"""The HTTP resource areas, registered in this order."""

from __future__ import annotations

from service.auth import BEARER_SCHEME
from service.extensions import Api
from service.resources.access.routes import blp as access_blp
from service.resources.audit.routes import blp as audit_blp
from service.resources.availability.routes import blp as availability_blp
from service.resources.board.routes import board as board_page
from service.resources.bookings.routes import blp as bookings_blp
from service.resources.calendar.routes import blp as calendar_blp
from service.resources.calendar.routes import sync_blp
from service.resources.clinic.routes import locations_blp, service_types_blp
from service.resources.connections.routes import blp as connections_blp
from service.resources.consultations.routes import (
    assessments_blp,
    consultations_blp,
    sessions_blp,
)
from service.resources.fhir.routes import blp as fhir_blp
from service.resources.health import blp as health_blp
from service.resources.oncall.routes import blp as oncall_blp
from service.resources.operations.routes import blp as metrics_blp
from service.resources.patients.routes import blp as patients_blp
from service.resources.providers.routes import blp as providers_blp
from service.resources.reminders.routes import blp as reminders_blp
from service.resources.series.routes import blp as series_blp
from service.resources.slots.routes import blp as slots_blp
from service.resources.waitlist.routes import blp as waitlist_blp
from service.resources.webhooks.routes import blp as webhooks_blp

MODULES = (providers_blp, locations_blp, service_types_blp, patients_blp, availability_blp,
           slots_blp, bookings_blp, reminders_blp, series_blp,
           calendar_blp, sync_blp, webhooks_blp, fhir_blp,
           consultations_blp, sessions_blp, assessments_blp, audit_blp, access_blp,
           oncall_blp, waitlist_blp, connections_blp)


def register_blueprints(api: Api) -> None:
    api.spec.components.security_scheme("bearerAuth", BEARER_SCHEME)
    for blueprint in MODULES:
        api.register_blueprint(blueprint)
    api.register_blueprint(health_blp)
    api.register_blueprint(metrics_blp)
    # A page, not an API resource: registered on the app itself, so it has no OpenAPI entry.
    api._app.register_blueprint(board_page)
