"""HTTP conventions shared by the resource areas: ETags, If-Match, pagination."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import request
from flask.views import MethodView
from werkzeug.exceptions import PreconditionRequired

from service.auth import requires
from service.domain.access.actor import Role
from service.domain.errors import PreconditionFailed
from service.domain.records import Page, Record
from service.extensions import Blueprint, current_actor, unit_of_work
from service.resources.idempotency import idempotent

IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": True,
    "description": "The ETag of the version you read (from GET), a strong entity tag "
                   "(RFC 9110). Missing: 428; stale or not one of ours: 412.",
    "schema": {"type": "string", "pattern": '^"[!#-~]*"$', "example": '"v1"'},
}

ETAG_HEADER = {"ETag": {"description": "Version tag; send it back in If-Match.",
                        "schema": {"type": "string", "example": '"v1"'}}}

LOCATION_HEADER = {"Location": {"description": "URL of the new resource",
                                "schema": {"type": "string"}}}

_ETAG = re.compile(r'^(?:W/)?"v(\d+)"$')


def etag(record: Record) -> dict[str, str]:
    return {"ETag": f'"v{record.version}"'}


def expected_version() -> int:
    """The version named by If-Match (428 when absent, 412 when not one of ours)."""
    header = request.headers.get("If-Match")
    if not header:
        raise PreconditionRequired(
            "Send If-Match with the ETag of the version you read (GET the resource first).")
    match = _ETAG.match(header.strip())
    if not match:
        raise PreconditionFailed("If-Match does not name a version of this resource.")
    return int(match.group(1))


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


def register_catalog(blp: Blueprint, catalog: Catalog, *, schema: type, update_schema: type,
                     query_schema: type, readers: tuple[Role, ...],
                     writers: tuple[Role, ...], creators: tuple[Role, ...] | None = None,
                     updaters: tuple[Role, ...] | None = None) -> None:
    """Register ``/<plural>``, ``/<plural>/<id>`` and ``/<plural>/<id>/deactivate``.

    Each view parses, authorizes by role, calls one use case and returns its result; the use
    cases scope records to the caller (a record the caller may not see is "not found").
    """
    noun, plural, id_name = catalog.noun, catalog.plural, catalog.id_name
    creators = creators or writers
    updaters = updaters or writers

    class Collection(MethodView):
        @blp.arguments(query_schema, location="query")
        @blp.response(200, schema(many=True))
        @blp.paginate()
        @requires(*readers)
        def get(self, args, pagination_parameters):
            return paged(catalog.list, pagination_parameters, **args)

        @idempotent
        @blp.arguments(schema)
        @blp.response(201, schema, headers={**ETAG_HEADER, **LOCATION_HEADER})
        @blp.alt_response(409, response="CONFLICT")
        @requires(*creators)
        def post(self, data):
            record = catalog.create(unit_of_work(), current_actor(), **data)
            return record, 201, {**etag(record),
                                 "Location": f"{blp.url_prefix}/{plural}/{record.id}"}

    class Item(MethodView):
        @blp.response(200, schema, headers=ETAG_HEADER)
        @blp.alt_response(404, response="NOT_FOUND")
        @requires(*readers)
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
        @requires(*updaters)
        def patch(self, changes, **ids):
            record = catalog.update(unit_of_work(), current_actor(), ids[id_name],
                                    expected_version=expected_version(), changes=changes)
            return record, etag(record)

    class Deactivation(MethodView):
        @idempotent
        @blp.response(200, schema, headers=ETAG_HEADER)
        @blp.alt_response(404, response="NOT_FOUND")
        @requires(*writers)
        def post(self, **ids):
            record = catalog.deactivate(unit_of_work(), current_actor(), ids[id_name])
            return record, etag(record)

    title = noun[0].upper() + noun[1:]
    Collection.get.__doc__ = f"List {plural}\n\nRoles: {_roles(readers)}."
    Collection.post.__doc__ = f"Add a {noun}\n\nRoles: {_roles(creators)}."
    Item.get.__doc__ = f"Get a {noun}\n\nRoles: {_roles(readers)}."
    Item.patch.__doc__ = (f"Update a {noun} (send If-Match with its ETag)\n\n"
                          f"Roles: {_roles(updaters)}.")
    Deactivation.post.__doc__ = (f"Deactivate a {noun}\n\n{title} records are kept for "
                                 f"history; a deactivated one offers no new bookings. "
                                 f"Roles: {_roles(writers)}.")
    name = plural.replace("-", "_")
    Collection.__name__, Item.__name__ = f"{title}s", f"{title}ById"
    path = f"/{plural}"
    item_path = f"/{plural}/<uuid:{id_name}>"
    blp.route(path, endpoint=f"{name}_collection")(Collection)
    blp.route(item_path, endpoint=f"{name}_item")(Item)
    blp.route(f"{item_path}/deactivate", endpoint=f"{name}_deactivation")(Deactivation)


def _roles(roles: tuple[Role, ...]) -> str:
    return ", ".join(role.value for role in roles)
