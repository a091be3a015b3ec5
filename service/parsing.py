"""What a request's input must be before any schema reads it, for every endpoint at once.

The resource blueprints parse their arguments with ``RequestParser`` and the app decodes
JSON with ``JSONProvider`` (so ``request.get_json`` too), and both hold these rules:

* A body is read as JSON only when it says so: a JSON endpoint given any other media type,
  or none, answers 415 instead of reading the body as ``{}``; a form endpoint likewise.
* JSON is decoded with limits: at most ``MAX_JSON_DEPTH`` levels of nesting (deeper would
  exhaust Python's recursion), no NaN or Infinity (not JSON), no number beyond a 64-bit
  integer or a finite double, no member name given twice (which one would win?).
* Text never holds NUL (PostgreSQL refuses it) or a lone surrogate (no encoding stores it),
  nor is the query or a form anything but UTF-8 (werkzeug would silently replace it), in
  the body, the query or a form, keys included.
* A query or form parameter that takes one value is given once.
* A whole number is one (``Integer``): 1.5, 2.0, true or "1_000" are refused, never
  truncated or coerced, and it stays within its range (by default a 32-bit column's).

Each refusal is a 4xx problem with a stable code, raised before anything is read or
written (see ``CODES`` in ``service/errors.py``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any, NoReturn
from urllib.parse import unquote_to_bytes

import marshmallow as ma
from flask import Request
from flask import request as current_request
from flask.json.provider import DefaultJSONProvider
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request
from werkzeug.exceptions import UnsupportedMediaType

from service.errors import CodedMessage

MAX_JSON_DEPTH = 32
MAX_INTEGER_DIGITS = 18  # below 2**63: no database integer overflows on a parsed number
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# NUL and the UTF-16 surrogate code points (only lone ones can reach a Python str).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class InputError(ValueError):
    """Input refused before any schema reads it.

    A ``ValueError``, so ``request.get_json(silent=True)`` answers None for such a body.
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def _too_deep() -> InputError:
    return InputError(400, "json_too_deep",
                      f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.")


def _out_of_range(number: str) -> InputError:
    return InputError(422, "out_of_range",
                      f"The number {number[:24]}{'...' if len(number) > 24 else ''} is out "
                      "of range.")


def _not_json(constant: str) -> NoReturn:
    raise InputError(400, "malformed_json", f"{constant} is not a JSON value.")


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _out_of_range(text)
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e309 parses as inf
        raise _out_of_range(text)
    return value


def _members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise InputError(400, "malformed_json", "A JSON object names a member more than once.")
    return document


_DECODER = json.JSONDecoder(parse_int=_integer, parse_float=_float,
                            parse_constant=_not_json, object_pairs_hook=_members)


def decode_json(data: bytes | bytearray | str) -> Any:
    """Decode a JSON body (UTF-8) under the rules above; raise ``InputError`` otherwise."""
    if isinstance(data, bytes | bytearray):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(400, "malformed_json", "The body is not UTF-8 text.") from None
    else:
        text = data
    try:
        document = _DECODER.decode(text)
    except RecursionError:
        raise _too_deep() from None
    except json.JSONDecodeError as error:
        raise InputError(400, "malformed_json", f"The body is not valid JSON ({error.msg}, "
                                                f"line {error.lineno} column {error.colno}).",
                         ) from None
    inspect_document(document)
    return document


def inspect_document(document: Any) -> None:
    """Refuse a decoded JSON document nested too deep or holding unstorable text."""
    stack: list[tuple[Any, int, str]] = [(document, 0, "")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise _too_deep()
            items: Iterable[tuple[Any, Any]] = (
                value.items() if isinstance(value, dict) else enumerate(value))
            for key, item in items:
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str):
                    _check_text(key, name)
                stack.append((item, depth + 1, name))


def _check_text(text: str, field: str | None) -> None:
    if _UNSTORABLE.search(text):
        raise InputError(422, "invalid_characters",
                         "Text may not hold NUL (U+0000) or a lone surrogate (U+D800 to "
                         "U+DFFF).", field=_printable(field) if field else None)


def _printable(name: str) -> str:
    """A field name fit to echo back (the offending characters shown as escapes)."""
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", name)[:100]


def check_urlencoded(raw: bytes, what: str) -> None:
    """The raw query string (or form body) must decode as UTF-8 (werkzeug would replace
    anything else with U+FFFD, silently misreading it)."""
    try:
        unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(422, "invalid_characters",
                         f"The {what} is not UTF-8 (percent-encoded bytes included).") from None


def check_pairs(pairs: Iterable[tuple[str, str]]) -> None:
    for key, value in pairs:
        _check_text(key, key)
        _check_text(value, key)


INT32 = ma.validate.Range(min=-(2**31), max=2**31 - 1)
_DIGITS = re.compile(r"[+-]?[0-9]{1,19}")


class Integer(ma.fields.Integer):
    """A whole number, strictly: a JSON integer, or in a query or form ASCII digits. Without
    a ``Range`` among its validators it is bounded to a 32-bit column's range."""

    def __init__(self, **kwargs: Any) -> None:
        validate = kwargs.pop("validate", None)
        validators = ([] if validate is None else
                      [validate] if callable(validate) else list(validate))
        if not any(isinstance(v, ma.validate.Range) for v in validators):
            validators.append(INT32)
        kwargs["strict"] = True
        super().__init__(validate=validators, **kwargs)

    def _validated(self, value: Any) -> int:
        if isinstance(value, str):
            if not _DIGITS.fullmatch(value):
                raise self.make_error("invalid", input=value)
            value = int(value)
        return super()._validated(value)


def check_single_values(multidict: Any, schema: ma.Schema) -> None:
    """Refuse a parameter of ``schema`` that takes one value but was given several (which
    one was meant?)."""
    for name, field in schema.fields.items():
        if field.dump_only or isinstance(field, ma.fields.List | ma.fields.Tuple):
            continue
        key = field.data_key or name
        if len(multidict.getlist(key)) > 1:
            raise InputError(422, "duplicate_parameter",
                             "This parameter takes one value; it was given several.",
                             field=key)


class RequestParser(FlaskParser):
    """webargs' Flask parser holding the rules of this module (used by every blueprint).

    A route's arguments schema given as a class is made once, not per request (webargs
    would build it, copying each of its fields, for every request it parses: a sixth of a
    repeated slot search's time); loading keeps no state in the schema."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._schemas: dict[type[ma.Schema], ma.Schema] = {}

    def _get_schema(self, argmap: Any, req: Request) -> ma.Schema:
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._schemas.get(argmap)
            if schema is None:
                schema = self._schemas.setdefault(argmap, argmap())
            return schema
        return super()._get_schema(argmap, req)

    def parse(self, argmap: Any, req: Request | None = None, *, location: str | None = None,
              validate: Any = None, **kwargs: Any) -> Any:
        # A query schema that says itself what a request without a query string parses as
        # (``without_query``, defined on that very class: a subclass may add fields with
        # defaults) answers that for one, without webargs' and marshmallow's machinery
        # (most reads of one record are asked without a query: ``GET /bookings/{id}``).
        if location == "query" and validate is None:
            without_query = (argmap if isinstance(argmap, type) else type(argmap)
                             ).__dict__.get("without_query")
            if without_query is not None and not (req or current_request).query_string:
                return without_query.__func__()
        return super().parse(argmap, req, location=location, validate=validate, **kwargs)

    def load_json(self, req: Request, schema: ma.Schema) -> Any:
        body = req.get_data(cache=True)
        if not is_json_request(req):
            if body:
                raise UnsupportedMediaType(
                    "Send the body as application/json (with that Content-Type).")
            return core.missing
        if not body:
            return core.missing  # no body: the schema decides (its defaults, or required)
        # The document ``request.get_json`` decoded (under the same rules: JSONProvider),
        # when something before the view already asked for it (the audit trail's patient
        # hint): the body is decoded once. None: not decoded yet, refused, or ``null``.
        decoded = req.get_json(silent=True)
        if decoded is not None:
            return decoded
        try:
            return decode_json(body)
        except InputError as error:
            _refuse(error, "json")

    def load_querystring(self, req: Request, schema: ma.Schema) -> Any:
        # The request behind flask's proxy, found once (each read through it finds it again).
        req = getattr(req, "_get_current_object", lambda: req)()
        try:
            check_urlencoded(req.query_string, "query string")
            check_pairs(req.args.items(multi=True))
            check_single_values(req.args, schema)
        except InputError as error:
            _refuse(error, "query")
        return super().load_querystring(req, schema)

    def load_form(self, req: Request, schema: ma.Schema) -> Any:
        body = req.get_data(cache=True)
        if body and req.mimetype not in FORM_TYPES:
            raise UnsupportedMediaType(
                "Send the body as application/x-www-form-urlencoded (or multipart/form-data).")
        try:
            if req.mimetype == FORM_TYPES[0]:
                check_urlencoded(body, "form body")
            check_pairs(req.form.items(multi=True))
            check_single_values(req.form, schema)
        except InputError as error:
            _refuse(error, "form")
        return super().load_form(req, schema)


def _refuse(error: InputError, location: str) -> NoReturn:
    message = CodedMessage(error.message, error.code)
    messages = {location: {error.field: [message]} if error.field else [message]}
    abort(error.status, exc=error, messages=messages)


class JSONProvider(DefaultJSONProvider):
    """The app's JSON: answers keep their field order; ``loads`` (``request.get_json``
    included) decodes under this module's rules."""

    sort_keys = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return decode_json(s)
