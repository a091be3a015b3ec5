"""HTTP conventions shared by the resource areas: ETags, If-Match, If-None-Match,
pagination."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import marshmallow as ma
from flask import Response, current_app, request
from flask.views import MethodView
from werkzeug.datastructures import Headers
from werkzeug.exceptions import PreconditionRequired

from service.auth import authorize
from service.domain.access.policy import Policy
from service.domain.errors import InvalidInput, PreconditionFailed
from service.domain.records import Page, Record
from service.extensions import Blueprint, current_actor, unit_of_work
from service.rendering import rendering_zone
from service.resources.idempotency import idempotent

IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": True,
    "description": "The ETag of the version you read (from GET), a strong entity tag "
                   "(RFC 9110). Missing: 428; stale, weak (W/...) or not one of ours: 412; "
                   "`*`: whatever version is current.",
    "schema": {"type": "string", "pattern": '^(\\*|"[!#-~]*")$', "example": '"v1"'},
}

IF_NONE_MATCH = {
    "in": "header",
    "name": "If-None-Match",
    "required": False,
    "description": "The ETag of the copy you have: 304 Not Modified (no body) while it is "
                   "current.",
    "schema": {"type": "string", "example": '"v1"'},
}

ETAG_HEADER = {"ETag": {"description": "Version tag; send it back in If-Match.",
                        "schema": {"type": "string", "example": '"v1"'}}}

LOCATION_HEADER = {"Location": {"description": "URL of the new resource",
                                "schema": {"type": "string"}}}

# A Location that ``iri_to_uri`` answers as it is: a path of unreserved characters.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9/_.~-]*")


class CreatedResponse(Response):
    """A 201 whose ``Location`` is a plain path (a new record's URL, ``/api/v1/...``):
    werkzeug's ``get_wsgi_headers`` converts a Location with ``iri_to_uri``, which parses
    it as a URL and gives such a path back unchanged, and otherwise copies the headers (a
    201 whose length is known). Here they are copied without the parsing; any other case
    (another status, no length, a Content-Location, a Location of other characters, or
    twice) goes through werkzeug's own. Make one with ``CreatedResponse.force_type``."""

    def get_wsgi_headers(self, environ: Any) -> Any:
        locations, length = [], False
        for key, value in self.headers:  # as werkzeug's reads them
            ikey = key.lower()
            if ikey == "location":
                locations.append(value)
            elif ikey == "content-length":
                length = True
            elif ikey == "content-location":
                length = False
                break
        if (self.status_code != 201 or not length or self.autocorrect_location_header
                or len(locations) != 1
                or not _PLAIN_PATH.fullmatch(locations[0])):
            return super().get_wsgi_headers(environ)
        return Headers(self.headers)


_ENTITY_TAG = re.compile(r'(W/)?"([^"]*)"')
_OUR_TAG = re.compile(r"v([0-9]{1,18})(?:@[A-Za-z0-9_+/-]{1,64})?")

F = TypeVar("F", bound=Callable[..., Any])


def etag(record: Record) -> dict[str, str]:
    """``"v<version>"``; a read shown in another zone (``?timezone=``) is another
    representation of that version: ``"v<version>@<zone>"`` (If-Match takes either)."""
    zone = rendering_zone()
    return {"ETag": f'"v{record.version}@{zone}"' if zone else f'"v{record.version}"'}


def expected_version() -> int | None:
    """The version If-Match names, compared strongly as RFC 9110 (13.1.1) requires.

    428 when absent. ``*`` matches whatever version is current: None. A weak tag
    (``W/"v3"``) never matches, nor a tag that is not one of ours: 412 unless the list
    also names one of our versions (a list naming several of them is refused too, 412: the
    change is made from one version).
    """
    header = request.headers.get("If-Match")
    if header is None or not header.strip():
        raise PreconditionRequired(
            "Send If-Match with the ETag of the version you read (GET the resource first).")
    if header.strip() == "*":
        return None
    versions: set[int] = set()
    weak = False
    for item in header.split(","):
        tag = _ENTITY_TAG.fullmatch(item.strip())
        if tag is None:
            raise PreconditionFailed('If-Match must list entity tags such as "v3" (or be *).')
        ours = _OUR_TAG.fullmatch(tag.group(2))
        if tag.group(1):
            weak = True
        elif ours:
            versions.add(int(ours.group(1)))
    if len(versions) == 1:
        return versions.pop()
    if weak and not versions:
        raise PreconditionFailed("A weak entity tag (W/...) never matches If-Match (strong "
                                 "comparison, RFC 9110): send the ETag exactly as read.")
    if versions:
        raise PreconditionFailed("If-Match names several versions: send the one you read.")
    raise PreconditionFailed("If-Match does not name a version of this resource.")


READ_BACK = ("A body read by GET may be sent back whole: read-only fields are ignored when "
             "they equal the current values, refused (422 read_only_field) otherwise.")


def check_read_back(changes: Any, read_current: Callable[[], Any]) -> None:
    """A PATCH body that sent back read-only fields (``extensions.PartialUpdate``): each
    must equal the current record's value (instants as instants, whatever the offset),
    else 422 ``read_only_field`` naming them. Reads the record only when some were sent;
    when If-Match names another version than the current one, the update answers 412."""
    sent = getattr(changes, "read_back", None)
    if not sent:
        return
    current = read_current()
    expected = expected_version()
    if expected is not None and getattr(current, "version", expected) != expected:
        return
    fields = changes.read_only_fields
    refused = sorted(fields[name].data_key or name for name, value in sent.items()
                     if _shown(fields[name], name, current) != value)
    if refused:
        raise InvalidInput(f"Read-only field(s) {', '.join(refused)} cannot be changed: send "
                           "them as read, or leave them out.", code="read_only_field",
                           fields=refused)


def _shown(field: ma.fields.Field, name: str, record: Any) -> Any:
    """The record's value of a field as a client would send it back, parsed again."""
    shown = field.serialize(name, record)
    return None if shown is None else field.deserialize(shown)


def not_modified(view: F) -> F:
    """A single-resource read that answers 304 Not Modified (no body) to an
    ``If-None-Match`` naming the ETag it would send (RFC 9110, weak comparison).

    Put it OUTERMOST, above ``@blp.response`` (it needs the final response), and only on a
    view whose answer is determined by the version its ETag names (``"v<version>"``: the
    record's own columns), not on one that also shows other records or the clock (a series
    with its sessions and progress): there a matching ETag does not mean an unchanged body.
    flask-smorest's own ``@blp.etag`` hashes the body instead, which would replace the
    version ETags that If-Match takes (and its documentation would replace ours of them).
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        response = view(*args, **kwargs)
        if isinstance(response, Response) and response.status_code == 200 and (
                "ETag" in response.headers):
            current = request._get_current_object()  # type: ignore[attr-defined]
            if current.if_none_match:
                response.make_conditional(current)
        return response

    apidoc = deepcopy(getattr(wrapper, "_apidoc", {}))
    manual = apidoc.get("manual_doc", {})
    # As in idempotency._document: @blp.doc(parameters=...) replaces @blp.arguments' list.
    target = manual if "parameters" in manual else apidoc.setdefault("arguments", {})
    target.setdefault("parameters", []).append(dict(IF_NONE_MATCH))
    apidoc.setdefault("response", {}).setdefault("responses", {}).setdefault(
        304, ["NOT_MODIFIED"])
    wrapper._apidoc = apidoc  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def page_of(page: Page[Any], pagination_parameters: Any) -> list[Any]:
    pagination_parameters.item_count = page.total
    return page.items


def paged(list_use_case: Callable[..., Page[Any]], pagination_parameters: Any, *args: Any,
          **kwargs: Any) -> list[Any]:
    """Call a list use case (read-only, as the current actor) for the requested page."""
    page = list_use_case(unit_of_work(read_only=True), current_actor(), *args,
                         page=pagination_parameters.page,
                         page_size=pagination_parameters.page_size, **kwargs)
    return page_of(page, pagination_parameters)


@dataclass(frozen=True)
class Catalog:
    """The five use cases of a directory resource (list, get, create, update, deactivate)."""

    noun: str  # "location"
    plural: str  # "locations"
    id_name: str  # "location_id"
    list: Callable[..., Page[Any]]
    get: Callable[..., Any]
    create: Callable[..., Any]
    update: Callable[..., Any]
    deactivate: Callable[..., Any]


def register_catalog(blp: Blueprint, catalog: Catalog, *, policy: Policy, schema: type,
                     update_schema: type, query_schema: type) -> None:
    """Register ``/<plural>``, ``/<plural>/<id>`` and ``/<plural>/<id>/deactivate``.

    Each view parses, asks ``policy`` (actions ``list``, ``read``, ``create``, ``update``,
    ``deactivate``), calls one use case and returns its result; the use cases scope records
    to the caller (a record the caller may not see is "not found").
    """
    noun, plural, id_name = catalog.noun, catalog.plural, catalog.id_name

    class Collection(MethodView):
        @blp.arguments(query_schema, location="query")
        @blp.response(200, schema(many=True))
        @blp.paginate()
        @authorize(policy, "list")
        def get(self, args, pagination_parameters):
            return paged(catalog.list, pagination_parameters, **args)

        @idempotent
        @blp.arguments(schema)
        @blp.response(201, schema, headers={**ETAG_HEADER, **LOCATION_HEADER})
        @blp.alt_response(409, response="CONFLICT")
        @authorize(policy, "create")
        def post(self, data):
            record = catalog.create(unit_of_work(), current_actor(), **data)
            return record, 201, {**etag(record),
                                 "Location": f"{blp.url_prefix}/{plural}/{record.id}"}

    class Item(MethodView):
        @not_modified
        @blp.response(200, schema, headers=ETAG_HEADER)
        @blp.alt_response(404, response="NOT_FOUND")
        @authorize(policy, "read")
        def get(self, **ids):
            record = catalog.get(unit_of_work(read_only=True), current_actor(), ids[id_name])
            return record, etag(record)

        @blp.arguments(update_schema)
        @blp.response(200, schema, headers=ETAG_HEADER)
        @blp.alt_response(404, response="NOT_FOUND")
        @blp.alt_response(409, response="CONFLICT")
        @blp.alt_response(412, response="PRECONDITION_FAILED")
        @blp.alt_response(428, response="PRECONDITION_REQUIRED")
        @blp.doc(parameters=[IF_MATCH])
        @authorize(policy, "update")
        def patch(self, changes, **ids):
            check_read_back(changes, lambda: catalog.get(
                unit_of_work(read_only=True), current_actor(), ids[id_name]))
            record = catalog.update(unit_of_work(), current_actor(), ids[id_name],
                                    expected_version=expected_version(), changes=changes)
            return record, etag(record)

    class Deactivation(MethodView):
        @idempotent
        @blp.response(200, schema, headers=ETAG_HEADER)
        @blp.alt_response(404, response="NOT_FOUND")
        @authorize(policy, "deactivate")
        def post(self, **ids):
            record = catalog.deactivate(unit_of_work(), current_actor(), ids[id_name])
            return record, etag(record)

    title = noun[0].upper() + noun[1:]
    Collection.get.__doc__ = f"List {plural}\n\nRoles: {roles(policy, 'list')}."
    Collection.post.__doc__ = f"Add a {noun}\n\nRoles: {roles(policy, 'create')}."
    Item.get.__doc__ = f"Get a {noun}\n\nRoles: {roles(policy, 'read')}."
    Item.patch.__doc__ = (f"Update a {noun} (send If-Match with its ETag)\n\n"
                          f"{READ_BACK} Roles: {roles(policy, 'update')}.")
    Deactivation.post.__doc__ = (f"Deactivate a {noun}\n\n{title} records are kept for "
                                 f"history; a deactivated one offers no new bookings. "
                                 f"Roles: {roles(policy, 'deactivate')}.")
    name = plural.replace("-", "_")
    Collection.__name__, Item.__name__ = f"{title}s", f"{title}ById"
    path = f"/{plural}"
    item_path = f"/{plural}/<uuid:{id_name}>"
    blp.route(path, endpoint=f"{name}_collection")(Collection)
    blp.route(item_path, endpoint=f"{name}_item")(Item)
    blp.route(f"{item_path}/deactivate", endpoint=f"{name}_deactivation")(Deactivation)


def roles(policy: Policy, action: str) -> str:
    """The roles ``policy`` allows ``action``, in the order it declares them (for a doc)."""
    return ", ".join(role.value for role in policy.roles(action))


def check_in_opens() -> timedelta:
    """How long before its start a visit can be checked in (CHECK_IN_OPENS_MINUTES)."""
    return timedelta(minutes=current_app.config["SETTINGS"].check_in_opens_minutes)
