"""The slot answer built as text (``rendering.render_answer``) is byte for byte the answer
``jsonify`` writes from ``plain_answer`` (itself compared to the schema's in
test_slot_answers.py), on random slots around daylight-saving changes, in zones with and
without them (issue 14)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain.availability.search import OfferedSlot, SlotSearch
from service.resources.slots.rendering import render_answer, render_answer_plainly

ZONES = ["America/Phoenix", "America/Denver", "America/New_York", "America/St_Johns",
         "Europe/London", "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kolkata", "UTC"]
# Daylight-saving changes (UTC) of those zones, and an instant of local mean time (an
# offset with seconds).
CHANGES = [datetime(2026, 3, 8, 9, tzinfo=UTC), datetime(2026, 11, 1, 8, tzinfo=UTC),
           datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC),
           datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC),
           datetime(2026, 4, 4, 15, tzinfo=UTC), datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
           datetime(2026, 4, 4, 14, tzinfo=UTC), datetime(2026, 9, 26, 14, tzinfo=UTC),
           datetime(2026, 3, 8, 5, 30, tzinfo=UTC), datetime(1880, 6, 1, tzinfo=UTC)]
PROVIDERS = [uuid.UUID(int=n * 7919) for n in range(1, 4)]
LOCATIONS = [uuid.UUID(int=n * 104729) for n in range(1, 4)]


def _service_type(late: int, notice: int) -> SimpleNamespace:
    return SimpleNamespace(id=uuid.UUID(int=42), patient_notice_hours=notice,
                           late_cancel_hours=late, late_cancel_outcome="fee",
                           late_cancel_fee_cents=2500, no_show_outcome="none",
                           no_show_fee_cents=0)


slot = st.builds(
    lambda change, minutes, micro, minutes_long, provider, location: OfferedSlot(
        start=change + timedelta(minutes=minutes, microseconds=micro),
        end=change + timedelta(minutes=minutes + minutes_long, microseconds=micro),
        provider_id=provider, location_id=location),
    st.sampled_from(CHANGES), st.integers(-3 * 24 * 60, 3 * 24 * 60),
    st.one_of(st.just(0), st.just(0), st.integers(0, 999_999)),
    st.integers(5, 600), st.sampled_from(PROVIDERS), st.sampled_from(LOCATIONS))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(slots=st.lists(slot, max_size=30), late=st.integers(0, 72), notice=st.integers(0, 72),
       asked=st.one_of(st.none(), st.sampled_from(ZONES)),
       location_zones=st.lists(st.sampled_from(ZONES), min_size=3, max_size=3),
       stale=st.lists(st.sampled_from(PROVIDERS), unique=True), truncated=st.booleans())
def test_the_text_answer_is_the_plain_answer(app, slots, late, notice, asked, location_zones,
                                             stale, truncated):
    found = SlotSearch(service_type=_service_type(late, notice),  # type: ignore[arg-type]
                       slots=slots, truncated=truncated, timezone=asked or "clinic",
                       stale_sources=tuple(stale),
                       zones=dict(zip(LOCATIONS[:2], location_zones, strict=False)))
    with app.app_context():
        text = render_answer(found, asked_zone=asked, clinic_zone=location_zones[2])
        plain = render_answer_plainly(found, asked_zone=asked, clinic_zone=location_zones[2])
    assert text == plain
    assert len(json.loads(text)["slots"]) == len(slots)


@pytest.mark.parametrize("zone_name", ZONES)
def test_every_minute_around_the_changes_is_shown_as_datetime_shows_it(app, zone_name):
    slots = [OfferedSlot(start=change + timedelta(minutes=m), end=change + timedelta(
        minutes=m + 45), provider_id=PROVIDERS[0], location_id=LOCATIONS[0])
        for change in CHANGES for m in range(-150, 150, 7)]
    found = SlotSearch(service_type=_service_type(24, 2),  # type: ignore[arg-type]
                       slots=slots, truncated=False, timezone=zone_name)
    with app.app_context():
        assert (render_answer(found, asked_zone=zone_name, clinic_zone="UTC")
                == render_answer_plainly(found, asked_zone=zone_name, clinic_zone="UTC"))


def test_a_naive_slot_is_refused_as_before(app):
    found = SlotSearch(service_type=_service_type(24, 2),  # type: ignore[arg-type]
                       slots=[OfferedSlot(start=datetime(2026, 5, 1, 9), end=datetime(
                           2026, 5, 1, 10), provider_id=PROVIDERS[0],
                           location_id=LOCATIONS[0])], truncated=False)
    with app.app_context(), pytest.raises(ValueError):
        render_answer(found, asked_zone=None, clinic_zone="UTC")


def test_an_indented_json_answer_is_rendered_by_the_provider(app):
    found = SlotSearch(service_type=_service_type(24, 2),  # type: ignore[arg-type]
                       slots=[OfferedSlot(start=CHANGES[0], end=CHANGES[0] + timedelta(hours=1),
                                          provider_id=PROVIDERS[0], location_id=LOCATIONS[0])],
                       truncated=False)
    with app.app_context():
        compact = app.json.compact
        app.json.compact = False
        try:
            text = render_answer(found, asked_zone=None, clinic_zone="America/Denver")
            assert text == render_answer_plainly(found, asked_zone=None,
                                                 clinic_zone="America/Denver")
            assert b'\n  "service_type_id"' in text
        finally:
            app.json.compact = compact
