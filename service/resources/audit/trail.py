"""Which requests the audit trail records, and the request hooks that record them.

One table, ``AUDITED``, names every endpoint that reads or writes patient data, with its
resource type and the action of each method; ``NOT_PATIENT_DATA`` names the areas that hold
none (the directory, availability, slots, protocols). Any other ``/api/`` endpoint is
audited too, by default, under its blueprint's name: an endpoint added later is recorded
until someone classifies it, never silently skipped.

For an audited request the hooks open an ``AuditContext`` before the view runs; the write
sessions add its row to the transaction of the change (``service.domain.audit.services``);
after the answer, a request whose row was not written with a change (a read, a refusal, a
failure) gets it in a small transaction of its own. If that row cannot be written, the
answer is withheld (503): no patient data leaves unaudited.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from flask.blueprints import BlueprintSetupState

from service.db import is_unavailable
from service.domain.audit import services as audit
from service.domain.audit.models import AuditAction, AuditOutcome
from service.errors import database_unavailable, problem
from service.extensions import unit_of_work

log = logging.getLogger(__name__)

READ, CREATE, UPDATE, DELETE = (AuditAction.READ, AuditAction.CREATE, AuditAction.UPDATE,
                                AuditAction.DELETE)

# endpoint -> (resource type, {HTTP method: action})
AUDITED: dict[str, tuple[str, dict[str, AuditAction]]] = {
    "patients.patients_collection": ("patient", {"GET": READ, "POST": CREATE}),
    "patients.patients_item": ("patient", {"GET": READ, "PATCH": UPDATE}),
    "patients.patients_deactivation": ("patient", {"POST": UPDATE}),
    "bookings.Bookings": ("booking", {"GET": READ, "POST": CREATE}),
    "bookings.BookingById": ("booking", {"GET": READ}),
    "bookings.BookingReschedule": ("booking", {"POST": UPDATE}),
    "bookings.BookingCancellation": ("booking", {"POST": UPDATE}),
    "bookings.booking_confirm": ("booking", {"POST": UPDATE}),
    "bookings.booking_check_in": ("booking", {"POST": UPDATE}),
    "bookings.booking_complete": ("booking", {"POST": UPDATE}),
    "bookings.booking_no_show": ("booking", {"POST": UPDATE}),
    "reminders.BookingReminders": ("reminder", {"GET": READ}),
    "reminders.Reminders": ("reminder", {"GET": READ}),
    "reminders.ReminderRetry": ("reminder", {"POST": UPDATE}),
    "reminders.InboundSms": ("patient", {"POST": UPDATE}),  # SMS consent (STOP / START)
    "series.Series": ("series", {"GET": READ, "POST": CREATE}),
    "series.SeriesById": ("series", {"GET": READ}),
    "series.SeriesCancellation": ("series", {"POST": UPDATE}),
    "series.SeriesSessions": ("series", {"POST": UPDATE}),
    "series.SeriesPreview": ("series", {"POST": READ}),  # reads the patient's schedule
    "consultations.BookingScreening": ("screening", {"GET": READ, "POST": CREATE,
                                                     "PATCH": UPDATE}),
    "consultations.ClearanceDecisions": ("clearance_decision", {"GET": READ, "POST": CREATE}),
    "consultations.InPersonEvaluations": ("in_person_evaluation", {"GET": READ,
                                                                   "POST": CREATE}),
    "consultations.Telehealth": ("telehealth_visit", {"GET": READ}),
    "consultations.TelehealthConsent": ("telehealth_visit", {"POST": UPDATE}),
    "consultations.TelehealthCheckIn": ("booking", {"POST": UPDATE}),
    "consultations.TelehealthPrescribing": ("telehealth_visit", {"POST": UPDATE}),
    "sessions.BookingVitals": ("vital_sign", {"GET": READ, "POST": CREATE}),
    "sessions.BookingHolds": ("session_hold", {"GET": READ}),
    "sessions.HoldOverride": ("session_hold", {"POST": UPDATE}),
    "sessions.SideEffects": ("side_effect", {"GET": READ, "POST": CREATE}),
    "sessions.SideEffectById": ("side_effect", {"PATCH": UPDATE}),
    "sessions.Tasks": ("task", {"GET": READ}),
    "sessions.TaskCompletion": ("task", {"POST": UPDATE}),
    "assessments.Assessments": ("assessment", {"GET": READ, "POST": CREATE}),
    "assessments.Alerts": ("alert", {"GET": READ}),
    "assessments.AlertAcknowledgement": ("alert", {"POST": UPDATE}),
    "audit.AuditEvents": ("audit_trail", {"GET": READ}),  # who looked at whose trail
}

# Blueprints (and single endpoints) without patient data: never audited. The calendar
# feeds and the changes feed show when visits are, by id, without names or clinical words;
# they are polled by integrations, and on SQLite a row per poll would queue every poll
# behind the writer: they are left out until classified with their owners.
NOT_PATIENT_DATA = frozenset({
    "providers", "locations", "service-types", "availability", "slots", "health",
    "api-docs", "docs_assets", "webhooks", "calendar", "sync", "series.Protocols",
})

DEFAULT_ACTIONS = {"GET": READ, "POST": CREATE, "PUT": UPDATE,
                   "PATCH": UPDATE, "DELETE": DELETE}


def classify(endpoint: str | None, method: str, path: str) -> tuple[str, AuditAction] | None:
    """(resource type, action) of an audited request; None when it is not audited."""
    if endpoint is None or method == "OPTIONS" or not path.startswith("/api/"):
        return None
    method = "GET" if method == "HEAD" else method  # the same view, the headers only
    blueprint = endpoint.rsplit(".", 1)[0] if "." in endpoint else ""
    if endpoint in NOT_PATIENT_DATA or blueprint in NOT_PATIENT_DATA:
        return None
    if endpoint in AUDITED:
        resource, actions = AUDITED[endpoint]
        action = actions.get(method)
        return None if action is None else (resource, action)
    action = DEFAULT_ACTIONS.get(method)
    return None if action is None else (blueprint or endpoint, action)


def _uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _path_ids() -> dict[str, uuid.UUID]:
    """The uuid path parameters, in the order the path names them."""
    rule = request.url_rule.rule if request.url_rule else ""
    ids = {name: value for name, value in (request.view_args or {}).items()
           if isinstance(value, uuid.UUID)}
    return dict(sorted(ids.items(), key=lambda item: rule.find(f":{item[0]}>")))


def _patient_hint() -> uuid.UUID | None:
    hint = _uuid(request.args.get("patient_id"))
    if hint is None and request.method in ("POST", "PUT", "PATCH") and request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            hint = _uuid(body.get("patient_id"))
    return hint


def current() -> audit.AuditContext | None:
    """The open request's audit context, with the caller and the request id once
    authentication knows them (None outside an audited request)."""
    if not has_request_context():
        return None
    context: audit.AuditContext | None = g.get("audit")
    if context is not None and context.actor is None:
        context.actor = g.get("actor")
        context.request_id = g.get("request_id") or context.request_id
    return context


def begin() -> None:
    """Before the view (and before authentication): open the context of an audited request."""
    classified = classify(request.endpoint, request.method, request.path)
    if classified is None:
        return
    resource, action = classified
    g.audit = audit.AuditContext(
        resource_type=resource, action=action, method=request.method,
        request_id=g.get("request_id") or request.headers.get("X-Request-Id", "")[:64]
        or uuid.uuid4().hex, client_address=(request.remote_addr or "")[:45] or None,
        path_ids=_path_ids(), patient_hint=_patient_hint())


def _outcome(response: Response) -> tuple[AuditOutcome, str | None]:
    status = response.status_code
    if response.headers.get("Idempotent-Replayed") == "true":
        return AuditOutcome.REPLAYED, None
    if status < 400:
        return AuditOutcome.SUCCESS, None
    if status == 401:
        return AuditOutcome.UNAUTHENTICATED, None
    if status == 403:
        return AuditOutcome.FORBIDDEN, None
    if status == 404:
        body = response.get_json(silent=True) if response.is_json else None
        return AuditOutcome.NOT_FOUND, (body or {}).get("code")
    if status >= 500:
        return AuditOutcome.ERROR, None
    return AuditOutcome.FAILED, None


def finish(response: Response) -> Response:
    """After the answer: write the row of a request that did not write it with a change."""
    context = current()
    if context is None or context.recorded:
        return response
    if g.get("database_unavailable"):
        # The answer is a 503 that discloses nothing, and the database just failed this
        # request: waiting on it again for the row would only delay the answer.
        return response
    context.request_id = g.get("request_id") or context.request_id
    outcome, missing = _outcome(response)
    try:
        audit.record(unit_of_work(), context, outcome, missing=missing)
    except Exception as exc:  # noqa: BLE001 - fail closed: no unaudited answer goes out
        if is_unavailable(exc):
            return database_unavailable(exc, during="audit row")
        log.error("could not write the audit row (%s) of %s %s (request %s)",
                  type(exc).__name__, request.method, request.url_rule, context.request_id)
        return problem(503, "service_unavailable", "Service Unavailable",
                       "The audit trail could not be written; nothing was returned.")
    return response


def install(state: BlueprintSetupState) -> None:
    """When the audit blueprint is registered: hook the app's requests and write sessions."""
    app: Flask = state.app
    audit.attach(app.extensions["clinic.database"].write_sessions, current)
    app.before_request(begin)
    app.after_request(finish)
