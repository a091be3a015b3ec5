"""flask-smorest building blocks shared by every resource area, and the per-request
access to the database."""

from __future__ import annotations

import functools
import http
import re
from collections.abc import Callable, Collection
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import marshmallow as ma
from apispec import BasePlugin
from flask import current_app, g, request
from flask_smorest import Api as BaseApi
from flask_smorest import Blueprint as BaseBlueprint
from flask_smorest.pagination import PaginationMetadataSchema
from werkzeug.datastructures import MultiDict

from service import errors
from service.domain.access.actor import Actor
from service.parsing import Integer, RequestParser
from service.rendering import LocalInstant, know_booking_locations
from service.transactions import (  # noqa: F401 - the resources' one import of them
    database,
    end_held_transaction,
    end_request_transaction,
    hold_request_transaction,
    request_reads,
    request_unit_of_work,
    settle_held_transaction,
    share_request_transaction,
    shares_request_transaction,
    statement_reads,
    unit_of_work,
)

# The last page a list serves: beyond it the offset is no use to anyone, and far beyond it
# (page=2**63) the database's integers overflow.
MAX_PAGE = 100_000


class ProblemFieldErrorSchema(ma.Schema):
    """One invalid field of a request (``errors[]`` of a problem)."""

    class Meta:
        unknown = ma.INCLUDE  # documented as open: a later release may add members

    location = ma.fields.String(metadata={"example": "json"})
    field = ma.fields.String(allow_none=True, metadata={"example": "timezone"})
    message = ma.fields.String(metadata={"example": "Unknown IANA time zone."})
    code = ma.fields.String(metadata={"example": "invalid_timezone"})


class ProblemAlternativeSchema(ma.Schema):
    """A free slot offered instead (``alternatives[]`` of a ``slot_unavailable`` problem)."""

    class Meta:
        unknown = ma.INCLUDE  # documented as open: a later release may add members
        ordered = True

    start = ma.fields.String(required=True, metadata={
        "format": "date-time", "example": "2026-12-01T10:30:00-07:00"})
    end = ma.fields.String(required=True, metadata={
        "format": "date-time", "example": "2026-12-01T11:30:00-07:00"})
    provider_id = ma.fields.UUID(required=True)
    location_id = ma.fields.UUID(required=True)


