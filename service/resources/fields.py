"""Marshmallow fields for the clinic's value types; each refusal carries a stable code."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import marshmallow as ma

from service.domain.providers.npi import is_valid_npi
from service.domain.time import SUPPORTED_YEARS, in_supported_range, is_valid_zone
from service.errors import CodedMessage
from service.rendering import LocalInstant, render_in


def coded_error(message: str, code: str) -> ma.ValidationError:
    return ma.ValidationError(CodedMessage(message, code))


class TimeZone(ma.fields.String):
    """An IANA time zone name such as ``America/Phoenix``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).setdefault("example", "America/Phoenix")
        super().__init__(validate=ma.validate.Length(max=64), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        name = super()._deserialize(value, attr, data, **kwargs)
        if not is_valid_zone(name):
            raise coded_error(f"'{name[:64]}' is not an IANA time zone name.", "invalid_timezone")
        return name


class Npi(ma.fields.String):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).update(
            example="1234567893", description="10-digit NPI with a valid check digit")
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        npi = super()._deserialize(value, attr, data, **kwargs)
        if not is_valid_npi(npi):
            raise coded_error("Not a valid NPI (10 digits, Luhn check digit).", "invalid_npi")
        return npi


_E164 = re.compile(r"^\+[1-9]\d{7,14}$")


class Phone(ma.fields.String):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).update(example="+16025550123")
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        phone = super()._deserialize(value, attr, data, **kwargs)
        if not _E164.match(phone):
            raise coded_error("Not an E.164 phone number (for example +16025550123).",
                        "invalid_phone")
        return phone


def supported(value: date) -> date:
    """Refuse a date (or time) outside the calendar the service works in (``out_of_range``):
    years 1900 to 2200 (near year 1 or 9999, a day or an offset more overflows)."""
    if not in_supported_range(value):
        raise coded_error(f"Give a date in the years {SUPPORTED_YEARS.start} to "
                          f"{SUPPORTED_YEARS.stop - 1}.", "out_of_range")
    return value


class Date(ma.fields.Date):
    """An ISO 8601 date (YYYY-MM-DD) in the years 1900 to 2200."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        return supported(super()._deserialize(value, attr, data, **kwargs))


_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")  # an instant's text ends with its offset


class Instant(LocalInstant):
    """An RFC 3339 time with an offset, in the years 1900 to 2200; naive times are
    refused. Shown with the offset of the zone it belongs to (``LocalInstant``)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).setdefault("example", "2026-12-01T10:00:00-07:00")
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, str) and not _OFFSET.search(value.strip()):
            raise coded_error("Give the time with an offset, e.g. 2026-12-01T10:00:00-07:00.",
                        "naive_datetime")
        moment = super()._deserialize(value, attr, data, **kwargs)
        supported(moment)
        return moment


class ClockTime(ma.fields.Time):
    """A local wall-clock time, ``HH:MM`` (24-hour), exactly as documented (``strptime``
    alone would also take ``9:5``)."""

    PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).setdefault("pattern", self.PATTERN)
        super().__init__(format="%H:%M", **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not re.fullmatch(self.PATTERN, value):
            raise self.make_error("invalid", input=value, obj_type="time (HH:MM)")
        return super()._deserialize(value, attr, data, **kwargs)


def text(max_length: int, **kwargs: Any) -> ma.fields.String:
    """A required-length-bounded string (every string has a length)."""
    return ma.fields.String(validate=ma.validate.Length(min=1, max=max_length), **kwargs)


def optional_text(max_length: int, **kwargs: Any) -> ma.fields.String:
    return ma.fields.String(validate=ma.validate.Length(max=max_length), allow_none=True,
                            **kwargs)


class CodedOneOf(ma.validate.OneOf):
    """``OneOf`` (documented as an enum) whose refusal carries a stable code."""

    def __init__(self, choices: Any, *, code: str, error: str) -> None:
        super().__init__(choices, error=error)
        self.code = code

    def __call__(self, value: Any) -> Any:
        try:
            return super().__call__(value)
        except ma.ValidationError as error:
            raise coded_error(str(error.messages[0]), self.code) from None


# The 50 states, the District of Columbia and the inhabited territories (USPS codes, which
# are also the ISO 3166-2:US subdivision codes).
US_STATES = (
    "AK", "AL", "AR", "AS", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "GU", "HI", "IA",
    "ID", "IL", "IN", "KS", "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MP", "MS", "MT",
    "NC", "ND", "NE", "NH", "NJ", "NM", "NV", "NY", "OH", "OK", "OR", "PA", "PR", "RI", "SC",
    "SD", "TN", "TX", "UT", "VA", "VI", "VT", "WA", "WI", "WV", "WY",
)
STATE = CodedOneOf(US_STATES, code="unknown_state",
                   error="Not a US state or territory code (two capital letters, e.g. AZ).")
JURISDICTION = CodedOneOf([f"US-{state}" for state in US_STATES], code="unknown_state",
                          error="Not a US jurisdiction like US-AZ (ISO 3166-2).")


class ZoneQueryArgsSchema(ma.Schema):
    """``?timezone=``: a read shows its instants in another zone (422 with code
    ``invalid_timezone`` for a name that is not one)."""

    timezone = TimeZone(metadata={
        "description": "Show the instants in this IANA zone (default: each in its "
                       "location's zone). Storage and the booking's own `timezone` do not "
                       "change"})

    @ma.post_load
    def _render(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        render_in(data.pop("timezone", None))
        return data

    @staticmethod
    def without_query() -> dict[str, Any]:
        """What ``load({})`` gives and does (``_render``), for a request without a query
        string: ``RequestParser.parse`` answers it without loading
        (``tests/api/test_edges.py`` checks that both agree)."""
        render_in(None)
        return {}
