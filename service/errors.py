"""Every error leaves as ``application/problem+json`` (RFC 9457) with a stable ``code``.

This module is the one place that maps domain errors and HTTP exceptions to responses, and
the one table of error codes (``CODES``), which ``GET /problems/<code>`` also serves.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flask import Flask, Response, current_app, g, json, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, InternalServerError

from service import db
from service.domain import errors as domain

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

STATUS_BY_CATEGORY: dict[type[domain.DomainError], int] = {
    domain.Unauthenticated: 401,
    domain.Forbidden: 403,
    domain.NotFound: 404,
    domain.Conflict: 409,
    domain.InvalidState: 409,
    domain.Gone: 410,
    domain.PreconditionFailed: 412,
    domain.InvalidInput: 422,
}

# code -> (status, meaning). Codes are stable: clients branch on them; never rename one.
CODES: dict[str, tuple[int, str]] = {
    "bad_request": (400, "The request could not be understood."),
    "malformed_json": (400, "The body is not valid JSON."),
    "unauthenticated": (401, "No API key was given (Authorization: Bearer <key>)."),
    "invalid_api_key": (401, "The API key is unknown or malformed."),
    "revoked_api_key": (401, "The API key was revoked."),
    "forbidden": (403, "The caller's role may not do this."),
    "field_not_editable": (403, "The caller may not change some of the given fields."),
    "read_only_field": (422, "A read-only field was sent with another value than its "
                             "current one (send it as read, or leave it out); see fields."),
    "not_found": (404, "No such resource."),
    "provider_not_found": (404, "No such provider (or not visible to the caller)."),
    "license_not_found": (404, "No such license for this provider."),
    "location_not_found": (404, "No such location."),
    "service_type_not_found": (404, "No such service type."),
    "patient_not_found": (404, "No such patient (or not visible to the caller)."),
    "api_key_not_found": (404, "No such API key."),
    "method_not_allowed": (405, "The method is not allowed on this resource."),
    "not_acceptable": (406, "The requested media type cannot be served."),
    "conflict": (409, "The request conflicts with the current state."),
    "integrity_conflict": (409, "The change conflicts with existing data."),
    "duplicate_npi": (409, "A provider with this NPI already exists."),
    "duplicate_license": (409, "The board already has a license with this number."),
    "duplicate_code": (409, "A service type with this code already exists."),
    "precondition_failed": (412, "If-Match does not match the current version (ETag)."),
    "payload_too_large": (413, "The request body is larger than the service accepts (1 MiB)."),
    "unsupported_media_type": (415, "The body must be application/json."),
    "validation_failed": (422, "Some fields are invalid; see errors."),
    "invalid_timezone": (422, "Not an IANA time zone name (for example America/Phoenix)."),
    "invalid_npi": (422, "Not a valid NPI (10 digits with a valid check digit)."),
    "invalid_phone": (422, "Not an E.164 phone number (for example +16025550123)."),
    "invalid_date_range": (422, "The end of a range comes before its start."),
    "invalid_input": (422, "The input breaks a rule; see detail."),
    "invalid_birth_date": (422, "A birth date lies in the past, after 1900."),
    "address_required": (422, "A clinic location needs a full address."),
    "virtual_location_chairs": (422, "A virtual location has no treatment chairs."),
    "telehealth_chair": (422, "A telehealth service cannot need a chair."),
    "rems_in_person": (422, "A REMS service is given in person, in a chair."),
    "rems_monitoring_too_short": (422, "Esketamine needs at least 120 minutes of monitoring."),
    "rems_requires_prescriber": (422, "A REMS prescriber must also be a prescriber."),
    "key_binding": (422, "Provider and patient keys are bound to exactly one record."),
    "key_format": (422, "The key does not have the form ck_<role>_<id>_<secret>."),
    # Availability
    "naive_datetime": (422, "A time needs an offset (RFC 3339), e.g. 2026-12-01T10:00:00-07:00."),
    "invalid_time_range": (422, "The end of a time range must come after its start."),
    "overlapping_hours": (422, "Two working-hour rules of a provider overlap on the same day."),
    "time_off_not_found": (404, "No such time off for this provider."),
    # Idempotency (IETF draft-ietf-httpapi-idempotency-key-header)
    "invalid_idempotency_key": (400, "Idempotency-Key must be 1 to 255 printable characters."),
    "idempotency_key_reused": (422, "This Idempotency-Key was used with a different request."),
    "idempotency_key_in_progress": (409, "A request with this Idempotency-Key is still running."),
    # Slots and bookings
    "booking_not_found": (404, "No such booking (or not visible to the caller)."),
    "range_too_long": (422, "The requested time range is longer than allowed."),
    "slot_unavailable": (409, "The time is taken; alternatives lists the next free slots."),
    "outside_working_hours": (409, "The provider does not work then, at that location."),
    "outside_booking_window": (422, "Too soon (minimum notice) or too far ahead (horizon)."),
    "misaligned_start": (422, "Start times follow the service type's slot interval."),
    "provider_not_licensed": (409, "No active Arizona license (or, for telehealth, 36-3606 "
                                   "registration) covers that date."),
    "patient_location_required": (422, "Telehealth needs the patient's attested location state."),
    "patient_location_not_covered": (409, "The provider is not licensed where the patient is."),
    "clearance_required": (409, "Treatment needs a patient cleared by a consultation."),
    "rems_requirements_not_met": (409, "Esketamine needs a REMS-certified site, an enrolled "
                                       "patient and a REMS prescriber."),
    "ride_home_required": (422, "A treatment booking records that a ride home is confirmed."),
    "location_mismatch": (422, "The location does not offer this kind of visit."),
    "not_bookable": (409, "The provider, patient, location or service type is inactive."),
    "invalid_transition": (409, "The booking's status does not allow this action."),
    # Reminders
    "reminder_not_found": (404, "No such reminder."),
    "reminder_not_retryable": (409, "Only failed or skipped reminders can be retried."),
    # Treatment series
    "series_not_found": (404, "No such treatment series (or not visible to the caller)."),
    "series_conflict": (409, "A session of the series cannot be booked, so none was; "
                             "occurrences reports each session."),
    "series_not_active": (409, "The series is cancelled."),
    "series_complete": (409, "Every planned session of the series is booked or done."),
    "no_provider_available": (409, "No active provider offers this service at this location."),
    "location_required": (422, "Several locations offer this service: name one."),
    "protocol_or_rrule_required": (422, "Give a protocol or a custom RRULE (one of the two)."),
    "protocol_not_satisfiable": (422, "The sessions cannot keep the protocol's spacing and "
                                      "window (first start, preferred weekdays)."),
    "previous_session_required": (422, "A booster needs a previous treatment session."),
    "invalid_rrule": (422, "Not a usable RRULE (RFC 5545; DAILY, WEEKLY or MONTHLY)."),
    "rrule_unbounded": (422, "The RRULE never ends: give COUNT or UNTIL."),
    "rrule_too_long": (422, "A series holds at most 52 sessions within one year."),
    "protocol_spacing": (409, "The change leaves series sessions closer than the protocol's "
                              "least gap; a provider or an admin may confirm with "
                              "override.reason."),
    "protocol_window": (409, "The change takes the series outside the protocol's window (the "
                             "whole course within its days, a booster within its weeks); a "
                             "provider or an admin may confirm with override.reason."),
    "protocol_rhythm": (409, "The change puts more sessions in a week than the protocol's "
                             "weekly rhythm; a provider or an admin may confirm with "
                             "override.reason."),
    "protocol_override_not_allowed": (403, "Only a provider or an admin may confirm a change "
                                           "that breaks a series' protocol."),
    # Calendar feeds, the changes feed, webhooks, the FHIR facade
    "calendar_feed_not_found": (404, "No calendar feed with this token (unknown or revoked)."),
    "calendar_token_not_found": (404, "No such calendar feed token for this owner."),
    "sync_token_expired": (410, "The sync or page token is expired or invalid: sync again "
                                "from scratch (without a token)."),
    "sync_token_with_filters": (422, "A sync or page token carries its filters: send it "
                                     "alone."),
    "webhook_not_found": (404, "No such webhook subscription (or not visible to the caller)."),
    "webhook_delivery_not_found": (404, "No such delivery of this webhook subscription."),
    "webhook_url_not_allowed": (422, "The webhook URL must be http(s), without credentials, "
                                     "and not an internal address."),
    "webhook_inactive": (409, "The webhook subscription is disabled; enable it first."),
    "invalid_search_parameter": (400, "A FHIR search parameter has an unsupported value."),
    # Consultations: screening, clearance, vitals, assessments, telehealth, tasks
    "screening_not_found": (404, "No screening is recorded for this consultation yet."),
    "side_effect_not_found": (404, "No such side effect logged for this session."),
    "alert_not_found": (404, "No such alert (or not visible to the caller)."),
    "task_not_found": (404, "No such task (or not visible to the caller)."),
    "clinician_only": (403, "Only a provider (a clinician) may do this: clear a patient or "
                            "override a blood pressure hold."),
    "not_a_consultation": (409, "A screening belongs to a consultation (a visit that needs no "
                                "clearance itself)."),
    "not_telehealth": (409, "This booking is not a telehealth visit."),
    "consultation_not_found": (404, "No consultation of this patient with this id."),
    "consultation_not_completed": (409, "The cited consultation is not completed; a clearance "
                                        "decision before it needs a reason."),
    "clearance_reason_required": (422, "A clearance decision citing no completed consultation "
                                       "(or clearing without its screening) needs a reason."),
    "screening_exists": (409, "This consultation already has a screening; PATCH it with "
                              "If-Match."),
    "esketamine_contraindicated": (409, "A screening on record has a hard contraindication to "
                                        "esketamine."),
    "session_not_checked_in": (409, "Vital signs are recorded while the patient is checked in; "
                                    "side effects once the session has started."),
    "session_on_hold": (409, "A pre-dose blood pressure above the threshold holds the session "
                             "until a clinician overrides it with a reason."),
    "no_active_hold": (409, "The session is not on hold."),
    "session_vitals_incomplete": (409, "An esketamine session needs readings before dosing, "
                                       "about 40 minutes after and at discharge."),
    "telehealth_consent_required": (409, "Informed consent to telehealth is recorded before "
                                         "check-in."),
    "duplicate_evaluation": (409, "This in-person evaluation is already recorded."),
    "invalid_answers": (422, "PHQ-9 has 9 answers and GAD-7 has 7, each a whole number 0-3."),
    "implausible_vitals": (422, "A vital sign is physiologically impossible; see errors."),
    "location_attestation_required": (422, "A telehealth check-in re-attests where the patient "
                                           "is (POST /bookings/{id}/telehealth/check-in)."),
    "write_contention": (409, "Concurrent changes kept this request from completing; retry."),
    "precondition_required": (428, "This update needs an If-Match header with the ETag."),
    "rate_limited": (429, "Too many requests; retry later."),
    "internal_error": (500, "An unexpected error; it was logged with the request id."),
    "service_unavailable": (503, "A dependency (the database) is not available."),
    # Input refused before any schema reads it (service/parsing.py)
    "json_too_deep": (400, "The JSON body nests too deep (at most 32 levels)."),
    "invalid_characters": (422, "Text holds NUL or a lone surrogate, or the query or form is "
                                "not UTF-8."),
    "duplicate_parameter": (422, "A parameter that takes one value was given several."),
    "out_of_range": (422, "A date or time outside the years 1900 to 2200, or a number too "
                          "large to be read."),
    "empty_update": (422, "A PATCH names at least one field to change."),
    "unknown_state": (422, "Not a US state or territory code (e.g. AZ), or jurisdiction "
                           "(e.g. US-AZ)."),
    "database_unavailable": (503, "The database is not answering (down, hung, overloaded or "
                                  "locked); retry after the Retry-After seconds."),
    # API keys managed through the API (/api/v1/api-keys, /api/v1/me)
    "api_key_expired": (401, "The API key expired; ask for a new one."),
    "key_role_not_allowed": (403, "The caller's role may not issue or manage keys of this "
                                  "role (staff: patient keys only)."),
    "invalid_key_expiry": (422, "A key's expiry must be in the future."),
    # Clinical safety after booking time (gates re-checked, watched doses)
    "booking_not_flagged": (409, "The booking has no attention flag to resolve."),
    "check_in_not_open": (409, "Check-in opens CHECK_IN_OPENS_MINUTES before the visit."),
    "discharge_too_early": (409, "Discharge comes after the service type's monitoring time "
                                 "after the dose (120 minutes after esketamine)."),
    "contraindicated": (409, "A screening on record names a contraindication the service "
                             "type declares."),
    "session_not_over": (409, "A session is completed once its dose could have ended."),
    "not_ready_for_discharge": (409, "Discharge readings must be back within the clinic's "
                                     "watch limits (VITALS_ALERT_*)."),
    "vitals_out_of_order": (409, "Readings follow the session: before the dose, during at "
                                 "their minutes after it, discharge last."),
    # Every modality, the pill, and how to prepare
    "home_route_not_allowed": (422, "Only the pill (oral or sublingual) is taken at home."),
    "home_check_in_telehealth": (422, "A home protocol's visits are telehealth check-ins of a "
                                      "cleared patient."),
    "clinic_dose_in_chair": (422, "A dose in the clinic is given in person, in a chair, to a "
                                  "cleared patient."),
    "rems_route_mismatch": (422, "Intranasal esketamine, and only it, is given under the REMS."),
    "monitoring_too_short": (422, "A dose in the clinic is followed by its route's least "
                                  "monitoring time."),
    "reminder_wording_not_phi_free": (422, "A reminder wording names a drug, a diagnosis or a "
                                           "treatment."),
    "reminder_wording_not_gsm7": (422, "A reminder wording uses characters an SMS cannot "
                                       "carry."),
    "first_dose_in_clinic_required": (409, "The pill is taken at home only after a completed "
                                           "first dose in the clinic."),
    "protocol_service_mismatch": (422, "A home protocol's check-ins need an at-home service "
                                       "type, and an at-home service type a home protocol."),
    # Escalated alerts and the on-call rota
    "on_call_contact_not_found": (404, "No such on-call contact."),
    "contact_address_required": (422, "An on-call contact needs an email address or a "
                                      "phone number."),
    "sedation_score_required": (409, "After a sedation score below DISCHARGE_MOAAS during "
                                     "the session, the discharge reading gives one (MOAA/S)."),
    # Patient self-service and the waitlist
    "patient_notice_passed": (409, "A patient changes or cancels their own visit only up to "
                                   "the service type's patient_notice_hours before it; later, "
                                   "the clinic does (patient_changes_until)."),
    "waitlist_entry_not_found": (404, "No waitlist entry with this id (or not yours)."),
    "waitlist_offer_not_found": (404, "No waitlist offer with this id (or not yours)."),
    "offer_not_open": (409, "The offer was already accepted, declined or expired."),
    "offer_expired": (409, "The offer's hold ran out; the slot went to the next patient."),
    "waitlist_entry_closed": (409, "The waitlist entry is no longer waiting (filled, expired "
                                   "or withdrawn)."),
    # Connected calendars (service/domain/connections)
    "calendar_connection_not_found": (404, "No such connected calendar for this provider."),
    "calendar_url_not_allowed": (422, "The calendar address is not http(s), holds credentials, "
                                      "or points at an internal address."),
    "calendar_secrets_unavailable": (409, "CALENDAR_SECRET_KEY is not set (or does not open a "
                                          "stored secret): addresses cannot be stored."),
    "busy_outside_window": (422, "A pushed busy interval starts outside the window it "
                                 "replaces."),
    "not_a_push_connection": (422, "Only a push connection takes busy intervals through the "
                                   "API."),
}

_HTTP_CODES = {
    400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
    412: "precondition_failed", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "validation_failed",
    428: "precondition_required", 429: "rate_limited", 503: "service_unavailable",
}


class CodedMessage(str):
    """A validation message that carries its machine code (see ``field_errors``)."""

    code: str

    def __new__(cls, message: str, code: str) -> CodedMessage:
        instance = super().__new__(cls, message)
        instance.code = code
        return instance


def problem(status: int, code: str, title: str, detail: str | None = None,
            headers: dict[str, str] | None = None, **extras: Any) -> Response:
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = request.path if request else None
    request_id = getattr(g, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    if request:
        g.problem_code = code  # for the request's metrics and log line
    body.update(extras)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def field_errors(messages: Any, location: str | None = None, path: tuple[str, ...] = ()
                 ) -> list[dict[str, Any]]:
    """Flatten webargs/marshmallow messages into [{location, field, message, code}]."""
    flat: list[dict[str, Any]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if location is None:
                flat.extend(field_errors(value, str(key), ()))
            else:
                flat.extend(field_errors(value, location, (*path, str(key))))
    elif isinstance(messages, list | tuple):
        for item in messages:
            if isinstance(item, dict | list):
                flat.extend(field_errors(item, location, path))
            else:
                flat.append({
                    "location": location or "body",
                    "field": ".".join(path) or None,
                    "message": str(item),
                    "code": getattr(item, "code", "invalid"),
                })
    else:
        flat.append({"location": location or "body", "field": ".".join(path) or None,
                     "message": str(messages), "code": getattr(messages, "code", "invalid")})
    return flat


def _validation_problem(exc: HTTPException) -> Response:
    data = getattr(exc, "data", {}) or {}
    messages = data.get("messages") or data.get("errors") or {}
    errors = field_errors(messages)
    if exc.code == 400:
        coded = [e for e in errors if e["code"] != "invalid"]
        return problem(400, coded[0]["code"] if coded else "malformed_json",
                       "Malformed request body",
                       coded[0]["message"] if coded else "The request body is not valid JSON.",
                       errors=errors)
    specific = {e["code"] for e in errors} - {"invalid"}
    code = specific.pop() if len(specific) == 1 and all(
        e["code"] != "invalid" for e in errors) else "validation_failed"
    return problem(422, code, "Invalid request", "Some fields are invalid; see errors.",
                   errors=errors, headers=data.get("headers"))


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status >= 500:
        if isinstance(exc, InternalServerError) and exc.original_exception is not None:
            return handle_unexpected(exc.original_exception)
        return problem(status, _HTTP_CODES.get(status, "internal_error"), exc.name)
    data = getattr(exc, "data", None) or {}
    if status in (400, 422) and ("messages" in data or "errors" in data):
        return _validation_problem(exc)
    headers = dict(data.get("headers") or {})
    if status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    detail = data.get("message") or exc.description
    return problem(status, _HTTP_CODES.get(status, "bad_request"), exc.name, detail,
                   headers=headers)


def handle_domain_error(exc: domain.DomainError) -> Response:
    status = next((s for cls, s in STATUS_BY_CATEGORY.items() if isinstance(exc, cls)), 400)
    headers = {"WWW-Authenticate": 'Bearer realm="api"'} if status == 401 else {}
    extras = dict(exc.extras)
    retry_after = extras.pop("retry_after", None)  # seconds: a header, not a body member
    if retry_after is not None:
        headers["Retry-After"] = str(int(retry_after))
    return problem(status, exc.code, exc.title, exc.detail, headers=headers,
                   **_json_safe(extras))


RESERVED = frozenset({"type", "title", "status", "code", "detail", "instance", "request_id"})


def _json_safe(extras: dict[str, Any]) -> dict[str, Any]:
    """Extension members of a problem, never overriding the standard ones."""
    kept = {k: v for k, v in extras.items() if k not in RESERVED}
    return json.loads(json.dumps(kept, default=str))


def database_unavailable(exc: BaseException, *, during: str = "") -> Response:
    """503 ``database_unavailable`` with Retry-After, and the request's one log line (the
    failure's type and SQLSTATE, never its message or a traceback). Marks the request so
    that its follow-up writes (audit row, Idempotency-Key bookkeeping) do not wait on the
    database a second time."""
    g.database_unavailable = True
    log.warning("database unavailable%s on %s %s (request %s): %s",
                f" ({during})" if during else "", request.method, request.url_rule or "-",
                getattr(g, "request_id", "-"), db.describe_failure(exc))
    retry_after = current_app.config["SETTINGS"].database_retry_after_seconds
    return problem(503, "database_unavailable", "Database unavailable",
                   "The database did not answer in time; retry after the number of seconds "
                   "in Retry-After.",
                   headers={"Retry-After": str(retry_after)})


def handle_database_error(exc: Exception) -> Response:
    if db.is_unavailable(exc):
        return database_unavailable(exc)
    return handle_unexpected(exc)


def to_problem(exc: BaseException) -> Response:
    """The problem+json answer to any exception, as the app's handlers would give it."""
    if isinstance(exc, domain.DomainError):
        return handle_domain_error(exc)
    if isinstance(exc, HTTPException):
        return handle_http_exception(exc)
    if isinstance(exc, sa_exc.DBAPIError | sa_exc.TimeoutError):
        return handle_database_error(exc)
    return handle_unexpected(exc)


def handle_unexpected(exc: BaseException) -> Response:
    # Log the type, the frames and the request id, never the message: exception messages
    # (a database error quoting a row, say) may carry patient data.
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unhandled %s on %s %s (request %s)\n%s", type(exc).__name__, request.method,
              request.url_rule, getattr(g, "request_id", "-"), frames)
    return problem(500, "internal_error", "Internal Server Error",
                   "An unexpected error occurred; it was logged with the request id.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(domain.DomainError, handle_domain_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(sa_exc.DBAPIError, handle_database_error)
    app.register_error_handler(sa_exc.TimeoutError, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected)