def _strings(description: str, **kwargs: Any) -> ma.fields.List:
    return ma.fields.List(ma.fields.String(), metadata={"description": description}, **kwargs)


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details; ``code`` is stable and machine-readable.

    Open (RFC 9457 section 3.2): the members below after ``errors`` are the extension
    members some codes carry; a client ignores members it does not know.
    """

    class Meta:
        unknown = ma.INCLUDE  # -> additionalProperties: true
        ordered = True

    type = ma.fields.String(required=True, metadata={"example": "/problems/validation_failed"})
    title = ma.fields.String(required=True, metadata={"example": "Invalid request"})
    status = ma.fields.Integer(required=True, metadata={"example": 422})
    code = ma.fields.String(required=True, metadata={"example": "validation_failed"})
    detail = ma.fields.String()
    instance = ma.fields.String(allow_none=True, metadata={"example": "/api/v1/providers"})
    request_id = ma.fields.String()
    errors = ma.fields.List(ma.fields.Nested(ProblemFieldErrorSchema), metadata={
        "description": "The invalid fields (validation_failed, implausible_vitals, ...)"})
    # Extension members, by the codes that carry them.
    alternatives = ma.fields.List(ma.fields.Nested(ProblemAlternativeSchema), metadata={
        "description": "slot_unavailable: the next free slots"})
    occurrences = ma.fields.List(ma.fields.Dict(), metadata={
        "description": "series_conflict: each session's status and nearest alternative"})
    bookable = ma.fields.Boolean(metadata={"description": "series_conflict: always false"})
    current_version = ma.fields.Integer(metadata={
        "description": "precondition_failed: the version the record is at now (its ETag is "
                       "\"v<current_version>\")"})
    allowed_roles = _strings("forbidden: the roles that may do this")
    # (data_key: ``fields`` and ``unknown`` are attribute names of a marshmallow Schema)
    fields_ = _strings("field_not_editable: the fields the caller may not change; "
                       "read_only_field: the read-only fields sent with another value",
                       data_key="fields")
    booking_status = ma.fields.String(metadata={
        "description": "invalid_transition: the booking's status"})
    allowed_from = _strings("invalid_transition: the statuses that allow the action")
    reminder_status = ma.fields.String(metadata={
        "description": "reminder_not_retryable: the reminder's status"})
    missing = _strings("address_required, rems_requirements_not_met, "
                       "session_vitals_incomplete: what is missing")
    inactive = _strings("not_bookable: which of provider, patient, service_type, location "
                        "is inactive")
    clearance = ma.fields.String(metadata={
        "description": "clearance_required: the patient's latest clearance decision"})
    earliest = ma.fields.String(metadata={
        "description": "outside_booking_window, protocol_not_satisfiable: the earliest "
                       "allowed start or day"})
    latest = ma.fields.String(metadata={
        "description": "outside_booking_window, protocol_not_satisfiable: the latest "
                       "allowed start or day"})
    problems = _strings("protocol_not_satisfiable: why the days break the protocol")
    location_ids = _strings("location_required: the locations that offer the service")
    planned_sessions = ma.fields.Integer(metadata={
        "description": "series_complete: the sessions the series plans"})
    max_days = ma.fields.Integer(metadata={
        "description": "range_too_long, rrule_too_long: the longest range allowed"})
    max_occurrences = ma.fields.Integer(metadata={
        "description": "rrule_too_long: the most sessions a series holds"})
    expected_items = ma.fields.Integer(metadata={
        "description": "invalid_answers: how many answers the instrument has"})
    field = ma.fields.String(metadata={"description": "invalid_input: the field at fault"})
    day = ma.fields.String(metadata={"description": "invalid_input: the day at fault"})
    location_id = ma.fields.String(metadata={
        "description": "invalid_input: the location at fault"})
    unknown_ = _strings("invalid_input (webhook events): the unknown event names",
                        data_key="unknown")
    parameter = ma.fields.String(metadata={
        "description": "invalid_search_parameter: the FHIR search parameter at fault"})


def _header(description: str, **schema: Any) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string", **schema}}


RETRY_AFTER_HEADER = {"Retry-After": _header("Seconds to wait before retrying", example="5")}
IDEMPOTENT_REPLAYED_HEADER = {"Idempotent-Replayed": _header(
    "`true` when this is the stored answer to an earlier request with the same "
    "Idempotency-Key", enum=["true"])}
# Headers the shared error mapping sends with some statuses.
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": _header("The scheme to authenticate with",
                                      example='Bearer realm="api"')},
    405: {"Allow": _header("The methods the resource allows", example="GET, POST")},
    429: RETRY_AFTER_HEADER,
    503: RETRY_AFTER_HEADER,
}

PAGINATION_HEADER = {
    "description": "Pagination metadata: a JSON object, e.g. "
                   '{"total": 3, "total_pages": 1, "first_page": 1, "last_page": 1, '
                   '"page": 1}',
    "content": {"application/json": {"schema": PaginationMetadataSchema}},
}

LINK_HEADER = {
    "description": "RFC 8288 links to the `first`, `prev`, `next` and `last` pages of the "
                   "list (relative to the request), the page size and every other query "
                   "parameter kept, e.g. "
                   '`</api/v1/bookings?page=2&page_size=10>; rel="next"`',
    "schema": {"type": "string"},
}


def page_links(path: str, query: MultiDict[str, str], page: int, last_page: int) -> str:
    """The ``Link`` header of a list's page: first, prev, next, last (RFC 8288)."""
    def url(number: int) -> str:
        args = [(k, v) for k, v in query.items(multi=True) if k != "page"]
        return f"{path}?{urlencode([*args, ('page', str(number))])}"

    last_page = max(last_page, 1)
    rels = [("first", 1)]
    if page > 1:
        rels.append(("prev", min(page - 1, last_page)))
    if page < last_page:
        rels.append(("next", page + 1))
    rels.append(("last", last_page))
    return ", ".join(f'<{url(number)}>; rel="{rel}"' for rel, number in rels)


HTTP_METHODS = frozenset({"get", "put", "post", "patch", "delete"})
WRITE_METHODS = frozenset({"put", "post", "patch", "delete"})


