"""A slot answer rendered straight to JSON bytes (issue 14): the very bytes
``SlotListSchema`` and the app's JSON provider give (a test compares them), without
marshmallow's per-field work on up to 1,000 slots, so they can be cached by request
(``availability/answers.py``).

Every instant is shown as ``LocalInstant`` shows it: in the zone asked for (``?timezone=``),
else in its slot's location's zone, else in the clinic's.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
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
        "cancellation_policy": _policy(terms),
        "timezone": found.timezone,
        "slots": slots,
        "truncated": found.truncated,
        "stale_calendar_provider_ids": [str(p) for p in found.stale_sources],
    }


def render_answer_plainly(found: SlotSearch, *, asked_zone: str | None, clinic_zone: str
                          ) -> bytes:
    """The response body of the answer, as ``jsonify`` writes ``plain_answer``."""
    plain = plain_answer(found, asked_zone=asked_zone, clinic_zone=clinic_zone)
    return current_app.json.response(plain).get_data()


_EPOCH_DAY = date(1970, 1, 1)
_HOUR = 3600
_DAY = 86_400
_COMPACT = (",", ":")


class _ZoneText:
    """Instants (whole seconds since the epoch) as ``datetime.isoformat`` shows them in a
    zone, by integer arithmetic: the zone's offset is looked up once per UTC hour (when it
    is the same at both ends of the hour: no zone changes its offset twice within an hour),
    the local date once per day; anything else (an offset with seconds, a change within the
    hour) is formatted by ``datetime`` itself. Each instant is formatted once per answer
    (the providers of an answer share most of their starts)."""

    __slots__ = ("zone", "offsets", "days", "shown")

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.offsets: dict[int, tuple[int, str] | None] = {}
        self.days: dict[int, str] = {}
        self.shown: dict[int, str] = {}

    def _offset(self, hour: int) -> tuple[int, str] | None:
        first = datetime.fromtimestamp(hour * _HOUR, self.zone).utcoffset()
        last = datetime.fromtimestamp(hour * _HOUR + _HOUR - 1, self.zone).utcoffset()
        found: tuple[int, str] | None = None
        if first is not None and first == last and not first.microseconds:
            seconds = first.days * _DAY + first.seconds
            if seconds % 60 == 0:
                sign, size = ("-", -seconds) if seconds < 0 else ("+", seconds)
                found = seconds, f"{sign}{size // _HOUR:02d}:{size // 60 % 60:02d}"
        self.offsets[hour] = found
        return found

    def text(self, seconds: int) -> str:
        found = self.shown.get(seconds)
        if found is None:
            found = self.shown[seconds] = self._text(seconds)
        return found

    def _text(self, seconds: int) -> str:
        hour = seconds // _HOUR
        offset = self.offsets[hour] if hour in self.offsets else self._offset(hour)
        if offset is None:
            return datetime.fromtimestamp(seconds, UTC).astimezone(self.zone).isoformat()
        day, moment = divmod(seconds + offset[0], _DAY)
        day_text = self.days.get(day)
        if day_text is None:
            day_text = self.days[day] = (_EPOCH_DAY + timedelta(days=day)).isoformat()
        return (f"{day_text}T{moment // _HOUR:02d}:{moment // 60 % 60:02d}:"
                f"{moment % 60:02d}{offset[1]}")


def _seconds(instant: datetime) -> int | None:
    """Whole seconds since the epoch of an aware instant; None when it has a fraction."""
    if instant.tzinfo is not UTC:
        require_aware(instant)
    if instant.microsecond:
        return None
    return int(instant.timestamp())


def render_answer(found: SlotSearch, *, asked_zone: str | None, clinic_zone: str) -> bytes:
    """The response body of the answer, as ``jsonify`` writes ``plain_answer`` (the same
    bytes: a test compares them), built as text: the slots' instants by ``_ZoneText``, the
    ids once per provider and location."""
    provider = current_app.json
    if not (provider.compact or (provider.compact is None and not current_app.debug)):
        return render_answer_plainly(found, asked_zone=asked_zone, clinic_zone=clinic_zone)
    terms = CancellationTerms.of(found.service_type)
    late_by = terms.late_cancel_hours * _HOUR
    notice_by = terms.patient_notice_hours * _HOUR
    # Per location (its id as an integer: hashed without a Python method call): its slots'
    # zone; per pair of provider and location, the text between their slot's instants.
    texts: dict[int, _ZoneText] = {}
    by_zone: dict[str, _ZoneText] = {}
    pairs: dict[tuple[int, int], str] = {}
    parts = []
    for s in found.slots:
        location = s.location_id.int
        shown = texts.get(location)
        if shown is None:
            name = asked_zone or found.zones.get(s.location_id) or clinic_zone
            shown = by_zone.get(name)
            if shown is None:
                shown = by_zone[name] = _ZoneText(zone(name))
            texts[location] = shown
        pair = s.provider_id.int, location
        ids = pairs.get(pair)
        if ids is None:
            ids = pairs[pair] = (
                f'","provider_id":"{s.provider_id}","location_id":"{s.location_id}",'
                f'"late_cancel_from":"')
        start, end = _seconds(s.start), _seconds(s.end)
        if start is None or end is None:  # a fraction of a second: as datetime shows it
            one = plain_answer(dataclasses.replace(found, slots=[s]), asked_zone=asked_zone,
                               clinic_zone=clinic_zone)["slots"][0]
            parts.append(provider.dumps(one, separators=_COMPACT))
            continue
        text = shown.text
        parts.append(f'{{"start":"{text(start)}","end":"{text(end)}{ids}'
                     f'{text(start - late_by)}","patient_changes_until":"'
                     f'{text(start - notice_by)}"}}')
    head = provider.dumps({
        "service_type_id": str(found.service_type.id),
        "cancellation_policy": _policy(terms),
        "timezone": found.timezone}, separators=_COMPACT)
    tail = provider.dumps({
        "truncated": found.truncated,
        "stale_calendar_provider_ids": [str(p) for p in found.stale_sources]},
        separators=_COMPACT)
    return f'{head[:-1]},"slots":[{",".join(parts)}],{tail[1:]}\n'.encode()


def _policy(terms: CancellationTerms) -> dict[str, object]:
    """The answer's ``cancellation_policy``: the service type's cancellation terms."""
    return {
        "patient_notice_hours": terms.patient_notice_hours,
        "late_cancel_hours": terms.late_cancel_hours,
        "late_cancel_outcome": terms.late_cancel_outcome.value,
        "late_cancel_fee_cents": terms.late_cancel_fee_cents,
        "no_show_outcome": terms.no_show_outcome.value,
        "no_show_fee_cents": terms.no_show_fee_cents,
    }
