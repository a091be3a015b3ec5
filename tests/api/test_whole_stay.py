"""The whole stay: a booking says when the patient may leave (the visit plus its monitoring
or recovery), and calendars and FHIR Appointments show that stay, not the dosing alone."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.api.test_calendar import events, feed_token, fetch, parse
from tests.api.test_fhir import fhir_get, resources
from tests.scenario import build_clinic


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def test_a_booking_says_when_the_patient_may_leave(clinic):
    spray = clinic.book("esketamine", clinic.at(9)).get_json()
    iv = clinic.book("iv-infusion", clinic.at(10, day=clinic.day + timedelta(days=1))).get_json()
    video = clinic.book("consultation", clinic.at(14)).get_json()
    # Esketamine: 15 minutes of dosing, 2 hours of monitoring; IV: 45 minutes and 1 hour.
    assert datetime.fromisoformat(spray["leaves_at"]) == clinic.at(11, 15)
    assert datetime.fromisoformat(iv["leaves_at"]) == clinic.at(
        11, 45, day=clinic.day + timedelta(days=1))
    assert datetime.fromisoformat(video["leaves_at"]) == clinic.at(15)


def test_calendars_and_fhir_show_the_whole_stay(clinic, api):
    spray = clinic.book("esketamine", clinic.at(9)).get_json()
    found = events(parse(fetch(api, feed_token(api, clinic))))
    visit = found[spray["id"]]
    assert visit.decoded("DTEND") == clinic.at(11, 15)
    assert "(135 min)" in str(visit["SUMMARY"])

    appointment = {r["id"]: r for r in resources(fhir_get(api, "Appointment"))}[spray["id"]]
    assert appointment["minutesDuration"] == 135
    assert datetime.fromisoformat(appointment["end"].replace("Z", "+00:00")) == clinic.at(11, 15)
