"""flask-smorest building blocks shared by every resource area, and the per-request
access to the database."""

from __future__ import annotations

import functools
import http
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import marshmallow as ma
from flask import current_app, g, request
from flask_smorest import Api as BaseApi
from flask_smorest import Blueprint as BaseBlueprint

from service import errors
from service.db import Database
from service.domain.access.actor import Actor
from service.parsing import Integer, RequestParser
from service.uow import UnitOfWork

# The last page a list serves: beyond it the offset is no use to anyone, and far beyond it
# (page=2**63) the database's integers overflow.
MAX_PAGE = 100_000


class ProblemFieldErrorSchema(ma.Schema):
    location = ma.fields.String(metadata={"example": "json"})
    field = ma.fields.String(allow_none=True, metadata={"example": "timezone"})
    message = ma.fields.String(metadata={"example": "Unknown IANA time zone."})
    code = ma.fields.String(metadata={"example": "invalid_timezone"})


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details; ``code`` is stable and machine-readable."""

    type = ma.fields.String(metadata={"example": "/problems/validation_failed"})
    title = ma.fields.String(metadata={"example": "Invalid request"})
    status = ma.fields.Integer(metadata={"example": 422})
    code = ma.fields.String(metadata={"example": "validation_failed"})
    detail = ma.fields.String()
    instance = ma.fields.String(metadata={"example": "/api/v1/providers"})
    request_id = ma.fields.String()
    errors = ma.fields.List(ma.fields.Nested(ProblemFieldErrorSchema))


class Api(BaseApi):
    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error):  # type: ignore[no-untyped-def,override]
        return errors.handle_http_exception(error)

    def _register_responses(self) -> None:
        """Document every error response as ``application/problem+json``."""
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["content"] = {
                    errors.PROBLEM_JSON: {"schema": self.ERROR_SCHEMA}
                }
            self.spec.components.response(status.name, response, lazy=True)
        self.spec.components.response(
            "DEFAULT_ERROR",
            {"description": "Default error response",
             "content": {errors.PROBLEM_JSON: {"schema": self.ERROR_SCHEMA}}},
            lazy=True,
        )


class Blueprint(BaseBlueprint):
    """The blueprint class every resource area uses: its arguments are read by
    ``RequestParser`` (``service/parsing.py``), its lists stop at ``MAX_PAGE``."""

    ARGUMENTS_PARSER = RequestParser()
    PAGINATION_ARGUMENTS_PARSER = RequestParser()

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


class Schema(ma.Schema):
    """Base for every schema: unknown fields are an error, field order kept."""

    class Meta:
        unknown = ma.RAISE
        ordered = True


class RecordSchema(Schema):
    """The fields every stored record shows: id, timestamps, version (its ETag)."""

    id = ma.fields.UUID(dump_only=True)
    created_at = ma.fields.AwareDateTime(dump_only=True)
    updated_at = ma.fields.AwareDateTime(dump_only=True)
    version = ma.fields.Integer(dump_only=True)


class PartialUpdate:
    """Mixin for PATCH schemas: every field optional, nothing defaulted, but at least one
    field given (an empty PATCH is a client's mistake, not a successful no-op)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("partial", True)
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError(errors.CodedMessage(
                "Send at least one field to change.", "empty_update"))


def database() -> Database:
    return current_app.extensions["clinic.database"]


def unit_of_work(*, read_only: bool = False) -> UnitOfWork:
    """A unit of work on the app's database, committing through its message bus."""
    db = database()
    sessions = db.read_sessions if read_only else db.write_sessions
    return UnitOfWork(sessions, dialect=db.dialect, bus=current_app.extensions["clinic.bus"])


def current_actor() -> Actor:
    return g.actor


def clinic_today() -> date:
    """Today's date at the clinic (its zone decides when a license has expired)."""
    return datetime.now(ZoneInfo(current_app.config["SETTINGS"].clinic_timezone)).date()