def shared_error_statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses any operation of this shape can answer, whatever its view does:
    the database behind authentication (503), the body parser (400 malformed JSON, 413 too
    large, 415 not JSON, 422), the path converters (404) and the unit of work on writes
    (409: a constraint or concurrent change)."""
    statuses: set[int] = set()
    if path.startswith(("/api/", "/fhir/")):
        statuses.add(503)
        if method in WRITE_METHODS:
            statuses.add(409)
    if "requestBody" in operation:
        statuses |= {400, 413, 415, 422}
    if "{" in path:
        statuses.add(404)
    return statuses


class ErrorResponsesPlugin(BasePlugin):
    """Documents on each operation the shared error statuses (``shared_error_statuses``),
    in the form of the operation's default error response (problem+json, or the FHIR
    facade's OperationOutcome)."""

    def operation_helper(self, path: str | None = None,
                         operations: dict[str, Any] | None = None, **kwargs: Any) -> None:
        for method, operation in (operations or {}).items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            default = responses.get("default")
            for status in sorted(shared_error_statuses(path or "", method, operation)):
                if status not in responses and str(status) not in responses:
                    responses[status] = self._like(default, http.HTTPStatus(status))

    @staticmethod
    def _like(default: Any, status: http.HTTPStatus) -> Any:
        if not isinstance(default, dict):  # the shared component of that status
            return status.name
        # "<phrase>: <what the body is>", as the default's "Error: <what the body is>"
        what = str(default.get("description", "")).split(": ", 1)[-1]
        response = {**default, "description": f"{status.phrase}: {what}"}
        if status in ERROR_HEADERS:
            response["headers"] = {**response.get("headers", {}), **ERROR_HEADERS[status]}
        return response


# Path prefixes that do not name anything (the API's version, the FHIR facade's release).
_PREFIXES = (("api", "v1"), ("fhir", "R4"))
_NOT_PLURAL = frozenset({"series", "sms", "vitals", "time-off", "availability", "screening",
                         "telehealth", "holds", "audit", "me"})


def _camel(segment: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_.]", segment))


def _singular(noun: str) -> str:
    if noun in _NOT_PLURAL:
        return noun
    if noun.endswith("ies"):
        return noun[:-3] + "y"
    return noun[:-1] if noun.endswith("s") else noun


def derive_operation_id(path: str, method: str, operation: dict[str, Any],
                        siblings: Collection[str] = ()) -> str:
    """A readable camelCase operationId from the path (the stable part of the contract):
    ``GET /bookings`` listBookings, ``POST /bookings`` createBooking, ``GET /bookings/{id}``
    getBooking, ``POST /bookings/{id}/confirm`` confirmBooking, ``GET
    /providers/{id}/licenses`` listProviderLicenses, ``GET /fhir/R4/Patient``
    searchFhirPatients (``siblings``: the path's other methods). ``OPERATION_IDS`` names
    the operations whose path does not say it well."""
    segments = [s for s in path.split("/") if s]
    fhir = tuple(segments[:2]) == _PREFIXES[1]
    if tuple(segments[:2]) in _PREFIXES:
        segments = segments[2:]
    # Each noun, singular when a parameter names one of it ({id} follows it).
    nouns: list[str] = []
    for i, segment in enumerate(segments):
        if segment.startswith("{"):
            continue
        named = i + 1 < len(segments) and segments[i + 1].startswith("{")
        nouns.append(_singular(segment) if named else segment)
    item = bool(segments) and segments[-1].startswith("{")
    if fhir:
        base = "Fhir" + _camel(nouns[-1])
        return ("read" + base) if item else ("search" + base + "s")
    responses = operation.get("responses", {})
    ok = responses.get("200", responses.get(200, {}))
    schema = ok.get("content", {}).get("application/json", {}).get("schema", {}) \
        if isinstance(ok, dict) else {}
    if item:
        verb = {"get": "get", "patch": "update", "put": "replace",
                "delete": "delete"}.get(method, method)
        return verb + "".join(map(_camel, nouns))
    owner = "".join(_camel(_singular(n)) for n in nouns[:-1])
    last = nouns[-1]
    if method == "get":
        listed = isinstance(schema, dict) and schema.get("type") == "array"
        return ("list" if listed else "get") + owner + _camel(last)
    if method == "post" and (last.endswith("s") or "get" in siblings):
        return "create" + owner + _camel(_singular(last))
    if method == "post":  # an action on the resource before it: confirm, cancel, ...
        return _camel(last)[:1].lower() + _camel(last)[1:] + owner
    verb = {"put": "replace", "patch": "update", "delete": "delete"}.get(method, method)
    return verb + owner + _camel(last)


