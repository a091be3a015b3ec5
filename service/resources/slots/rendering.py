"""A slot answer rendered straight to JSON bytes (issue 14): the very bytes
``SlotListSchema`` and the app's JSON provider give (a test compares them), without
marshmallow's per-field work on up to 1,000 slots, so they can be cached by request
(``availability/answers.py``).

Every instant is shown as ``LocalInstant`` shows it: in the zone asked for (``?timezone=``),
else in its slot's location's zone, else in the clinic's.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app

from service.domain.availability.search import SlotSearch
from service.domain.clinic.cancellation import CancellationTerms
from service.domain.time import require_aware, zone


def plain_answer(found: SlotSearch, *, asked_zone: str | None, clinic_zone: str
                 ) -> dict[str, Any]:
    """The answer as the schema dumps it (plain values only)."""
    terms = CancellationTerms.of(found.service_type)
    zones: dict[Any, ZoneInfo] = {}  # per location: the zone its slots are shown in
    ids: dict[Any, str] = {}

    def text(value: Any) -> str:
        found_text = ids.get(value)
        if found_text is None:
            found_text = ids[value] = str(value)
        return found_text

    slots = []
    for s in found.slots:
        shown = zones.get(s.location_id)
        if shown is None:
            shown = zones[s.location_id] = zone(asked_zone or found.zones.get(s.location_id)
                                                or clinic_zone)
        start = require_aware(s.start)
        slots.append({"start": start.astimezone(shown).isoformat(),
                      "end": require_aware(s.end).astimezone(shown).isoformat(),
                      "provider_id": text(s.provider_id), "location_id": text(s.location_id),
                      "late_cancel_from": terms.late_from(start).astimezone(shown).isoformat(),
                      "patient_changes_until": terms.patient_changes_until(start).astimezone(
                          shown).isoformat()})
    return {
        "service_type_id": str(found.service_type.id),
        "cancellation_policy": {
            "patient_notice_hours": terms.patient_notice_hours,
            "late_cancel_hours": terms.late_cancel_hours,
            "late_cancel_outcome": terms.late_cancel_outcome.value,
            "late_cancel_fee_cents": terms.late_cancel_fee_cents,
            "no_show_outcome": terms.no_show_outcome.value,
            "no_show_fee_cents": terms.no_show_fee_cents,
        },
        "timezone": found.timezone,
        "slots": slots,
        "truncated": found.truncated,
        "stale_calendar_provider_ids": [str(p) for p in found.stale_sources],
    }


def render_answer(found: SlotSearch, *, asked_zone: str | None, clinic_zone: str) -> bytes:
    """The response body of the answer, as ``jsonify`` writes it."""
    plain = plain_answer(found, asked_zone=asked_zone, clinic_zone=clinic_zone)
    return current_app.json.response(plain).get_data()
