"""Which requests the audit trail records, and the request hooks that record them.

Every route of the app is audited unless ``NOT_PATIENT_DATA`` names it: the safe default,
so a route added later is recorded until someone decides it holds no patient data (and
``tests/api/test_audit_coverage.py``, which walks the URL map, fails until that decision is
written down there too). ``AUDITED`` gives the resource type and the action of each method of
the routes known to hold patient data; any other route is recorded under its blueprint's
name with the action its method implies. ``ONLY_FOR_A_PATIENT`` names the routes whose answer
involves patient data only when a patient is concerned (a ``patient_id`` asked for, or a
patient's own key): the others' requests leave no row.

For an audited request the hooks open an ``AuditContext`` before the view runs (and before
authentication, so 401s are recorded too); the write sessions add its row to the transaction
of the change (``service.domain.audit.services``); after the answer, a request whose row was
not written with a change (a read, a refusal, a failure) gets it in a small transaction of
its own. A read (GET, HEAD) on PostgreSQL without a replica keeps one session for the whole
request instead, in autocommit: its reads run in it and its row is written last, committed
by its own INSERT before the answer goes out (one connection, no BEGIN or COMMIT to wait
for; ``service.extensions.share_request_transaction``); the row names the record the read
loaded without reading it again. If that row cannot be written, the answer is withheld
(503): no patient data leaves unaudited.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Flask, Request, Response, g, has_request_context, request
from flask.blueprints import BlueprintSetupState

from service.auth import request_id
from service.db import is_unavailable
from service.domain.audit import services as audit
from service.domain.audit.models import AuditAction, AuditOutcome
from service.domain.calendar.services import hash_token
from service.errors import database_unavailable, problem
from service.extensions import (
    end_request_transaction,
    request_reads,
    request_unit_of_work,
    share_request_transaction,
    shares_request_transaction,
    unit_of_work,
)

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
    "bookings.BookingInstructions": ("booking", {"GET": READ}),
    "bookings.BookingReschedule": ("booking", {"POST": UPDATE}),
    "bookings.BookingCancellation": ("booking", {"POST": UPDATE}),
    "bookings.booking_confirm": ("booking", {"POST": UPDATE}),
    "bookings.booking_check_in": ("booking", {"POST": UPDATE}),
    "bookings.booking_complete": ("booking", {"POST": UPDATE}),
    "bookings.booking_no_show": ("booking", {"POST": UPDATE}),
    "bookings.BookingAttentionResolution": ("booking", {"POST": UPDATE}),
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
    # The FHIR facade: an Appointment names the patient and the treatment (service type).
    "fhir.Appointments": ("appointment", {"GET": READ}),
    "fhir.AppointmentById": ("appointment", {"GET": READ}),
    # A patient's calendar feed tokens, and the feeds themselves (a patient's feed says when
    # and where they are treated; a provider's lists bookings by id with their times).
    "calendar.patient_calendar_tokens": ("calendar_token", {"GET": READ, "POST": CREATE}),
    "calendar.patient_calendar_token": ("calendar_token", {"DELETE": DELETE}),
    "calendar.calendar_feed": ("calendar_feed", {"GET": READ}),
    # The changes feed: bookings with their patient, times and status.
    "sync.BookingSync": ("booking_sync", {"GET": READ}),
    # A delivery's payload: a booking (or a series' bookings) by id, its times and status.
    "webhooks.WebhookDeliveryById": ("webhook_delivery", {"GET": READ}),
    "webhooks.WebhookRedelivery": ("webhook_delivery", {"POST": CREATE}),
    # Free slots: computed from the patient's own visits and eligibility when a patient is
    # concerned (see ONLY_FOR_A_PATIENT); otherwise from providers' calendars only.
    "slots.Slots": ("slot", {"GET": READ}),
    "fhir.Slots": ("slot", {"GET": READ}),
    # FHIR Patient: the patient's record itself.
    "fhir.Patients": ("patient", {"GET": READ}),
    "fhir.PatientById": ("patient", {"GET": READ}),
    # API keys: a patient key acts for its patient (the row names them); issuing, listing
    # and revoking keys, and a key asking who it is, are recorded for every role.
    "access.ApiKeys": ("api_key", {"GET": READ, "POST": CREATE}),
    "access.ApiKeyById": ("api_key", {"GET": READ, "DELETE": DELETE}),
    "access.Me": ("api_key", {"GET": READ}),
    # The waitlist: who waits for what kind of visit, and the slots offered to them.
    "waitlist.Entries": ("waitlist_entry", {"GET": READ, "POST": CREATE}),
    "waitlist.EntryById": ("waitlist_entry", {"GET": READ, "DELETE": DELETE}),
    "waitlist.EntryMove": ("waitlist_entry", {"POST": UPDATE}),
    "waitlist.Offers": ("waitlist_offer", {"GET": READ}),
    "waitlist.OfferById": ("waitlist_offer", {"GET": READ}),
    "waitlist.OfferAcceptance": ("waitlist_offer", {"POST": UPDATE}),
    "waitlist.OfferDecline": ("waitlist_offer", {"POST": UPDATE}),
}

# Routes that read patient data only for a patient's key or a ``patient_id`` asked for.
ONLY_FOR_A_PATIENT = frozenset({"slots.Slots", "fhir.Slots"})

# Endpoints that can neither return nor change patient data: never audited. Everything else
# is (see the module's docstring). Keep tests/api/test_audit_coverage.py's list in step.
NOT_PATIENT_DATA = frozenset({
    # Documentation, problem types, Swagger UI assets, liveness and readiness.
    "docs_assets.home", "docs_assets.swagger_asset", "docs_assets.problem_type",
    "api-docs.openapi_json", "api-docs.openapi_swagger_ui",
    "health.Liveness", "health.Readiness",
    # The service's own figures (counts and durations by route template, no ids).
    "metrics.Metrics",
    # The clinic's directory: providers, licenses, availability and time off, locations,
    # service types, treatment protocols; FHIR Practitioner and Schedule are the same.
    "providers.providers_collection", "providers.providers_item",
    "providers.providers_deactivation", "providers.Licenses", "providers.LicenseById",
    "providers.ExpiringLicenses",
    "availability.Availability", "availability.TimeOffs", "availability.TimeOffById",
    "locations.locations_collection", "locations.locations_item",
    "locations.locations_deactivation",
    "service-types.service_types_collection", "service-types.service_types_item",
    "service-types.service_types_deactivation",
    "series.Protocols",
    # The on-call rota (clinic staff's names and work addresses, no patient data).
    "on-call.on_call_contacts_collection", "on-call.on_call_contacts_item",
    "on-call.on_call_contacts_deactivation",
    "fhir.Practitioners", "fhir.PractitionerById", "fhir.Schedules", "fhir.ScheduleById",
    # FHIR Location (the clinic's sites) and the server's CapabilityStatement.
    "fhir.Locations", "fhir.LocationById", "fhir.Capabilities",
    # The day board's page and static files (its data comes from audited API calls).
    "board.day_board", "board.board_asset",
    # Every other FHIR path or method: always 404 or 405, nothing read.
    "fhir.unsupported",
    # A provider's own calendar feed tokens (label and dates; the feed itself is audited).
    "calendar.provider_calendar_tokens", "calendar.provider_calendar_token",
    # Webhook subscriptions (URL, events) and their delivery log (event type, status and
    # attempt times, never the payload, which only a delivery's own page shows).
    "webhooks.Webhooks", "webhooks.WebhookById", "webhooks.WebhookDeliveries",
    # The event catalogue (schemas only) and a secret rotation (no patient data).
    "webhooks.WebhookEventTypes", "webhooks.WebhookSecretRotation",
    # Connected calendars: a provider's busy intervals and the sources' freshness (never a
    # title, an attendee or a patient).
    "connections.Connections", "connections.ConnectionById", "connections.ConnectionBusy",
    "connections.ConnectionSync", "connections.ConnectionOverview",
})

DEFAULT_ACTIONS = {"GET": READ, "POST": CREATE, "PUT": UPDATE,
                   "PATCH": UPDATE, "DELETE": DELETE}


def classify(endpoint: str | None, method: str) -> tuple[str, AuditAction] | None:
    """(resource type, action) of an audited request; None when it is not audited (an
    endpoint listed in ``NOT_PATIENT_DATA``, an OPTIONS request, or no route at all)."""
    if endpoint is None or method == "OPTIONS" or endpoint in NOT_PATIENT_DATA:
        return None
    method = "GET" if method == "HEAD" else method  # the same view, the headers only
    resource, actions = AUDITED.get(endpoint, (endpoint.rsplit(".", 1)[0], {}))
    return resource, actions.get(method) or DEFAULT_ACTIONS.get(method, READ)


def _uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _path_ids(request: Request) -> dict[str, uuid.UUID]:
    """The uuid path parameters, in the order the path names them."""
    rule = request.url_rule.rule if request.url_rule else ""
    ids = {name: value for name, value in (request.view_args or {}).items()
           if isinstance(value, uuid.UUID)}
    return dict(sorted(ids.items(), key=lambda item: rule.find(f":{item[0]}>")))


def _reference(value: str | None) -> uuid.UUID | None:
    """A patient id given as a bare id or a FHIR reference (``Patient/<id>``, a URL)."""
    return _uuid(value.rstrip("/").rpartition("/")[2]) if value else None


def _patient_hint(request: Request) -> uuid.UUID | None:
    # (no query string: nothing for ``request.args`` to parse)
    hint = (_uuid(request.args.get("patient_id")) or _reference(request.args.get("patient"))
            if request.query_string else None)
    if hint is None and request.method in ("POST", "PUT", "PATCH") and request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            hint = _uuid(body.get("patient_id"))
    return hint


def _feed_token_hash(request: Request) -> str | None:
    """The hash of a calendar feed token in the path (the row names the token's record,
    never the token)."""
    token = (request.view_args or {}).get("token")
    return hash_token(token) if isinstance(token, str) else None


def current() -> audit.AuditContext | None:
    """The open request's audit context, with the caller once authentication knows them
    (None outside an audited request)."""
    if not has_request_context():
        return None
    found = g._get_current_object()  # type: ignore[attr-defined]
    context: audit.AuditContext | None = found.get("audit")
    if context is not None and context.actor is None:
        context.actor = found.get("actor")
    return context


def begin() -> None:
    """Before the view (and before authentication): open the context of an audited request."""
    # (the request behind its proxy found once: each read through the proxy finds it again)
    current_request: Request = request._get_current_object()  # type: ignore[attr-defined]
    method = current_request.method
    classified = classify(current_request.endpoint, method)
    if classified is None:
        return
    resource, action = classified
    if method in ("GET", "HEAD"):
        share_request_transaction()
    g._get_current_object().audit = audit.AuditContext(  # type: ignore[attr-defined]
        resource_type=resource, action=action, method=method, request_id=request_id(),
        client_address=(current_request.remote_addr or "")[:45] or None,
        path_ids=_path_ids(current_request), patient_hint=_patient_hint(current_request),
        feed_token_hash=_feed_token_hash(current_request))


def _problem_code(response: Response) -> str | None:
    """The stable code of an error answer: problem+json, or a FHIR OperationOutcome."""
    body = response.get_json(silent=True) if response.is_json else None
    if not isinstance(body, dict):
        return None
    if body.get("resourceType") == "OperationOutcome":
        for issue in body.get("issue") or ():
            for coding in (issue.get("details") or {}).get("coding") or ():
                if coding.get("code"):
                    return str(coding["code"])
        return None
    code = body.get("code")
    return code if isinstance(code, str) else None


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
        return AuditOutcome.NOT_FOUND, _problem_code(response)
    if status >= 500:
        return AuditOutcome.ERROR, None
    return AuditOutcome.FAILED, None


def _concerns_a_patient(context: audit.AuditContext) -> bool:
    return context.patient_hint is not None or (
        context.actor is not None and context.actor.patient_id is not None)


def finish(response: Response) -> Response:
    """After the answer: write the row of a request that did not write it with a change."""
    context = current()
    if context is None or context.recorded:
        return response
    current_request: Request = request._get_current_object()  # type: ignore[attr-defined]
    if g._get_current_object().get("database_unavailable"):  # type: ignore[attr-defined]
        # The answer is a 503 that discloses nothing, and the database just failed this
        # request: waiting on it again for the row would only delay the answer.
        return response
    if current_request.endpoint in ONLY_FOR_A_PATIENT and not _concerns_a_patient(context):
        return response
    outcome, missing = _outcome(response)
    try:
        if shares_request_transaction():  # in autocommit: committed once it returns
            audit.write(request_unit_of_work(), context, outcome, missing=missing)
        else:
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
    database = app.extensions["clinic.database"]
    audit.attach(database.write_sessions, current)
    audit.remember_reads(database.request_sessions, request_reads)
    app.before_request(begin)
    app.after_request(finish)
    app.teardown_request(end_request_transaction)