# Explicit names, where the derived one would not read well; never rename one (generated
# clients call them by these names).
OPERATION_IDS: dict[tuple[str, str], str] = {
    ("get", "/api/v1/slots"): "searchSlots",
    ("get", "/api/v1/licenses/expiring"): "listExpiringLicenses",
    ("post", "/api/v1/bookings/{booking_id}/no-show"): "markBookingNoShow",
    ("post", "/api/v1/inbound/sms"): "receiveInboundSms",
    ("get", "/api/v1/calendars/{token}.ics"): "getCalendarFeed",
    ("get", "/api/v1/sync/bookings"): "syncBookings",
    ("post", "/api/v1/bookings/{booking_id}/telehealth/consent"): "recordTelehealthConsent",
    ("post", "/api/v1/bookings/{booking_id}/telehealth/check-in"): "checkInTelehealth",
    ("post", "/api/v1/bookings/{booking_id}/telehealth/prescribing"):
        "recordTelehealthPrescribing",
    ("post", "/api/v1/bookings/{booking_id}/holds/override"): "overrideBookingHolds",
    ("get", "/api/v1/audit"): "listAuditEvents",
    ("delete", "/api/v1/api-keys/{key_id}"): "revokeApiKey",
    ("get", "/fhir/R4/metadata"): "readFhirCapabilities",
    ("get", "/healthz"): "checkLiveness",
    ("get", "/readyz"): "checkReadiness",
}


class OperationIdPlugin(BasePlugin):
    """Gives every operation a camelCase ``operationId``: the one a view declared
    (``@blp.doc(operationId=...)``), else ``OPERATION_IDS``, else ``derive_operation_id``."""

    def operation_helper(self, path: str | None = None,
                         operations: dict[str, Any] | None = None, **kwargs: Any) -> None:
        for method, operation in (operations or {}).items():
            if method in HTTP_METHODS:
                operation.setdefault("operationId", OPERATION_IDS.get(
                    (method, path or ""),
                    derive_operation_id(path or "", method, operation, set(operations or ()))))


# The schemas a request body is read with, and those they nest (``Blueprint.arguments``):
# their fields are required in the document only as their ``required=True`` says.
REQUEST_SCHEMAS: set[type[ma.Schema]] = set()


def note_request_schema(schema: ma.Schema | type[ma.Schema]) -> None:
    cls = schema if isinstance(schema, type) else type(schema)
    if cls in REQUEST_SCHEMAS:
        return
    REQUEST_SCHEMAS.add(cls)
    fields = list((schema() if isinstance(schema, type) else schema).fields.values())
    while fields:
        field = fields.pop()
        if isinstance(field, ma.fields.Nested):
            note_request_schema(field.schema)
        elif isinstance(field, ma.fields.List):
            fields.append(field.inner)


class RequiredFieldsPlugin(BasePlugin):
    """Marks in the document, as ``required``, the fields an answer always has, so typed
    clients need not treat them as maybe unset:

    - every ``dump_only`` (``readOnly``) field: OpenAPI applies ``required`` on a read-only
      property to responses only, so a request schema does not get stricter;
    - every field of the app's response-only schemas (``Schema`` subclasses that no
      request body is read with).

    ``Meta.dump_required`` decides otherwise for a schema whose answers may leave members
    out: false (only what ``required=True`` says) or the tuple of the members always there.
    (It also gives enum members their ``type: string``, which ``ma.fields.Enum`` leaves out.)
    Schemas of other bases (the FHIR facade's, ``ProblemSchema``) say ``required=True``
    themselves."""

    def schema_helper(self, name: str, definition: dict[str, Any], **kwargs: Any
                      ) -> dict[str, Any] | None:
        schema = kwargs.get("schema")
        if schema is None:
            return None
        cls = schema if isinstance(schema, type) else type(schema)
        chosen = getattr(cls.Meta, "dump_required", True)
        whole = issubclass(cls, Schema) and cls not in REQUEST_SCHEMAS and chosen is True
        required = list(definition.get("required", []))
        for field_name, prop in definition.get("properties", {}).items():
            values = [v for v in prop.get("enum", ()) if v is not None]
            if "type" not in prop and values and all(isinstance(v, str) for v in values):
                prop["type"] = "string"  # ma.fields.Enum leaves it out; generators want it
            if field_name in required:
                continue
            if (field_name in chosen) if isinstance(chosen, tuple) else (
                    whole or (chosen and prop.get("readOnly"))):
                required.append(field_name)
        return {"required": required} if required else None


