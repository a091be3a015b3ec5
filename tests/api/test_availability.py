"""Provider availability through HTTP: weekly hours, date overrides, time off, roles."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.api.test_directory import assert_problem
from tests.factories import (
    NPIS,
    clinic_payload,
    clinic_today,
    patient_payload,
    provider_payload,
    virtual_payload,
)

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def provider(api) -> dict:
    return api.create("/api/v1/providers", provider_payload())


@pytest.fixture
def clinic(api) -> dict:
    return api.create("/api/v1/locations", clinic_payload())


def path(provider: dict) -> str:
    return f"/api/v1/providers/{provider['id']}/availability"


def time_off_path(provider: dict) -> str:
    return f"/api/v1/providers/{provider['id']}/time-off"


def rule(location: dict, weekday: int, start: str, end: str) -> dict:
    return {"location_id": location["id"], "weekday": weekday, "start": start, "end": end}


def days_ahead(days: int) -> str:
    return (clinic_today() + timedelta(days=days)).isoformat()


def schedule(weekly: list | None = None, overrides: list | None = None) -> dict:
    return {"weekly": weekly or [], "overrides": overrides or []}


# Weekly hours and overrides -----------------------------------------------------------------


def test_schedule_put_then_get_round_trips(api, provider, clinic):
    body = schedule(
        weekly=[rule(clinic, 2, "13:00", "17:00"), rule(clinic, 0, "09:00", "12:00"),
                rule(clinic, 0, "13:00", "17:30")],
        overrides=[{"location_id": clinic["id"], "day": days_ahead(10),
                    "hours": [{"start": "14:00", "end": "16:00"},
                              {"start": "08:00", "end": "10:00"}]}])
    put = api.put(path(provider), json=body)
    assert put.status_code == 200, put.get_json()
    got = api.get(path(provider))
    assert got.status_code == 200
    assert got.get_json() == put.get_json()
    data = got.get_json()
    assert data["provider_id"] == provider["id"]
    assert [(r["weekday"], r["start"], r["end"]) for r in data["weekly"]] == [
        (0, "09:00", "12:00"), (0, "13:00", "17:30"), (2, "13:00", "17:00")]
    assert all(r["id"] and r["location_id"] == clinic["id"] for r in data["weekly"])
    assert data["overrides"] == [
        {"location_id": clinic["id"], "day": days_ahead(10),
         "hours": [{"start": "08:00", "end": "10:00"}, {"start": "14:00", "end": "16:00"}]}]


def test_empty_override_hours_mean_a_day_off(api, provider, clinic):
    off = {"location_id": clinic["id"], "day": days_ahead(3), "hours": []}
    response = api.put(path(provider),
                       json=schedule([rule(clinic, 1, "09:00", "17:00")], [off]))
    assert response.status_code == 200, response.get_json()
    assert api.get(path(provider)).get_json()["overrides"] == [off]


def test_replacing_the_schedule_removes_the_old_rules(api, provider, clinic):
    first = schedule([rule(clinic, 0, "09:00", "12:00"), rule(clinic, 1, "09:00", "12:00")],
                     [{"location_id": clinic["id"], "day": days_ahead(5), "hours": []}])
    assert api.put(path(provider), json=first).status_code == 200
    second = schedule([rule(clinic, 4, "10:00", "11:00")])
    assert api.put(path(provider), json=second).status_code == 200
    data = api.get(path(provider)).get_json()
    assert [(r["weekday"], r["start"]) for r in data["weekly"]] == [(4, "10:00")]
    assert data["overrides"] == []


def test_new_provider_has_an_empty_schedule(api, provider):
    assert api.get(path(provider)).get_json() == {
        "provider_id": provider["id"], "weekly": [], "overrides": []}


def test_overlapping_weekly_hours_on_the_same_day_are_422(api, provider, clinic):
    body = schedule([rule(clinic, 3, "09:00", "12:00"), rule(clinic, 3, "11:30", "14:00")])
    problem = assert_problem(api.put(path(provider), json=body), 422, "overlapping_hours")
    assert problem["weekday"] == 3


def test_weekly_hours_at_two_locations_cannot_overlap(api, provider, clinic):
    virtual = api.create("/api/v1/locations", virtual_payload())
    body = schedule([rule(clinic, 1, "09:00", "12:00"), rule(virtual, 1, "11:00", "13:00")])
    problem = assert_problem(api.put(path(provider), json=body), 422, "overlapping_hours")
    assert problem["weekday"] == 1


def test_touching_windows_do_not_overlap(api, provider, clinic):
    virtual = api.create("/api/v1/locations", virtual_payload())
    body = schedule([rule(clinic, 1, "09:00", "12:00"), rule(virtual, 1, "12:00", "13:00")])
    assert api.put(path(provider), json=body).status_code == 200


def test_overlapping_override_windows_on_the_same_day_are_422(api, provider, clinic):
    virtual = api.create("/api/v1/locations", virtual_payload())
    day = days_ahead(4)
    body = schedule(overrides=[
        {"location_id": clinic["id"], "day": day, "hours": [{"start": "09:00", "end": "12:00"}]},
        {"location_id": virtual["id"], "day": day, "hours": [{"start": "10:00", "end": "11:00"}]},
    ])
    problem = assert_problem(api.put(path(provider), json=body), 422, "overlapping_hours")
    assert problem["day"] == day


def test_hours_ending_before_they_start_are_422(api, provider, clinic):
    weekly = schedule([rule(clinic, 0, "17:00", "09:00")])
    assert_problem(api.put(path(provider), json=weekly), 422, "invalid_time_range")
    override = schedule(overrides=[{"location_id": clinic["id"], "day": days_ahead(2),
                                    "hours": [{"start": "10:00", "end": "10:00"}]}])
    assert_problem(api.put(path(provider), json=override), 422, "invalid_time_range")


def test_clock_times_are_hh_mm_exactly_as_documented(api, provider, clinic):
    """The document says HH:MM (24-hour); the parser took 9:5 too (found by the fuzz test)."""
    for bad in ("", "9:05", "09:5", "24:00", "09:00:00", "0900"):
        body = schedule(overrides=[{"location_id": clinic["id"], "day": days_ahead(2),
                                    "hours": [{"start": "08:00", "end": bad}]}])
        problem = assert_problem(api.put(path(provider), json=body), 422, "validation_failed")
        assert [e["field"] for e in problem["errors"]] == ["overrides.0.hours.0.end"], bad


def test_unknown_location_is_404(api, provider):
    body = schedule([rule({"id": UNKNOWN_ID}, 0, "09:00", "12:00")])
    problem = assert_problem(api.put(path(provider), json=body), 404, "location_not_found")
    assert problem["location_id"] == UNKNOWN_ID


def test_inactive_location_is_404(api, provider, clinic):
    api.post(f"/api/v1/locations/{clinic['id']}/deactivate")
    body = schedule([rule(clinic, 0, "09:00", "12:00")])
    assert_problem(api.put(path(provider), json=body), 404, "location_not_found")


def test_unknown_provider_is_404(api, clinic):
    unknown = {"id": UNKNOWN_ID}
    assert_problem(api.get(path(unknown)), 404, "provider_not_found")
    body = schedule([rule(clinic, 0, "09:00", "12:00")])
    assert_problem(api.put(path(unknown), json=body), 404, "provider_not_found")


def test_override_of_a_past_day_is_422(api, provider, clinic):
    body = schedule(overrides=[{"location_id": clinic["id"], "day": days_ahead(-2),
                                "hours": []}])
    assert_problem(api.put(path(provider), json=body), 422, "invalid_input")


def test_same_location_and_day_given_twice_is_422(api, provider, clinic):
    day = days_ahead(6)
    body = schedule(overrides=[
        {"location_id": clinic["id"], "day": day, "hours": []},
        {"location_id": clinic["id"], "day": day, "hours": [{"start": "09:00", "end": "10:00"}]},
    ])
    assert_problem(api.put(path(provider), json=body), 422, "invalid_input")


def test_unknown_field_is_422(api, provider, clinic):
    body = schedule([{**rule(clinic, 0, "09:00", "12:00"), "room": "B"}])
    problem = assert_problem(api.put(path(provider), json=body), 422, "validation_failed")
    assert any(e["field"].endswith("room") for e in problem["errors"])
    top = {**schedule(), "provider_id": provider["id"]}
    assert_problem(api.put(path(provider), json=top), 422, "validation_failed")


def test_weekday_outside_0_to_6_is_422(api, provider, clinic):
    body = schedule([rule(clinic, 7, "09:00", "12:00")])
    assert_problem(api.put(path(provider), json=body), 422, "validation_failed")


def test_more_than_50_weekly_rules_is_422(api, provider, clinic):
    weekly = [rule(clinic, d % 7, f"{h:02d}:00", f"{h:02d}:30") for d in range(7)
              for h in range(8)]
    assert_problem(api.put(path(provider), json=schedule(weekly)), 422, "validation_failed")


def test_put_needs_weekly_and_overrides(api, provider):
    assert_problem(api.put(path(provider), json={"weekly": []}), 422, "validation_failed")


# Roles --------------------------------------------------------------------------------------


def test_provider_key_changes_its_own_schedule_only(api, provider, clinic):
    other = api.create("/api/v1/providers", provider_payload(npi=NPIS[1], name="Dr. Other"))
    api.bind("doc", "provider", provider_id=provider["id"])
    body = schedule([rule(clinic, 0, "09:00", "12:00")])
    assert api.put(path(provider), json=body, role="doc").status_code == 200
    assert api.get(path(provider), role="doc").status_code == 200
    assert_problem(api.put(path(other), json=body, role="doc"), 404, "provider_not_found")
    assert_problem(api.get(path(other), role="doc"), 404, "provider_not_found")
    assert api.get(path(other)).get_json()["weekly"] == []


def test_patient_reads_but_cannot_change_a_schedule(api, provider, clinic):
    me = api.create("/api/v1/patients", patient_payload())
    api.bind("me", "patient", patient_id=me["id"])
    assert api.get(path(provider), role="me").status_code == 200
    body = schedule([rule(clinic, 0, "09:00", "12:00")])
    assert_problem(api.put(path(provider), json=body, role="me"), 403, "forbidden")
    assert_problem(api.get(time_off_path(provider), role="me"), 403, "forbidden")


def test_integration_reads_but_cannot_change_a_schedule(api, provider, clinic):
    assert api.get(path(provider), role="integration").status_code == 200
    body = schedule([rule(clinic, 0, "09:00", "12:00")])
    assert_problem(api.put(path(provider), json=body, role="integration"), 403, "forbidden")


# Time off -----------------------------------------------------------------------------------


def time_off(**overrides) -> dict:
    return {"starts_at": "2030-07-01T00:00:00-07:00", "ends_at": "2030-07-08T00:00:00-07:00",
            "reason": "Vacation", **overrides}


def test_time_off_add_list_get_delete(api, provider):
    response = api.post(time_off_path(provider), json=time_off())
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert response.headers["Location"] == f"{time_off_path(provider)}/{created['id']}"
    assert created["starts_at"] == "2030-07-01T00:00:00-07:00"  # the clinic's zone
    assert created["provider_id"] == provider["id"] and created["reason"] == "Vacation"
    assert api.get(response.headers["Location"]).get_json() == created
    listed = api.get(time_off_path(provider))
    assert [t["id"] for t in listed.get_json()] == [created["id"]]
    assert '"total": 1' in listed.headers["X-Pagination"]
    deleted = api.request("DELETE", response.headers["Location"])
    assert deleted.status_code == 204 and deleted.data == b""
    assert api.get(time_off_path(provider)).get_json() == []
    assert_problem(api.request("DELETE", response.headers["Location"]), 404,
                   "time_off_not_found")


def test_time_off_list_filters_on_ends_after(api, provider):
    early = api.create(time_off_path(provider), time_off(
        starts_at="2030-01-01T00:00:00Z", ends_at="2030-01-02T00:00:00Z"))
    late = api.create(time_off_path(provider), time_off())
    assert [t["id"] for t in api.get(time_off_path(provider)).get_json()] == [
        early["id"], late["id"]]
    listed = api.get(time_off_path(provider),
                     query_string={"ends_after": "2030-06-01T00:00:00+00:00"})
    assert [t["id"] for t in listed.get_json()] == [late["id"]]


def test_time_off_of_another_provider_is_404(api, provider):
    other = api.create("/api/v1/providers", provider_payload(npi=NPIS[1], name="Dr. Other"))
    created = api.create(time_off_path(provider), time_off())
    wrong = f"{time_off_path(other)}/{created['id']}"
    assert_problem(api.request("DELETE", wrong), 404, "time_off_not_found")
    assert_problem(api.get(wrong), 404, "time_off_not_found")
    assert api.get(f"{time_off_path(provider)}/{created['id']}").status_code == 200


def test_provider_key_manages_only_its_own_time_off(api, provider):
    other = api.create("/api/v1/providers", provider_payload(npi=NPIS[1], name="Dr. Other"))
    api.bind("doc", "provider", provider_id=provider["id"])
    assert api.post(time_off_path(provider), json=time_off(), role="doc").status_code == 201
    assert_problem(api.post(time_off_path(other), json=time_off(), role="doc"), 404,
                   "provider_not_found")
    assert_problem(api.get(time_off_path(other), role="doc"), 404, "provider_not_found")


def test_naive_time_off_is_422(api, provider):
    response = api.post(time_off_path(provider),
                        json=time_off(starts_at="2030-07-01T00:00:00"))
    body = assert_problem(response, 422, "naive_datetime")
    assert body["errors"][0]["field"] == "starts_at"


def test_time_off_ending_before_it_starts_is_422(api, provider):
    response = api.post(time_off_path(provider), json=time_off(
        starts_at="2030-07-08T00:00:00Z", ends_at="2030-07-01T00:00:00Z"))
    assert_problem(response, 422, "invalid_time_range")


def test_time_off_longer_than_366_days_is_422(api, provider):
    response = api.post(time_off_path(provider), json=time_off(
        starts_at="2030-01-01T00:00:00Z", ends_at="2031-01-03T00:00:00Z"))
    assert_problem(response, 422, "range_too_long")


def test_time_off_reason_is_capped_at_200(api, provider):
    response = api.post(time_off_path(provider), json=time_off(reason="x" * 201))
    assert_problem(response, 422, "validation_failed")


def test_time_off_for_unknown_provider_is_404(api):
    assert_problem(api.post(time_off_path({"id": UNKNOWN_ID}), json=time_off()), 404,
                   "provider_not_found")
