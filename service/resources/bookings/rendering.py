"""A booking's answer rendered directly from its plain row (``reading.read_booking``): the
same JSON, byte for byte, as ``BookingSchema`` dumps for the booking (key order, values,
instants in the zone they belong to), without the schema's per-field machinery, for the
hottest read, ``GET /bookings/{id}``, and for the booking just made, ``POST /bookings``
(``reading.as_read``). ``BookingSchema`` stays the answer's contract (and its
OpenAPI); ``tests/api/test_schema_dump.py`` compares both renderings across the kinds of
booking and the roles that read them.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from typing import Any

from flask import Response, current_app
from flask.json.provider import DefaultJSONProvider

from service.db import utcnow
from service.domain.bookings import instructions
from service.domain.clinic.cancellation import CancellationTerms
from service.domain.providers.licensing import Modality
from service.domain.time import require_aware, zone
from service.rendering import location_zone, rendering_zone


def _instant(value: datetime | None, shown_in: tzinfo) -> str | None:
    """``in_zone(value, name).isoformat()``, the zone (``zone(name)``) found once per body."""
    if value is None:
        return None
    if value.__class__ is not datetime or value.utcoffset() is None:
        require_aware(value)  # (refuses it: not a datetime, or naive)
    return value.astimezone(shown_in).isoformat()


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _uuid(value: Any) -> str | None:
    return None if value is None else str(value)


# The service types' cancellation terms (few, and the same for every booking of one),
# made once per worker instead of for each answer: ``CancellationTerms`` is immutable.
_terms: dict[tuple[Any, ...], CancellationTerms] = {}
TERMS_KEPT = 256  # then forgotten at once


def _terms_of(row: Any) -> CancellationTerms:
    """``CancellationTerms.of(row)``."""
    key = (row.patient_notice_hours, row.late_cancel_hours, row.late_cancel_outcome,
           row.late_cancel_fee_cents, row.no_show_outcome, row.no_show_fee_cents)
    found = _terms.get(key)
    if found is None:
        found = CancellationTerms.of(row)
        if len(_terms) >= TERMS_KEPT:
            _terms.clear()
        _terms[key] = found
    return found


def booking_body(row: Any) -> dict[str, Any]:
    """The answer's body: ``BookingSchema().dump(booking)`` of the booking this row is."""
    own_zone = location_zone(row)
    shown_in = zone(rendering_zone() or own_zone)
    starts_at = row.starts_at
    terms = _terms_of(row).for_visit(starts_at, utcnow())
    patient_zone = row.zone_of_patient if row.modality == Modality.TELEHEALTH else None
    return {
        "id": str(row.id),
        "created_at": _instant(row.created_at, shown_in),
        "updated_at": _instant(row.updated_at, shown_in),
        "version": int(row.version),
        "patient_id": str(row.patient_id),
        "provider_id": str(row.provider_id),
        "service_type_id": str(row.service_type_id),
        "location_id": str(row.location_id),
        "status": row.status.value,
        "start": _instant(starts_at, shown_in),
        "end": _instant(row.ends_at, shown_in),
        "hold_until": (leaves_at := _instant(row.hold_ends_at, shown_in)),
        "leaves_at": leaves_at,  # (the same instant: formatted once)
        "chair_number": _int(row.chair_number),
        "patient_state": _text(row.patient_state),
        "ride_home_confirmed": bool(row.ride_home_confirmed),
        "note": _text(row.note),
        "cancel_reason": _text(row.cancel_reason),
        "cancelled_at": _instant(row.cancelled_at, shown_in),
        "late_cancellation": bool(row.late_cancellation),
        "fee_cents": _int(row.fee_cents),
        "preparation": instructions.advice(row),
        "cancellation": {
            "patient_notice_hours": int(terms["patient_notice_hours"]),
            "late_cancel_hours": int(terms["late_cancel_hours"]),
            "late_cancel_outcome": terms["late_cancel_outcome"].value,
            "late_cancel_fee_cents": int(terms["late_cancel_fee_cents"]),
            "no_show_outcome": terms["no_show_outcome"].value,
            "no_show_fee_cents": int(terms["no_show_fee_cents"]),
            "late_from": _instant(terms["late_from"], shown_in),
            "patient_changes_until": _instant(terms["patient_changes_until"], shown_in),
            "late_if_cancelled_now": bool(terms["late_if_cancelled_now"]),
            "fee_if_cancelled_now_cents": _int(terms["fee_if_cancelled_now_cents"]),
        },
        "checked_in_at": _instant(row.checked_in_at, shown_in),
        "series_id": _uuid(row.series_id),
        "attention": _text(row.attention),
        "attention_since": _instant(row.attention_since, shown_in),
        "attention_resolution": _text(row.attention_resolution),
        "attention_resolved_at": _instant(row.attention_resolved_at, shown_in),
        "vitals_alert_at": _instant(row.vitals_alert_at, shown_in),
        "timezone": own_zone,
        "patient_timezone": patient_zone,
        "patient_local_start": (_instant(starts_at, zone(patient_zone)) if patient_zone
                                else None),
    }


def _encoder(app: Any) -> json.JSONEncoder | None:
    """The encoder ``app.json.response`` makes anew for each answer (``json.dumps`` with the
    provider's ``default``, ``ensure_ascii``, ``sort_keys`` and compact separators), made
    once per provider; None when the provider encodes otherwise (a ``dumps`` of its own,
    or indented output: ``compact`` false, or debug mode), where its ``response`` is used.
    No check for circular references: the body is made of plain values, here."""
    provider = app.json
    if type(provider).dumps is not DefaultJSONProvider.dumps or (
            provider.compact is False or (provider.compact is None and app.debug)):
        return None
    found: json.JSONEncoder | None = provider.__dict__.get("_clinic_encoder")
    if found is None:
        found = provider.__dict__["_clinic_encoder"] = json.JSONEncoder(
            default=provider.default, ensure_ascii=provider.ensure_ascii,
            sort_keys=provider.sort_keys, separators=(",", ":"), check_circular=False)
    return found


def booking_response(row: Any, headers: dict[str, str], status: int = 200) -> Response:
    """The answer, as ``@blp.response(status, BookingSchema)`` would send it (jsonify)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    encoder = _encoder(app)
    response: Response = (app.json.response(booking_body(row)) if encoder is None else
                          app.response_class(f"{encoder.encode(booking_body(row))}\n",
                                             mimetype=app.json.mimetype))
    response.status_code = status
    response.headers.update(headers)
    return response
