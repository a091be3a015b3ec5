"""The FHIR R4 read facade: ``/fhir/R4/{Appointment,Practitioner,Schedule,Slot}``.

Same API keys and access rules as ``/api/v1`` (a patient sees only their appointments, a
provider theirs). Answers are ``application/fhir+json``: searches are ``searchset``
Bundles, reads are the resource. Errors are FHIR ``OperationOutcome`` resources with the
same HTTP status as the rest of the API and the service's stable problem code in
``issue[].details.coding`` (system ``<base>/problems``); this blueprint's error handler
converts the problem+json the shared error mapping produced, so statuses and codes stay in
one place.
"""

from __future__ import annotations

import json
import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint as FlaskBlueprint
from flask import Response, current_app, request
from flask.views import MethodView
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from service import errors
from service.auth import ALL_ROLES, requires
from service.db import utcnow
from service.domain.errors import DomainError, NotFound
from service.domain.fhir import mapping
from service.domain.fhir import services as fhir
from service.domain.records import Page
from service.extensions import ERROR_HEADERS, Blueprint, current_actor, unit_of_work
from service.resources.fhir.schemas import (
    AppointmentSearchSchema,
    FhirAppointmentBundleSchema,
    FhirAppointmentSchema,
    FhirOperationOutcomeSchema,
    FhirPractitionerBundleSchema,
    FhirPractitionerSchema,
    FhirScheduleBundleSchema,
    FhirScheduleSchema,
    FhirSlotBundleSchema,
    PractitionerSearchSchema,
    ScheduleSearchSchema,
    SlotSearchSchema,
)

FHIR_JSON = "application/fhir+json"
STRICT = {"location": "query", "unknown": "raise"}

blp = Blueprint(
    "fhir", __name__, url_prefix="/fhir/R4",
    description="FHIR R4 read facade for EHR integrations (application/fhir+json): "
                "Appointment (search by patient, practitioner, date, status; read), "
                "Practitioner, Schedule (one per provider), Slot (free slots computed by the "
                "slot search). Same API keys and access rules as /api/v1. Errors are "
                "OperationOutcome resources carrying the service's problem code.")


def _operation_outcome_docs(doc: dict[str, Any], _info: dict[str, Any], **_: Any
                            ) -> dict[str, Any]:
    """Document every error answer of this blueprint as the OperationOutcome it is."""
    for status in list(doc.get("responses", {})):
        if status == "default" or int(status) >= 400:
            phrase = "Error" if status == "default" else HTTPStatus(int(status)).phrase
            doc["responses"][status] = {
                "description": f"{phrase}: an OperationOutcome (the problem code in "
                               "issue[].details.coding)",
                "content": {FHIR_JSON: {"schema": FhirOperationOutcomeSchema}}}
            if status != "default" and int(status) in ERROR_HEADERS:
                doc["responses"][status]["headers"] = ERROR_HEADERS[int(status)]
    return doc


blp._prepare_doc_cbks.append(_operation_outcome_docs)


def _zone() -> str:
    return current_app.config["SETTINGS"].clinic_timezone


def _base() -> str:
    return f"{request.url_root.rstrip('/')}/fhir/R4"


