"""Slot search through HTTP: each rule a slot must honour."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.api.test_directory import assert_problem
from tests.factories import NPIS, clinic_today
from tests.scenario import PHOENIX, build_clinic


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def starts(slots: list[dict]) -> list[datetime]:
    return [datetime.fromisoformat(s["start"]) for s in slots]


def test_slots_lie_inside_working_hours(clinic):
    slots = clinic.slots("consultation")
    assert starts(slots)[0] == clinic.at(13)
    assert starts(slots)[-1] == clinic.at(16)  # 60-minute visit ends at 17:00
    assert len(slots) == 7  # 13:00 to 16:00 every 30 minutes
    assert {s["location_id"] for s in slots} == {clinic.virtual["id"]}


def test_slots_are_shown_in_the_location_zone_by_default(clinic):
    slot = clinic.slots("consultation", location_id=clinic.virtual["id"])[0]
    assert slot["start"].endswith("-07:00")


def test_slots_skip_existing_bookings_including_pending(clinic):
    assert clinic.book("consultation", clinic.at(14), hold=True).status_code == 201
    offered = starts(clinic.slots("consultation"))
    assert clinic.at(14) not in offered
    assert clinic.at(13, 30) not in offered and clinic.at(14, 30) not in offered
    assert clinic.at(13) in offered and clinic.at(15) in offered


def test_slots_honour_buffers_and_recovery(clinic):
    # IV: 15 min buffer before and after the 45-minute visit for the provider.
    assert clinic.book("iv-infusion", clinic.at(9)).status_code == 201
    offered = starts(clinic.slots("iv-infusion", provider_id=clinic.doctor["id"]))
    assert clinic.at(9, 45) not in offered  # its buffer_before overlaps the buffer_after
    assert clinic.at(10, 15) in offered  # 9:00-10:00 block, next block starts at 10:00


def test_slots_need_a_free_chair_for_the_whole_recovery(clinic, api):
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    third = clinic.add_provider("Dr. Cy Diaz", NPIS[2])
    patients = [clinic.patient, clinic.add_cleared_patient(first_name="Two")]
    for provider, patient in zip((clinic.doctor, other), patients):
        assert clinic.book("iv-infusion", clinic.at(9), provider=provider,
                           patient=patient).status_code == 201
    # Both chairs are held 09:00-10:45 (45 min + 60 min recovery).
    offered = starts(clinic.slots("iv-infusion", provider_id=third["id"]))
    assert clinic.at(9) not in offered and clinic.at(10, 30) not in offered
    assert clinic.at(10, 45) in offered


def test_slots_respect_minimum_notice(clinic):
    now = datetime.now(PHOENIX)
    today = clinic.slots("iv-infusion", start=now.date().isoformat(),
                         end=(now.date() + timedelta(days=1)).isoformat())
    assert all(s >= now + timedelta(hours=24) for s in starts(today))


def test_slots_respect_booking_horizon(clinic, api):
    far = clinic_today() + timedelta(days=95)
    assert clinic.slots("iv-infusion", start=far.isoformat(), end=far.isoformat()) == []


def test_slots_stop_when_the_license_expires(clinic, api):
    expiring = clinic.add_provider(
        "Dr. Short License", NPIS[1],
        licenses=[{"expires_on": (clinic.day - timedelta(days=1)).isoformat()}])
    assert clinic.slots("consultation", provider_id=expiring["id"]) == []
    before = (clinic.day - timedelta(days=2)).isoformat()
    assert clinic.slots("consultation", provider_id=expiring["id"], start=before, end=before)


def test_registration_makes_telehealth_slots_only(clinic):
    registered = clinic.add_provider(
        "Dr. Out Of State", NPIS[1],
        licenses=[{"jurisdiction": "US-CA", "board": "Medical Board of California"},
                  {"kind": "telehealth-registration"}])
    assert clinic.slots("consultation", provider_id=registered["id"])
    assert clinic.slots("iv-infusion", provider_id=registered["id"]) == []


def test_telehealth_slots_follow_the_patient_state(clinic):
    registered = clinic.add_provider(
        "Dr. Out Of State", NPIS[1],
        licenses=[{"jurisdiction": "US-CA", "board": "Medical Board of California"},
                  {"kind": "telehealth-registration"}])
    who = {"provider_id": registered["id"]}
    assert clinic.slots("consultation", patient_state="CA", **who)
    assert clinic.slots("consultation", patient_state="NM", **who) == []
    assert clinic.slots("consultation", patient_state="NM",
                        provider_id=clinic.doctor["id"]) == []


def test_esketamine_slots_need_rems_prescriber(clinic):
    plain = clinic.add_provider("Dr. No REMS", NPIS[1], is_rems_prescriber=False)
    assert clinic.slots("esketamine", provider_id=plain["id"]) == []
    assert clinic.slots("esketamine", provider_id=clinic.doctor["id"])


def test_esketamine_slots_need_a_rems_certified_location(clinic, api):
    response = api.patch(f"/api/v1/locations/{clinic.clinic['id']}",
                         json={"rems_certified": False}, headers={"If-Match": '"v1"'})
    assert response.status_code == 200
    assert clinic.slots("esketamine") == []


def test_time_off_removes_slots(clinic, api):
    response = api.post(f"/api/v1/providers/{clinic.doctor['id']}/time-off", json={
        "starts_at": clinic.at(14).isoformat(), "ends_at": clinic.at(15).isoformat()})
    assert response.status_code == 201
    offered = starts(clinic.slots("consultation"))
    assert clinic.at(13, 30) not in offered and clinic.at(14, 30) not in offered
    assert clinic.at(13) in offered and clinic.at(15) in offered


def test_date_override_replaces_weekly_hours(clinic):
    clinic.set_hours(clinic.doctor, clinic.standard_hours(), overrides=[
        {"location_id": clinic.virtual["id"], "day": clinic.day.isoformat(),
         "hours": [{"start": "18:00", "end": "19:00"}]}])
    assert starts(clinic.slots("consultation")) == [clinic.at(18)]


def test_slots_are_the_same_instants_whatever_the_answer_zone(clinic):
    phoenix = clinic.slots("consultation", start=clinic.at(0).isoformat(),
                           end=clinic.at(23).isoformat())
    denver = clinic.slots("consultation", start=clinic.at(0).isoformat(),
                          end=clinic.at(23).isoformat(), timezone="America/Denver")
    utc = clinic.slots("consultation", start=clinic.at(0).isoformat(),
                       end=clinic.at(23).isoformat(), timezone="UTC")
    assert starts(phoenix) == starts(denver) == starts(utc)
    assert phoenix[0]["start"] != utc[0]["start"]


def test_phoenix_visit_is_an_hour_later_in_tuba_city_in_july_not_january(clinic):
    july = date(2027, 7, 14)
    january = date(2027, 1, 13)
    for day, local_hour in ((july, 11), (january, 10)):
        slots = clinic.slots("consultation", start=day.isoformat(), end=day.isoformat(),
                             timezone="America/Denver", location_id=clinic.virtual["id"])
        offered = starts(slots)
        ten_phoenix = datetime(day.year, day.month, day.day, 13, tzinfo=PHOENIX)
        assert ten_phoenix in offered
        shown = next(s for s in slots if datetime.fromisoformat(s["start"]) == ten_phoenix)
        assert datetime.fromisoformat(shown["start"]).hour == local_hour + 3


def test_weekly_hours_keep_local_time_across_dst_in_denver(clinic, api):
    denver = api.create("/api/v1/locations", {
        "name": "Page clinic", "kind": "clinic", "timezone": "America/Denver",
        "address_line1": "1 Lake Powell Blvd", "city": "Page", "state": "AZ",
        "postal_code": "86040", "chairs": 1})
    api.patch(f"/api/v1/service-types/{clinic.services['iv-infusion']['id']}",
              json={"horizon_days": 400}, headers={"If-Match": '"v1"'})
    provider = clinic.add_provider("Dr. Mesa", NPIS[1], hours=[
        {"location_id": denver["id"], "weekday": d, "start": "09:00", "end": "12:00"}
        for d in range(7)])
    zone = ZoneInfo("America/Denver")
    for day in (date(2027, 3, 13), date(2027, 3, 15)):  # either side of spring forward
        slots = clinic.slots("iv-infusion", provider_id=provider["id"],
                             location_id=denver["id"], start=day.isoformat(),
                             end=day.isoformat())
        first = datetime.fromisoformat(slots[0]["start"]).astimezone(zone)
        assert (first.hour, first.minute) == (9, 0)
        assert len(slots) == 10  # 09:00..11:15 every 15 minutes: a 45-minute visit ends by 12:00


def test_range_longer_than_62_days_is_422(clinic, api):
    response = api.get("/api/v1/slots", query_string={
        "service_type": clinic.services["consultation"]["id"],
        "start": clinic_today().isoformat(),
        "end": (clinic_today() + timedelta(days=70)).isoformat()})
    assert_problem(response, 422, "range_too_long")


def test_naive_time_is_refused(clinic, api):
    response = api.get("/api/v1/slots", query_string={
        "service_type": clinic.services["consultation"]["id"],
        "start": "2026-12-01T10:00:00", "end": "2026-12-02"})
    assert_problem(response, 422, "naive_datetime")


def test_slots_do_not_expose_other_bookings(clinic, api):
    assert clinic.book("consultation", clinic.at(14)).status_code == 201
    other = clinic.add_patient(first_name="Other")
    api.bind("other", "patient", patient_id=other["id"])
    body = api.get("/api/v1/slots", role="other", query_string={
        "service_type": clinic.services["consultation"]["id"],
        "start": clinic.day.isoformat(), "end": clinic.day.isoformat()}).get_json()
    text = str(body)
    assert clinic.patient["id"] not in text and "Robin" not in text
    assert set(body["slots"][0]) == {"start", "end", "provider_id", "location_id",
                                     "late_cancel_from", "patient_changes_until"}


def test_slots_of_several_providers_are_merged_in_time_order(clinic):
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    slots = clinic.slots("consultation")
    assert {s["provider_id"] for s in slots} == {clinic.doctor["id"], other["id"]}
    assert starts(slots) == sorted(starts(slots))
    assert len(slots) == 14
    limited = clinic.api.get("/api/v1/slots", query_string={
        "service_type": clinic.services["consultation"]["id"], "start": clinic.day.isoformat(),
        "end": clinic.day.isoformat(), "limit": 3}).get_json()
    assert len(limited["slots"]) == 3 and limited["truncated"] is True