class Api(BaseApi):
    ERROR_SCHEMA = ProblemSchema

    def _init_spec(self, *, extra_plugins: Any = None, **kwargs: Any) -> None:
        super()._init_spec(extra_plugins=[*(extra_plugins or ()), ErrorResponsesPlugin(),
                                                         OperationIdPlugin(),
                                                         RequiredFieldsPlugin()],
                           **kwargs)

    def handle_http_exception(self, error):  # type: ignore[no-untyped-def,override]
        return errors.handle_http_exception(error)

    def _register_responses(self) -> None:
        """Document every error response as ``application/problem+json``, with the headers
        the shared error mapping sends along."""
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["content"] = {
                    errors.PROBLEM_JSON: {"schema": self.ERROR_SCHEMA}
                }
                headers = dict(ERROR_HEADERS.get(status, {}))
                if status < 500:
                    headers.update(IDEMPOTENT_REPLAYED_HEADER)
                if headers:
                    response["headers"] = headers
            elif status is http.HTTPStatus.NOT_MODIFIED:  # a conditional read's 304
                response["headers"] = {"ETag": {
                    "description": "The current version's tag (the one If-None-Match named)",
                    "schema": {"type": "string"}}}
            self.spec.components.response(status.name, response, lazy=True)
        self.spec.components.response(
            "DEFAULT_ERROR",
            {"description": "Default error response",
             "content": {errors.PROBLEM_JSON: {"schema": self.ERROR_SCHEMA}}},
            lazy=True,
        )

    def _register_pagination_header(self) -> None:
        """``X-Pagination`` carries a JSON object (flask-smorest sends ``json.dumps`` of the
        metadata), so it is documented with ``content`` (OpenAPI 3.0.3, Header Object), not
        as a ``simple``-style object (``total,3,page,1``), which is not what is sent."""
        self.spec.components.header("PAGINATION", PAGINATION_HEADER, lazy=True)
        self.spec.components.header("LINK", LINK_HEADER, lazy=True)


