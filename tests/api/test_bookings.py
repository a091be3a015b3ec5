"""Bookings through HTTP: the rules re-checked at booking time, conflicts, transitions."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.domain.availability import placement
from tests.api.test_directory import assert_problem
from tests.factories import NPIS
from tests.scenario import build_clinic


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def test_booking_an_offered_slot_answers_201_with_location_and_etag(clinic, api):
    response = clinic.book("consultation", clinic.at(14))
    assert response.status_code == 201
    booking = response.get_json()
    assert booking["status"] == "booked"
    assert response.headers["Location"] == f"/api/v1/bookings/{booking['id']}"
    assert response.headers["ETag"] == '"v1"'
    assert datetime.fromisoformat(booking["start"]) == clinic.at(14)
    assert datetime.fromisoformat(booking["end"]) == clinic.at(15)
    assert api.get(booking["id"] and f"/api/v1/bookings/{booking['id']}").status_code == 200


def test_provider_double_booking_is_409_with_alternatives(clinic):
    assert clinic.book("consultation", clinic.at(14)).status_code == 201
    other = clinic.add_patient(first_name="Other")
    response = clinic.book("consultation", clinic.at(14), patient=other)
    body = assert_problem(response, 409, "slot_unavailable")
    assert len(body["alternatives"]) == 3
    first = body["alternatives"][0]
    assert first["provider_id"] == clinic.doctor["id"]
    assert datetime.fromisoformat(first["start"]) == clinic.at(15)


def test_patient_double_booking_is_409(clinic):
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    assert clinic.book("consultation", clinic.at(14)).status_code == 201
    response = clinic.book("consultation", clinic.at(14, 30), provider=other)
    assert_problem(response, 409, "slot_unavailable")


def test_chair_is_assigned_and_a_full_clinic_is_409(clinic):
    others = [clinic.add_provider(f"Dr. {n}", NPIS[i + 1]) for i, n in enumerate("BC")]
    patients = [clinic.patient] + [clinic.add_cleared_patient(first_name=f"P{i}")
                                   for i in range(2)]
    chairs = []
    for provider, patient in zip([clinic.doctor, others[0]], patients[:2]):
        response = clinic.book("iv-infusion", clinic.at(9), provider=provider, patient=patient)
        assert response.status_code == 201
        chairs.append(response.get_json()["chair_number"])
    assert sorted(chairs) == [1, 2]
    response = clinic.book("iv-infusion", clinic.at(9), provider=others[1], patient=patients[2])
    assert_problem(response, 409, "slot_unavailable")


def test_outside_working_hours_is_409(clinic):
    assert_problem(clinic.book("consultation", clinic.at(19)), 409, "outside_working_hours")


def test_misaligned_start_is_422(clinic):
    assert_problem(clinic.book("consultation", clinic.at(14, 10)), 422, "misaligned_start")


def test_too_soon_is_422(clinic):
    soon = datetime.now().astimezone() + timedelta(hours=1)
    assert_problem(clinic.book("iv-infusion", soon), 422, "outside_booking_window")


def test_treatment_needs_a_cleared_patient(clinic):
    uncleared = clinic.add_patient(first_name="New")
    response = clinic.book("iv-infusion", clinic.at(9), patient=uncleared)
    assert_problem(response, 409, "clearance_required")


def test_treatment_records_the_ride_home(clinic):
    response = clinic.book("iv-infusion", clinic.at(9), ride_home_confirmed=False)
    assert_problem(response, 422, "ride_home_required")


def test_esketamine_needs_rems_enrolled_patient(clinic):
    patient = clinic.add_cleared_patient(first_name="NotEnrolled")
    response = clinic.book("esketamine", clinic.at(9), patient=patient)
    body = assert_problem(response, 409, "rems_requirements_not_met")
    assert body["missing"] == ["rems_enrolled_patient"]


def test_esketamine_holds_chair_for_dosing_plus_monitoring(clinic):
    booking = clinic.book("esketamine", clinic.at(9)).get_json()
    held = datetime.fromisoformat(booking["hold_until"]) - datetime.fromisoformat(
        booking["start"])
    assert held >= timedelta(minutes=135)


def test_telehealth_needs_the_patient_state(clinic):
    response = clinic.book("consultation", clinic.at(14), patient_state=None)
    assert_problem(response, 422, "validation_failed")
    body = {k: v for k, v in {
        "patient_id": clinic.patient["id"], "provider_id": clinic.doctor["id"],
        "service_type_id": clinic.services["consultation"]["id"],
        "location_id": clinic.virtual["id"], "start": clinic.at(14).isoformat()}.items()}
    assert_problem(clinic.api.post("/api/v1/bookings", json=body), 422,
                   "patient_location_required")


def test_telehealth_patient_outside_licensed_states_is_409(clinic):
    response = clinic.book("consultation", clinic.at(14), patient_state="NM")
    assert_problem(response, 409, "patient_location_not_covered")


def test_in_person_needs_an_arizona_license_not_a_registration(clinic):
    registered = clinic.add_provider(
        "Dr. Out Of State", NPIS[1],
        licenses=[{"jurisdiction": "US-CA", "board": "Medical Board of California"},
                  {"kind": "telehealth-registration"}])
    response = clinic.book("iv-infusion", clinic.at(9), provider=registered)
    assert_problem(response, 409, "provider_not_licensed")
    assert clinic.book("consultation", clinic.at(14), provider=registered).status_code == 201


def test_booking_after_license_expiry_is_refused(clinic):
    expired = clinic.add_provider(
        "Dr. Lapsed", NPIS[1],
        licenses=[{"expires_on": (clinic.day - timedelta(days=1)).isoformat()}])
    assert_problem(clinic.book("consultation", clinic.at(14), provider=expired), 409,
                   "provider_not_licensed")


def test_license_revoked_after_slot_search_is_rechecked_at_booking(clinic, api):
    licenses = api.get(f"/api/v1/providers/{clinic.doctor['id']}/licenses").get_json()
    assert clinic.slots("consultation")
    api.patch(f"/api/v1/providers/{clinic.doctor['id']}/licenses/{licenses[0]['id']}",
              json={"status": "suspended"}, headers={"If-Match": '"v1"'})
    assert_problem(clinic.book("consultation", clinic.at(14)), 409, "provider_not_licensed")


def test_cancel_needs_a_reason_and_frees_the_slot(clinic, api):
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    path = f"/api/v1/bookings/{booking['id']}/cancel"
    assert_problem(api.post(path, json={}), 422, "validation_failed")
    cancelled = api.post(path, json={"reason": "Patient request"}).get_json()
    assert cancelled["status"] == "cancelled" and cancelled["late_cancellation"] is False
    assert clinic.book("consultation", clinic.at(14)).status_code == 201


def test_late_cancellation_is_marked(clinic, api):
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    api.patch(f"/api/v1/service-types/{clinic.services['consultation']['id']}",
              json={"late_cancel_hours": 24 * 14}, headers={"If-Match": '"v1"'})
    cancelled = api.post(f"/api/v1/bookings/{booking['id']}/cancel",
                         json={"reason": "Sick"}).get_json()
    assert cancelled["late_cancellation"] is True


def test_lifecycle_follows_fhir_statuses(clinic, api):
    booking = clinic.book("consultation", clinic.at(14), hold=True).get_json()
    assert booking["status"] == "pending"
    base = f"/api/v1/bookings/{booking['id']}"
    assert api.post(f"{base}/confirm").get_json()["status"] == "booked"
    # A telehealth visit: consent on record, then the location attested again at check-in.
    assert clinic.check_in(booking).get_json()["status"] == "checked-in"
    assert api.post(f"{base}/complete").get_json()["status"] == "fulfilled"
    assert_problem(api.post(f"{base}/cancel", json={"reason": "x"}), 409, "invalid_transition")


def test_illegal_transition_is_409(clinic, api):
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    assert_problem(api.post(f"/api/v1/bookings/{booking['id']}/complete"), 409,
                   "invalid_transition")


def test_no_show_before_the_visit_is_409(clinic, api):
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    assert_problem(api.post(f"/api/v1/bookings/{booking['id']}/no-show"), 409,
                   "invalid_transition")


def test_reschedule_moves_the_booking(clinic, api):
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    path = f"/api/v1/bookings/{booking['id']}/reschedule"
    assert_problem(api.post(path, json={"start": clinic.at(15).isoformat()}), 428,
                   "precondition_required")
    moved = api.post(path, json={"start": clinic.at(14, 30).isoformat()},
                     headers={"If-Match": '"v1"'})
    assert moved.status_code == 200, moved.get_json()
    assert datetime.fromisoformat(moved.get_json()["start"]) == clinic.at(14, 30)
    assert moved.headers["ETag"] == '"v2"'
    stale = api.post(path, json={"start": clinic.at(16).isoformat()},
                     headers={"If-Match": '"v1"'})
    assert_problem(stale, 412, "precondition_failed")


def test_reschedule_into_a_taken_slot_is_409(clinic, api):
    first = clinic.book("consultation", clinic.at(14)).get_json()
    other = clinic.add_patient(first_name="Other")
    assert clinic.book("consultation", clinic.at(16), patient=other).status_code == 201
    response = api.post(f"/api/v1/bookings/{first['id']}/reschedule",
                        json={"start": clinic.at(16).isoformat()}, headers={"If-Match": '"v1"'})
    body = assert_problem(response, 409, "slot_unavailable")
    assert len(body["alternatives"]) == 3  # the same answer a new booking gets
    assert all(datetime.fromisoformat(a["start"]) > clinic.at(16)
               and a["provider_id"] == clinic.doctor["id"] for a in body["alternatives"])


def test_patient_sees_only_own_bookings(clinic, api):
    mine = clinic.book("consultation", clinic.at(14)).get_json()
    other = clinic.add_patient(first_name="Other")
    theirs = clinic.book("consultation", clinic.at(16), patient=other).get_json()
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    listed = api.get("/api/v1/bookings", role="me").get_json()
    assert [b["id"] for b in listed] == [mine["id"]]
    assert_problem(api.get(f"/api/v1/bookings/{theirs['id']}", role="me"), 404,
                   "booking_not_found")


def test_patient_books_for_themselves_only(clinic, api):
    other = clinic.add_patient(first_name="Other")
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    assert_problem(clinic.book("consultation", clinic.at(14), patient=other, role="me"), 404,
                   "patient_not_found")
    assert clinic.book("consultation", clinic.at(14), role="me").status_code == 201


def test_provider_sees_own_bookings_and_their_patients(clinic, api):
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    api.bind("other-doc", "provider", provider_id=other["id"])
    assert api.get(f"/api/v1/bookings/{booking['id']}", role="doc").status_code == 200
    assert api.get(f"/api/v1/patients/{clinic.patient['id']}", role="doc").status_code == 200
    assert_problem(api.get(f"/api/v1/bookings/{booking['id']}", role="other-doc"), 404,
                   "booking_not_found")
    assert_problem(api.get(f"/api/v1/patients/{clinic.patient['id']}", role="other-doc"),
                   404, "patient_not_found")


def test_patient_cannot_check_in(clinic, api):
    booking = clinic.book("consultation", clinic.at(14)).get_json()
    api.bind("me", "patient", patient_id=clinic.patient["id"])
    assert_problem(api.post(f"/api/v1/bookings/{booking['id']}/check-in", role="me"), 403,
                   "forbidden")


def test_list_filters(clinic, api):
    first = clinic.book("consultation", clinic.at(14)).get_json()
    clinic.book("consultation", clinic.at(16), hold=True)
    pending = api.get("/api/v1/bookings?status=pending").get_json()
    assert len(pending) == 1 and pending[0]["status"] == "pending"
    window = api.get("/api/v1/bookings", query_string={
        "starts_from": clinic.at(13).isoformat(),
        "starts_before": clinic.at(15).isoformat()}).get_json()
    assert [b["id"] for b in window] == [first["id"]]


def test_idempotent_booking_replays_the_first_answer(clinic, api):
    key = {"Idempotency-Key": "book-robin-1"}
    first = clinic.book("consultation", clinic.at(14), headers=key)
    again = clinic.book("consultation", clinic.at(14), headers=key)
    assert first.status_code == again.status_code == 201
    assert first.get_json()["id"] == again.get_json()["id"]
    assert len(api.get("/api/v1/bookings").get_json()) == 1


def test_unknown_field_in_booking_is_422(clinic):
    assert_problem(clinic.book("consultation", clinic.at(14), price=10), 422,
                   "validation_failed")


def test_every_change_leaves_a_booking_event(clinic, api, app):
    from sqlalchemy import select

    from service.domain.bookings.history import BookingEvent
    from service.extensions import unit_of_work

    booking = clinic.book("consultation", clinic.at(14), hold=True).get_json()
    base = f"/api/v1/bookings/{booking['id']}"
    api.post(f"{base}/confirm")
    api.post(f"{base}/reschedule", json={"start": clinic.at(15).isoformat()},
             headers={"If-Match": '"v2"'})
    api.post(f"{base}/cancel", json={"reason": "Patient request"})
    with app.app_context(), unit_of_work() as uow:
        kinds = [e.kind.value for e in uow.session.scalars(
            select(BookingEvent).order_by(BookingEvent.id))]
    assert kinds == ["booking.created", "booking.confirmed", "booking.rescheduled",
                     "booking.cancelled"]


def test_a_409s_alternatives_are_read_in_a_read_only_transaction(app, clinic, monkeypatch):
    original = placement.alternatives
    database = app.extensions["clinic.database"]
    seen: list[object] = []

    def checked(uow, wanted, *, now):
        found = original(uow, wanted, now=now)
        with uow:
            if uow.dialect == "postgresql":
                seen.append(uow.session.execute(text("SHOW transaction_read_only")).scalar())
                with pytest.raises(DBAPIError):  # the database refuses a write
                    uow.session.execute(text("CREATE TABLE read_only_check (i int)"))
            else:  # SQLite: the reader engine, whose transactions never take the write lock
                seen.append(uow.session.get_bind() is database.reader)
        return found

    monkeypatch.setattr(placement, "alternatives", checked)
    assert clinic.book("consultation", clinic.at(14)).status_code == 201
    other = clinic.add_patient(first_name="Other")
    body = assert_problem(clinic.book("consultation", clinic.at(14), patient=other), 409,
                          "slot_unavailable")
    assert len(body["alternatives"]) == 3
    assert seen == (["on"] if database.dialect == "postgresql" else [True])
