"""The FHIR R4 read facade: ``/fhir/R4/{Appointment,Patient,Practitioner,Location,Schedule,
Slot}`` and the CapabilityStatement at ``/fhir/R4/metadata`` (no key needed).

Same API keys and access rules as ``/api/v1`` (a patient sees only their appointments and
record, a provider theirs). Answers are ``application/fhir+json``: searches are ``searchset``
Bundles, reads are the resource (``W/"<version>"`` ETag; If-None-Match answers 304).
Unknown or unsupported search parameters are ignored unless ``Prefer: handling=strict``
(see ``service.domain.fhir.search``). Errors are FHIR ``OperationOutcome`` resources with the
same HTTP status as the rest of the API and the service's stable problem code in
``issue[].details.coding`` (system ``<base>/problems``); this blueprint's error handler
converts the problem+json the shared error mapping produced, so statuses and codes stay in
one place.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import marshmallow as ma
from flask import Blueprint as FlaskBlueprint
from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import abort
from werkzeug.exceptions import MethodNotAllowed

from service import errors
from service.auth import authorize
from service.db import utcnow
from service.domain.errors import NotFound
from service.domain.fhir import capability, mapping
from service.domain.fhir import services as fhir
from service.domain.fhir.policy import policy
from service.domain.fhir.search import result_parameters
from service.domain.records import Page
from service.extensions import ERROR_HEADERS, Blueprint, current_actor, unit_of_work
from service.resources.common import not_modified
from service.resources.fhir.schemas import (
    AppointmentSearchSchema,
    FhirAppointmentBundleSchema,
    FhirAppointmentSchema,
    FhirCapabilityStatementSchema,
    FhirLocationBundleSchema,
    FhirLocationSchema,
    FhirOperationOutcomeSchema,
    FhirPatientBundleSchema,
    FhirPatientSchema,
    FhirPractitionerBundleSchema,
    FhirPractitionerSchema,
    FhirScheduleBundleSchema,
    FhirScheduleSchema,
    FhirSlotBundleSchema,
    LocationSearchSchema,
    PatientSearchSchema,
    PractitionerSearchSchema,
    ScheduleSearchSchema,
    SlotSearchSchema,
)

FHIR_JSON = "application/fhir+json"
# Unknown parameters are left out here and handled by ``_search`` (ignored, or refused
# under Prefer: handling=strict).
QUERY = {"location": "query", "unknown": ma.EXCLUDE}

blp = Blueprint(
    "fhir", __name__, url_prefix="/fhir/R4",
    description="FHIR R4 read facade for EHR integrations (application/fhir+json): "
                "Appointment (search by patient, practitioner, date, status; read), "
                "Patient and Location (so an Appointment's references resolve), "
                "Practitioner, Schedule (one per provider), Slot (free slots computed by the "
                "slot search); the CapabilityStatement at /fhir/R4/metadata (no key). Same "
                "API keys and access rules as /api/v1. Unknown or unsupported search "
                "parameters are ignored (and named in an OperationOutcome entry of the "
                "Bundle) unless the request says `Prefer: handling=strict`. Errors are "
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


# Searches ----------------------------------------------------------------------------------


def prefers_strict() -> bool:
    """``Prefer: handling=strict`` (RFC 7240; FHIR's search handling preference)."""
    for header in request.headers.getlist("Prefer"):
        for preference in header.split(","):
            token = preference.split(";", 1)[0].replace(" ", "").replace('"', "").lower()
            if token == "handling=strict":
                return True
    return False


@functools.cache
def _known(schema: type[ma.Schema]) -> frozenset[str]:
    return frozenset(field.data_key or name for name, field in schema().fields.items())


@dataclass(frozen=True)
class Search:
    """A search's paging, summary and sort, and the query it was answered for."""

    page: int
    count: int
    summary_count: bool
    descending: bool
    ignored: tuple[str, ...]
    used: tuple[tuple[str, str], ...]  # the parameters applied, as sent (_count: as served)

    def url(self, page: int | None = None) -> str:
        query = [(k, v) for k, v in self.used if page is None or k != "_page"]
        if page is not None:
            query.append(("_page", str(page)))
        return f"{request.base_url}?{urlencode(query)}" if query else request.base_url


def _search(schema: type[ma.Schema], args: dict[str, Any], resource_type: str) -> Search:
    """Which parameters apply: unknown ones are refused under Prefer: handling=strict (422,
    as a validation error), else ignored like unsupported values (see
    ``service.domain.fhir.search``)."""
    known = _known(schema)
    unknown = [name for name in request.args if name not in known]
    strict = prefers_strict()
    if strict and unknown:
        abort(422, messages={"query": {name: ["Unknown search parameter."]
                                       for name in unknown}})
    result = result_parameters(capability.BY_TYPE[resource_type], count=args.get("count"),
                               summary=args.get("summary"), sort=args.get("sort"),
                               unknown=unknown, strict=strict)
    used = []
    for name, value in request.args.items(multi=True):
        if name not in known or name in result.ignored:
            continue
        if name == "_count" and value.isdigit() and int(value) > capability.MAX_COUNT:
            value = str(capability.MAX_COUNT)
        used.append((name, value))
    return Search(page=args.get("page", 1), count=result.count,
                  summary_count=result.summary_count, descending=result.descending,
                  ignored=result.ignored, used=tuple(used))


def _searchset(search: Search, resources: list[dict[str, Any]], *, total: int | None
               ) -> Response:
    if search.summary_count and total is not None:
        return fhir_response(mapping.summary_count(self_url=search.url(), total=total))
    next_url = None
    if total is not None and search.count and search.page * search.count < total:
        next_url = search.url(page=search.page + 1)
    return fhir_response(mapping.bundle(resources, base=_base(), self_url=search.url(),
                                        total=total, next_url=next_url,
                                        ignored=search.ignored))


def _paged(search: Search, page: Page[Any], to_resource: Callable[[Any], dict[str, Any]]
           ) -> Response:
    return _searchset(search, [to_resource(item) for item in page.items], total=page.total)


def _versioned(resource: dict[str, Any]) -> Response:
    """A read, with FHIR's weak ETag (its meta.versionId) for If-None-Match."""
    return fhir_response(resource,
                         headers={"ETag": f'W/"{resource["meta"]["versionId"]}"'})


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


@blp.route("/metadata")
class Capabilities(MethodView):
    @blp.doc(security=[], responses={200: {
        "description": "The CapabilityStatement",
        "content": {FHIR_JSON: {"schema": FhirCapabilityStatementSchema}}}})
    def get(self):
        """The server's CapabilityStatement: resources, interactions, search parameters
        (no key needed)"""
        return fhir_response(capability.capability_statement(
            base_url=_base(), software=current_app.config["API_TITLE"],
            version=current_app.config["API_VERSION"],
            cors=bool(current_app.config["SETTINGS"].cors_origins)))


@blp.route("/Appointment")
class Appointments(MethodView):
    @blp.arguments(AppointmentSearchSchema, **QUERY)
    @blp.doc(**_search_doc(FhirAppointmentBundleSchema))
    @blp.alt_response(400, response="BAD_REQUEST")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @authorize(policy, "search_appointments")
    def get(self, args):
        """Search appointments (patients: their own; providers: theirs)"""
        search = _search(AppointmentSearchSchema, args, "Appointment")
        page = fhir.search_appointments(
            unit_of_work(read_only=True), current_actor(), zone=_zone(), page=search.page,
            count=search.count, patient=args.get("patient"),
            practitioner=args.get("practitioner"), dates=args.get("date", []),
            statuses=args.get("status", []), ids=args.get("ids", []),
            descending=search.descending)
        return _paged(search, page, lambda row: row.resource())


@blp.route("/Appointment/<uuid:appointment_id>")
class AppointmentById(MethodView):
    @not_modified
    @blp.doc(**_read_doc(FhirAppointmentSchema, WEAK_ETAG_HEADER))
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read_appointment")
    def get(self, appointment_id: uuid.UUID):
        """Read an appointment"""
        row = fhir.read_appointment(unit_of_work(read_only=True), current_actor(),
                                    appointment_id)
        return _versioned(row.resource())


@blp.route("/Patient")
class Patients(MethodView):
    @blp.arguments(PatientSearchSchema, **QUERY)
    @blp.doc(**_search_doc(FhirPatientBundleSchema))
    @blp.alt_response(400, response="BAD_REQUEST")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @authorize(policy, "search_patients")
    def get(self, args):
        """Search patients (patients: themselves; providers: those they have visits with)"""
        search = _search(PatientSearchSchema, args, "Patient")
        page = fhir.search_patients(
            unit_of_work(read_only=True), current_actor(), page=search.page,
            count=search.count, identifier=args.get("identifier"), name=args.get("name"),
            ids=args.get("ids", []))
        return _paged(search, page, mapping.patient)


@blp.route("/Patient/<uuid:patient_id>")
class PatientById(MethodView):
    @not_modified
    @blp.doc(**_read_doc(FhirPatientSchema, WEAK_ETAG_HEADER))
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read_patient")
    def get(self, patient_id: uuid.UUID):
        """Read a patient (patients: themselves; providers: those they have visits with)"""
        patient = fhir.read_patient(unit_of_work(read_only=True), current_actor(), patient_id)
        return _versioned(mapping.patient(patient))


@blp.route("/Practitioner")
class Practitioners(MethodView):
    @blp.arguments(PractitionerSearchSchema, **QUERY)
    @blp.doc(**_search_doc(FhirPractitionerBundleSchema))
    @blp.alt_response(400, response="BAD_REQUEST")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @authorize(policy, "search_practitioners")
    def get(self, args):
        """Search practitioners (by name, NPI identifier, active)"""
        search = _search(PractitionerSearchSchema, args, "Practitioner")
        page = fhir.search_practitioners(
            unit_of_work(read_only=True), page=search.page, count=search.count,
            name=args.get("name"), identifier=args.get("identifier"),
            active=args.get("active"), ids=args.get("ids", []))
        return _paged(search, page, mapping.practitioner)


@blp.route("/Practitioner/<uuid:practitioner_id>")
class PractitionerById(MethodView):
    @not_modified
    @blp.doc(**_read_doc(FhirPractitionerSchema, WEAK_ETAG_HEADER))
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read_practitioner")
    def get(self, practitioner_id: uuid.UUID):
        """Read a practitioner"""
        provider = fhir.read_practitioner(unit_of_work(read_only=True), practitioner_id)
        return _versioned(mapping.practitioner(provider))


@blp.route("/Location")
class Locations(MethodView):
    @blp.arguments(LocationSearchSchema, **QUERY)
    @blp.doc(**_search_doc(FhirLocationBundleSchema))
    @blp.alt_response(400, response="BAD_REQUEST")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @authorize(policy, "search_locations")
    def get(self, args):
        """Search locations (the clinic's sites and the telehealth location)"""
        search = _search(LocationSearchSchema, args, "Location")
        page = fhir.search_locations(
            unit_of_work(read_only=True), page=search.page, count=search.count,
            identifier=args.get("identifier"), name=args.get("name"),
            ids=args.get("ids", []))
        return _paged(search, page, mapping.location)


@blp.route("/Location/<uuid:location_id>")
class LocationById(MethodView):
    @not_modified
    @blp.doc(**_read_doc(FhirLocationSchema, WEAK_ETAG_HEADER))
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read_location")
    def get(self, location_id: uuid.UUID):
        """Read a location"""
        location = fhir.read_location(unit_of_work(read_only=True), location_id)
        return _versioned(mapping.location(location))


@blp.route("/Schedule")
class Schedules(MethodView):
    @blp.arguments(ScheduleSearchSchema, **QUERY)
    @blp.doc(**_search_doc(FhirScheduleBundleSchema))
    @blp.alt_response(400, response="BAD_REQUEST")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @authorize(policy, "search_schedules")
    def get(self, args):
        """Search schedules (one per provider; by actor, active)"""
        search = _search(ScheduleSearchSchema, args, "Schedule")
        page = fhir.search_schedules(
            unit_of_work(read_only=True), page=search.page, count=search.count,
            actor_ref=args.get("actor"), active=args.get("active"), ids=args.get("ids", []))
        return _paged(search, page, mapping.schedule)


@blp.route("/Schedule/<uuid:schedule_id>")
class ScheduleById(MethodView):
    @blp.doc(**_read_doc(FhirScheduleSchema))
    @blp.alt_response(404, response="NOT_FOUND")
    @authorize(policy, "read_schedule")
    def get(self, schedule_id: uuid.UUID):
        """Read a schedule (a provider's)"""
        provider = fhir.read_practitioner(unit_of_work(read_only=True), schedule_id)
        return fhir_response(mapping.schedule(provider))


@blp.route("/Slot")
class Slots(MethodView):
    @blp.arguments(SlotSearchSchema, **QUERY)
    @blp.doc(**_search_doc(FhirSlotBundleSchema))
    @blp.alt_response(400, response="BAD_REQUEST")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @authorize(policy, "search_slots")
    def get(self, args):
        """Search free slots (computed by the slot search; at most _count, earliest first)

        Narrow `start` to page: the Bundle has no total and no next link.
        """
        search = _search(SlotSearchSchema, args, "Slot")
        rows = fhir.search_slots(
            unit_of_work(read_only=True), current_actor(), now=utcnow(), zone=_zone(),
            count=search.count, schedule=args.get("schedule"),
            service_types=args.get("service_type", []), starts=args.get("start", []),
            status=args.get("status"))
        return _searchset(search, [row.resource() for row in rows], total=None)


def _unsupported(rest: str) -> Response:
    if request.method != "GET":  # the facade is read-only
        raise MethodNotAllowed(valid_methods=["GET"])
    raise NotFound("This FHIR facade serves Appointment, Patient, Practitioner, Location, "
                   "Schedule and Slot (see /fhir/R4/metadata).", code="not_found")


# Undocumented on purpose (flask's add_url_rule, not flask-smorest's): every other path and
# method under /fhir/R4 answers an OperationOutcome too (werkzeug falls through to this
# rule when a resource's rule matches the path but not the method).
FlaskBlueprint.add_url_rule(blp, "/<path:rest>", "unsupported", _unsupported,
                            methods=["GET", "POST", "PUT", "PATCH", "DELETE"])


def _operation_outcome(exc: Exception) -> Response:
    problem = errors.to_problem(exc)
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
