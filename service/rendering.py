"""One rendering of time: every instant leaves the service with the offset of the zone it
belongs to; storage stays UTC.

The zone is decided here, per request (``flask.g``): ``render_in`` records the
``?timezone=`` of a read (``ZoneQueryArgsSchema`` in ``service/resources/fields.py``), and
the location zones (and the patient zones of telehealth bookings) are read once per answer.
``LocalInstant`` is the field every response schema shows instants with (``Instant`` of
``service/resources/fields.py`` adds the strict reading of input), so no schema converts
by hand. (It lives outside ``service/resources`` because ``RecordSchema`` in
``service/extensions.py`` uses it too.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import marshmallow as ma
from flask import current_app, g, has_request_context

from service import transactions
from service.domain.bookings.zones import (
    Zones,
    booking_locations,
    clinic_zones,
    patient_zones,
)
from service.domain.providers.licensing import Modality
from service.domain.time import in_zone, is_valid_zone
from service.uow import UnitOfWork


class LocalInstant(ma.fields.AwareDateTime):
    """An instant shown (dumped) as RFC 3339 with the offset of the zone it belongs to,
    ``zone_of``: the one ``?timezone=`` asked for, else the zone the domain already showed
    it in, else its record's location's, else its record's own ``timezone``, else the
    clinic's."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return render(value, obj)


class NestedInParentZone(ma.fields.Nested):
    """A nested plain mapping (no record of its own, e.g. a booking's cancellation terms)
    whose instants are shown in its parent record's location's zone."""

    def _serialize(self, nested_obj: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        location_id = _attribute(obj, "location_id")
        if isinstance(nested_obj, Mapping) and location_id is not None:
            nested_obj = {**nested_obj, "location_id": location_id,
                          "zone_of_location": _attribute(obj, "zone_of_location")}
        return super()._serialize(nested_obj, attr, obj, **kwargs)


def _read() -> UnitOfWork:
    """A read on the app's database: in the request's own transaction where it keeps one
    (a read and its audit row on one connection), else a read-only unit of work."""
    return transactions.unit_of_work(read_only=True)


# One rendering of time --------------------------------------------------------------------
#
# Storage is UTC; every instant leaves in the zone it belongs to. The zone is decided here,
# per request (``flask.g``): ``render_in`` records the ``?timezone=`` of a read, and the
# location zones (and patient zones of telehealth bookings) are read once per answer.


def render_in(zone_name: str | None) -> None:
    """Show this request's instants in ``zone_name`` (a read's ``?timezone=``); None: each
    in its own zone."""
    g._get_current_object().render_zone = zone_name  # type: ignore[attr-defined]


def rendering_zone() -> str | None:
    """The zone this request asked its instants in (``?timezone=``), if any."""
    return g._get_current_object().get("render_zone") if has_request_context() else None  # type: ignore[attr-defined]


def _zones() -> Zones:
    if "clinic_zones" not in g:
        g.clinic_zones = clinic_zones(_read())
    return g.clinic_zones


def _attribute(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _clinic_zone() -> str:
    return current_app.config["SETTINGS"].clinic_timezone


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


def know_booking_locations(records: Iterable[Any]) -> None:
    """Read at once the locations of the bookings these records belong to (a reminder, a
    reading, ...: records with a ``booking_id`` and no ``location_id`` of their own)."""
    if not has_request_context():
        return
    known: dict[uuid.UUID, uuid.UUID] = g.setdefault("booking_locations", {})
    wanted = {booking for booking in (
        _uuid(_attribute(r, "booking_id")) for r in records
        if _attribute(r, "location_id") is None) if booking and booking not in known}
    if wanted:
        known.update(booking_locations(_read(), wanted))


def location_zone(obj: Any) -> str:
    """The zone of the record's location (a booking, a series, a slot; the booking's, for a
    record attached to one), else the record's own ``timezone`` (a patient, a provider, a
    location), else the clinic's."""
    read_with_it = _attribute(obj, "zone_of_location")  # a booking read WITH_ZONES
    if read_with_it:
        return read_with_it
    location_id = _attribute(obj, "location_id")
    if location_id is None and has_request_context() and _attribute(obj, "booking_id"):
        know_booking_locations([obj])
        location_id = g.booking_locations.get(_uuid(_attribute(obj, "booking_id")))
    if location_id is not None and has_request_context():
        zone = _zones().locations.get(_uuid(location_id))
        if zone:
            return zone
    own = _attribute(obj, "timezone")
    if isinstance(own, str) and is_valid_zone(own):
        return own
    return _clinic_zone()


def zone_of(value: datetime, obj: Any) -> str | None:
    """The zone ``value`` (an instant of ``obj``) is shown in; None: as the domain showed
    it (already in a named zone, e.g. a series session in its location's zone)."""
    asked = rendering_zone()
    if asked:
        return asked
    if isinstance(value.tzinfo, ZoneInfo) and value.tzinfo.key != "UTC":
        return None
    return location_zone(obj)


def render(value: datetime, obj: Any) -> str:
    """An instant as RFC 3339 text with the offset of the zone it belongs to."""
    if not has_request_context():
        return value.isoformat()
    zone = zone_of(value, obj)
    return (value if zone is None else in_zone(value, zone)).isoformat()


def is_telehealth(booking: Any) -> bool:
    service_type = _loaded(booking, "service_type")  # a booking's, loaded with it
    if service_type is not None:
        return service_type.modality == Modality.TELEHEALTH
    return _attribute(booking, "service_type_id") in _zones().telehealth_services


def _loaded(obj: Any, name: str) -> Any:
    """A relationship of a record, when it is loaded already (never loading it)."""
    return None if isinstance(obj, Mapping) else getattr(obj, "__dict__", {}).get(name)


def know_patient_zones(bookings: Iterable[Any]) -> None:
    """Read at once the zones of the patients of these telehealth bookings (for
    ``patient_zone``)."""
    if not has_request_context():
        return
    known: dict[uuid.UUID, str] = g.setdefault("patient_zones", {})
    bookings = list(bookings)
    for booking in bookings:  # read with the booking (``WITH_ZONES``)
        read_with_it = _attribute(booking, "zone_of_patient")
        if read_with_it:
            known.setdefault(booking.patient_id, read_with_it)
    wanted = {b.patient_id for b in bookings
              if is_telehealth(b) and b.patient_id not in known}
    if wanted:
        known.update(patient_zones(_read(), wanted))


def patient_zone(booking: Any) -> str | None:
    """A telehealth booking's patient's zone (None for a visit in person)."""
    if not has_request_context() or not is_telehealth(booking):
        return None
    know_patient_zones([booking])
    return g.patient_zones.get(booking.patient_id)


def patient_local(value: datetime | None, booking: Any) -> str | None:
    """``value`` on the patient's clock (telehealth), else None."""
    zone = patient_zone(booking)
    return None if value is None or zone is None else in_zone(value, zone).isoformat()