def fhir_response(resource: dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(resource), status=status, mimetype=FHIR_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _searchset(resources: list[dict[str, Any]], *, total: int | None,
               page: int | None = None, count: int | None = None) -> Response:
    next_url = None
    if page is not None and count is not None and total is not None and page * count < total:
        query = [(k, v) for k, v in request.args.items(multi=True) if k != "_page"]
        next_url = f"{request.base_url}?{urlencode([*query, ('_page', page + 1)])}"
    return fhir_response(mapping.bundle(resources, base=_base(), self_url=request.url,
                                        total=total, next_url=next_url))


def _paged(page: Page[Any], to_resource, args: dict[str, Any]) -> Response:  # type: ignore[no-untyped-def]
    return _searchset([to_resource(item) for item in page.items], total=page.total,
                      page=args["page"], count=args["count"])


def _search_doc(bundle: type) -> dict[str, Any]:
    return {"responses": {200: {"description": "A searchset Bundle",
                                "content": {FHIR_JSON: {"schema": bundle}}}}}


def _read_doc(resource: type, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": "The resource",
                              "content": {FHIR_JSON: {"schema": resource}}}
    if headers:
        answer["headers"] = headers
    return {"responses": {200: answer}}


WEAK_ETAG_HEADER = {"ETag": {"description": "The resource's version (meta.versionId) as a "
                                            "weak ETag",
                             "schema": {"type": "string", "example": 'W/"1"'}}}


@blp.route("/Appointment")
class Appointments(MethodView):
    @blp.arguments(AppointmentSearchSchema, **STRICT)
    @blp.doc(**_search_doc(FhirAppointmentBundleSchema))
    @blp.alt_response(400, response="BAD_REQUEST")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @requires(*ALL_ROLES)
    def get(self, args):
        """Search appointments (patients: their own; providers: theirs)"""
        page = fhir.search_appointments(
            unit_of_work(read_only=True), current_actor(), zone=_zone(), page=args["page"],
            count=args["count"], patient=args.get("patient"),
            practitioner=args.get("practitioner"), dates=args.get("date", []),
            statuses=args.get("status", []), ids=args.get("ids", []))
        return _paged(page, lambda row: row.resource(), args)


@blp.route("/Appointment/<uuid:appointment_id>")
class AppointmentById(MethodView):
    @blp.doc(**_read_doc(FhirAppointmentSchema, WEAK_ETAG_HEADER))
    @blp.alt_response(404, response="NOT_FOUND")
    @requires(*ALL_ROLES)
    def get(self, appointment_id: uuid.UUID):
        """Read an appointment"""
        row = fhir.read_appointment(unit_of_work(read_only=True), current_actor(),
                                    appointment_id)
        resource = row.resource()
        return fhir_response(resource, headers={"ETag": f'W/"{row.booking.version}"'})


@blp.route("/Practitioner")
class Practitioners(MethodView):
    @blp.arguments(PractitionerSearchSchema, **STRICT)
    @blp.doc(**_search_doc(FhirPractitionerBundleSchema))
    @blp.alt_response(400, response="BAD_REQUEST")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @requires(*ALL_ROLES)
    def get(self, args):
        """Search practitioners (by name, NPI identifier, active)"""
        page = fhir.search_practitioners(
            unit_of_work(read_only=True), page=args["page"], count=args["count"],
            name=args.get("name"), identifier=args.get("identifier"),
            active=args.get("active"), ids=args.get("ids", []))
        return _paged(page, mapping.practitioner, args)


@blp.route("/Practitioner/<uuid:practitioner_id>")
class PractitionerById(MethodView):
    @blp.doc(**_read_doc(FhirPractitionerSchema))
    @blp.alt_response(404, response="NOT_FOUND")
    @requires(*ALL_ROLES)
    def get(self, practitioner_id: uuid.UUID):
        """Read a practitioner"""
        provider = fhir.read_practitioner(unit_of_work(read_only=True), practitioner_id)
        return fhir_response(mapping.practitioner(provider))


@blp.route("/Schedule")
class Schedules(MethodView):
    @blp.arguments(ScheduleSearchSchema, **STRICT)
    @blp.doc(**_search_doc(FhirScheduleBundleSchema))
    @blp.alt_response(400, response="BAD_REQUEST")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @requires(*ALL_ROLES)
    def get(self, args):
        """Search schedules (one per provider; by actor, active)"""
        page = fhir.search_schedules(
            unit_of_work(read_only=True), page=args["page"], count=args["count"],
            actor_ref=args.get("actor"), active=args.get("active"), ids=args.get("ids", []))
        return _paged(page, mapping.schedule, args)


@blp.route("/Schedule/<uuid:schedule_id>")
class ScheduleById(MethodView):
    @blp.doc(**_read_doc(FhirScheduleSchema))
    @blp.alt_response(404, response="NOT_FOUND")
    @requires(*ALL_ROLES)
    def get(self, schedule_id: uuid.UUID):
        """Read a schedule (a provider's)"""
        provider = fhir.read_practitioner(unit_of_work(read_only=True), schedule_id)
        return fhir_response(mapping.schedule(provider))


@blp.route("/Slot")
class Slots(MethodView):
    @blp.arguments(SlotSearchSchema, **STRICT)
    @blp.doc(**_search_doc(FhirSlotBundleSchema))
    @blp.alt_response(400, response="BAD_REQUEST")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @requires(*ALL_ROLES)
    def get(self, args):
        """Search free slots (computed by the slot search; at most _count, earliest first)

        Narrow `start` to page: the Bundle has no total and no next link.
        """
        rows = fhir.search_slots(
            unit_of_work(read_only=True), current_actor(), now=utcnow(), zone=_zone(),
            count=args["count"], schedule=args.get("schedule"),
            service_types=args.get("service_type", []), starts=args.get("start", []),
            status=args.get("status"))
        return _searchset([row.resource() for row in rows], total=None)


def _unsupported(rest: str) -> Response:
    if request.method != "GET":  # the facade is read-only
        raise MethodNotAllowed(valid_methods=["GET"])
    raise NotFound("This FHIR facade serves Appointment, Practitioner, Schedule and Slot.",
                   code="not_found")


# Undocumented on purpose (flask's add_url_rule, not flask-smorest's): every other path and
# method under /fhir/R4 answers an OperationOutcome too (werkzeug falls through to this
# rule when a resource's rule matches the path but not the method).
FlaskBlueprint.add_url_rule(blp, "/<path:rest>", "unsupported", _unsupported,
                            methods=["GET", "POST", "PUT", "PATCH", "DELETE"])


def _operation_outcome(exc: Exception) -> Response:
    if isinstance(exc, DomainError):
        problem = errors.handle_domain_error(exc)
    elif isinstance(exc, HTTPException):
        problem = errors.handle_http_exception(exc)
    else:
        problem = errors.handle_unexpected(exc)
    body = json.loads(problem.get_data(as_text=True))
    outcome = mapping.operation_outcome(
        problem.status_code, body["code"], body["title"], body.get("detail"),
        problems_url=f"{request.url_root.rstrip('/')}/problems",
        errors=body.get("errors") or ())
    headers = {name: value for name, value in problem.headers.items()
               if name in ("WWW-Authenticate", "Allow", "Retry-After")}
    return fhir_response(outcome, problem.status_code, headers)


blp.register_error_handler(Exception, _operation_outcome)


@blp.after_request
def _allow_only_the_resources_methods(response: Response) -> Response:
    """The automatic OPTIONS answer lists every rule matching the path, the catch-all's
    POST/PUT/PATCH/DELETE included; a resource allows only its own rule's methods."""
    rule = request.url_rule
    if (request.method == "OPTIONS" and rule is not None and rule.methods
            and rule.endpoint != f"{blp.name}.unsupported" and "Allow" in response.headers):
        response.headers["Allow"] = ", ".join(sorted(rule.methods))
    return response