class Blueprint(BaseBlueprint):
    """The blueprint class every resource area uses: its arguments are read by
    ``RequestParser`` (``service/parsing.py``), its lists stop at ``MAX_PAGE``."""

    ARGUMENTS_PARSER = RequestParser()
    PAGINATION_ARGUMENTS_PARSER = RequestParser()

    def arguments(self, schema: Any, *, location: str = "json", **kwargs: Any
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        if location in ("json", "form", "files"):
            note_request_schema(schema)
        return super().arguments(schema, location=location, **kwargs)

    def paginate(self, pager: Any = None, *, page: int | None = None,
                 page_size: int | None = None, max_page_size: int | None = None
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """flask-smorest's pagination, with ``page`` at most ``MAX_PAGE`` and both
        parameters whole numbers (``Integer``), documented as such."""
        defaults = self.DEFAULT_PAGINATION_PARAMETERS
        paginated = super().paginate(pager, page=page, page_size=page_size,
                                     max_page_size=max_page_size)
        bounded = type("PaginationParametersSchema", (ma.Schema,), {
            "Meta": type("Meta", (), {"unknown": ma.EXCLUDE}),
            "page": Integer(load_default=page or defaults["page"],
                            validate=ma.validate.Range(min=1, max=MAX_PAGE)),
            "page_size": Integer(load_default=page_size or defaults["page_size"],
                                 validate=ma.validate.Range(
                                     min=1, max=max_page_size or defaults["max_page_size"])),
        })

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            wrapper = paginated(view)
            wrapper._apidoc["pagination"]["parameters"]["schema"] = bounded  # type: ignore[attr-defined]

            @functools.wraps(wrapper)
            def checked(*args: Any, **kwargs: Any) -> Any:
                # Refuse what flask-smorest's own schema (read next) would let through.
                self.PAGINATION_ARGUMENTS_PARSER.parse(bounded, request, location="query")
                return wrapper(*args, **kwargs)

            return checked

        return decorator

    def _set_pagination_metadata(self, page_params: Any, result: Any,
                                 headers: Any) -> tuple[Any, Any]:
        """``X-Pagination`` (flask-smorest's), and beside it the RFC 8288 ``Link`` header."""
        result, headers = super()._set_pagination_metadata(page_params, result, headers)
        page_size, count = page_params.page_size, page_params.item_count
        headers["Link"] = page_links(request.path, request.args, page_params.page,
                                     (count - 1) // page_size + 1 if count else 1)
        return result, headers

    def _document_pagination_metadata(self, spec: Any, resp_doc: dict[str, Any]) -> None:
        super()._document_pagination_metadata(spec, resp_doc)
        resp_doc["headers"]["Link"] = "LINK"


def _reads_attribute_plainly(schema: ma.Schema, field: ma.fields.Field, name: str) -> bool:
    """Whether marshmallow reads this field's value as ``getattr(obj, name, missing)`` from
    an object that is not subscriptable (the field and the schema use marshmallow's own
    ``serialize``, ``get_value`` and ``get_attribute``; the name is no dotted path)."""
    key = name if field.attribute is None else field.attribute
    return (field._CHECK_ATTRIBUTE and "." not in key
            and type(field).serialize is ma.fields.Field.serialize
            and type(field).get_value is ma.fields.Field.get_value
            and type(schema).get_attribute is ma.Schema.get_attribute)


class Schema(ma.Schema):
    """Base for every schema: unknown fields are an error, field order kept.

    Dumping a record (not a mapping) reads each plain field's value with ``getattr`` here
    instead of through marshmallow's four nested calls per field, which end in that same
    ``getattr``; the field's own ``_serialize`` formats it as before, so the answer is the
    same (``tests/api/test_schema_dump.py`` compares both ways)."""

    class Meta:
        unknown = ma.RAISE
        ordered = True

    def _dump_plan(self) -> list[tuple[str, str, ma.fields.Field, str | None]]:
        """(answer key, field name, field, attribute read with getattr or None) per field."""
        plan: list[tuple[str, str, ma.fields.Field, str | None]] | None = (
            self.__dict__.get("_clinic_dump_plan"))
        if plan is None:
            plan = [(field.data_key if field.data_key is not None else name, name, field,
                     (name if field.attribute is None else field.attribute)
                     if _reads_attribute_plainly(self, field, name) else None)
                    for name, field in self.dump_fields.items()]
            self.__dict__["_clinic_dump_plan"] = plan
        return plan

    def _load_plan(self) -> tuple[frozenset[str], list[tuple[str, str, ma.fields.Field]]] | None:
        """(the input's known keys, (input key, answer key, field) per field) when a load
        of one dict is marshmallow's field by field and nothing else (no hooks, no dotted
        keys, not partial, not many); None otherwise."""
        plan = self.__dict__.get("_clinic_load_plan", False)
        if plan is False:
            hooks = self._hooks
            plain = not (self.many or self.partial or hooks[ma.decorators.PRE_LOAD]
                         or hooks[ma.decorators.POST_LOAD] or hooks[ma.decorators.VALIDATES]
                         or hooks[ma.decorators.VALIDATES_SCHEMA])
            fields = [(field.data_key if field.data_key is not None else name,
                       field.attribute or name, field)
                      for name, field in self.load_fields.items()]
            if any("." in key for _, key, _ in fields):
                plain = False
            plan = (frozenset(key for key, _, _ in fields), fields) if plain else None
            self.__dict__["_clinic_load_plan"] = plan
        return plan

    def _do_load(self, data: Any, *, many: bool | None = None, partial: Any = None,
                 unknown: str | None = None, postprocess: bool = True) -> Any:
        """marshmallow's load; for one valid dict given to a plain schema (``_load_plan``),
        each field's own ``deserialize`` called directly, without marshmallow's
        per-field and per-load bookkeeping (the same answer: the same fields, values and
        order). Anything else, and any input it refuses, goes through marshmallow's own
        load (which then raises the very errors it gathers)."""
        plan = self._load_plan()
        if (plan is not None and type(data) is dict and not many and partial is None
                and (unknown if unknown is not None else self.unknown) in (ma.RAISE,
                                                                          ma.EXCLUDE)):
            known, fields = plan
            if (unknown if unknown is not None else self.unknown) == ma.EXCLUDE or \
                    known.issuperset(data):
                answer = self.dict_class()
                missing = ma.missing
                try:
                    for key, attribute, field in fields:
                        value = field.deserialize(data.get(key, missing), key, data)
                        if value is not missing:
                            answer[attribute] = value
                except ma.ValidationError:
                    pass  # marshmallow's load below gathers every error, as always
                else:
                    return answer
        return super()._do_load(data, many=many, partial=partial, unknown=unknown,
                                postprocess=postprocess)

    def _serialize(self, obj: Any, *, many: bool = False) -> Any:
        if many and obj is not None:
            return [self._serialize(item, many=False) for item in obj]
        if hasattr(obj, "__getitem__"):  # a mapping, a row: marshmallow's own reading
            return super()._serialize(obj, many=False)
        answer = self.dict_class()
        missing = ma.missing
        for key, name, field, attribute in self._dump_plan():
            if attribute is None:
                value = field.serialize(name, obj, accessor=self.get_attribute)
            else:
                value = getattr(obj, attribute, missing)
                if value is missing:
                    default = field.dump_default
                    value = default() if callable(default) else default
                    if value is missing:
                        continue
                value = field._serialize(value, name, obj)
            if value is missing:
                continue
            answer[key] = value
        return answer

    @ma.pre_dump(pass_collection=True)
    def _know_booking_zones(self, data: Any, many: bool, **kwargs: Any) -> Any:
        """A list of records attached to bookings (reminders, readings, ...) shows their
        instants in the bookings' zones: read the bookings' locations at once."""
        if many and isinstance(data, list):
            know_booking_locations(data)
        return data


class RecordSchema(Schema):
    """The fields every stored record shows: id, timestamps, version (its ETag)."""

    id = ma.fields.UUID(dump_only=True)
    created_at = LocalInstant(dump_only=True)
    updated_at = LocalInstant(dump_only=True)
    version = ma.fields.Integer(dump_only=True)


class Changes(dict[str, Any]):
    """A PATCH body's changes; ``read_back`` holds the read-only fields it sent back as
    read (parsed), ``read_only_fields`` the schema's fields for them (to compare)."""

    read_back: dict[str, Any]
    read_only_fields: dict[str, ma.fields.Field]


class PartialUpdate:
    """Mixin for PATCH schemas: every field optional, nothing defaulted, but at least one
    field given (an empty PATCH is a client's mistake, not a successful no-op).

    A resource read by GET may be sent back whole: its read-only fields (``readOnly`` in
    the document: ``dump_only``) are set aside, never applied, and compared with the
    current record (``service.resources.common.check_read_back``): equal, ignored;
    different, 422 ``read_only_field``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("partial", True)
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]

    def load(self, data: Any, **kwargs: Any) -> Any:
        read_only = {name: field for name, field in
                     self.fields.items()  # type: ignore[attr-defined]
                     if field.dump_only}
        sent: dict[str, Any] = {}
        if isinstance(data, dict):
            keys = {field.data_key or name: name for name, field in read_only.items()}
            sent = {keys[key]: value for key, value in data.items() if key in keys}
            data = {key: value for key, value in data.items() if key not in keys}
        changes = Changes(super().load(data, **kwargs))  # type: ignore[misc]
        if not changes and not sent:
            raise ma.ValidationError({"_schema": [errors.CodedMessage(
                "Send at least one field to change.", "empty_update")]})
        read_back: dict[str, Any] = {}
        invalid: dict[str, Any] = {}
        for name, value in sent.items():
            try:
                read_back[name] = read_only[name].deserialize(value)
            except ma.ValidationError as error:
                invalid[read_only[name].data_key or name] = error.messages
        if invalid:
            raise ma.ValidationError(invalid)
        changes.read_back = read_back
        changes.read_only_fields = {name: read_only[name] for name in read_back}
        return changes


def current_actor() -> Actor:
    return g._get_current_object().actor  # type: ignore[attr-defined,no-any-return]


def clinic_today() -> date:
    """Today's date at the clinic (its zone decides when a license has expired)."""
    return datetime.now(ZoneInfo(current_app.config["SETTINGS"].clinic_timezone)).date()
