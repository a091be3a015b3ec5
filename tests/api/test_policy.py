"""The authorization policies (``service/domain/<area>/policy.py``): every route asks one,
the OpenAPI document shows the roles it enforces, and each area's single-record rule
(``can_see``) agrees with its row filter (``visible``) for every kind of key."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from service.db import utcnow
from service.domain.access import services as keys
from service.domain.access.actor import SYSTEM, Actor, Role
from service.domain.access.policy import EVERYONE, Policy, Rule
from service.domain.availability import services as availability
from service.domain.availability.policy import policy as availability_policy
from service.domain.bookings.models import Booking
from service.domain.bookings.policy import policy as bookings_policy
from service.domain.calendar import services as calendar
from service.domain.calendar.policy import policy as calendar_policy
from service.domain.connections import services as connections
from service.domain.connections.policy import policy as connections_policy
from service.domain.connections.secrets import SecretBox
from service.domain.consultations.models import Task, TaskKind
from service.domain.consultations.policy import alerts as alerts_policy
from service.domain.consultations.policy import tasks as tasks_policy
from service.domain.errors import Forbidden
from service.domain.fhir.policy import policy as fhir_policy
from service.domain.patients.policy import policy as patients_policy
from service.domain.series.models import SeriesStatus, TreatmentSeries
from service.domain.series.policy import policy as series_policy
from service.domain.waitlist.policy import entries as waitlist_entries
from service.domain.waitlist.policy import offers as waitlist_offers
from service.domain.webhooks import services as webhooks
from service.domain.webhooks.policy import policy as webhooks_policy
from service.extensions import unit_of_work
from tests.api.test_waitlist import run_job
from tests.factories import NPIS
from tests.scenario import build_clinic

# Routes without a policy action, on purpose: no API key, no patient data.
PUBLIC = {
    "docs_assets.home": "redirects to the docs",
    "api-docs.openapi_swagger_ui": "the docs",
    "api-docs.openapi_json": "the OpenAPI document",
    "docs_assets.swagger_asset": "the docs' static assets",
    "docs_assets.problem_type": "what a problem code means",
    "health.Liveness": "probe",
    "health.Readiness": "probe",
    "calendar.calendar_feed": "the secret token in the URL is the credential",
    "fhir.unsupported": "answers only 404/405 OperationOutcomes, after the key is checked",
    "fhir.Capabilities": "the CapabilityStatement: FHIR clients read it before they have a key",
    "board.day_board": "the day board's page: its data comes from API calls with a key",
    "board.board_asset": "the day board's static files",
}


def _operations(app):
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            handler = getattr(view_class, method.lower()) if view_class else view
            yield rule, method, getattr(handler, "policy_action", None)


def test_every_route_asks_its_area_policy_or_is_public_on_purpose(app):
    undeclared, stale = [], set(PUBLIC)
    for rule, method, declared in _operations(app):
        if rule.endpoint in PUBLIC:
            stale.discard(rule.endpoint)
            assert declared is None, f"{rule.endpoint} is public yet names a policy action"
        elif declared is None:
            undeclared.append(f"{method} {rule.rule} ({rule.endpoint})")
        else:
            policy, action = declared
            assert isinstance(policy, Policy) and action in policy.rules, declared
    assert undeclared == [], "decorate with service.auth.authorize(policy, action)"
    assert stale == set(), "PUBLIC names endpoints that no longer exist"


def test_the_documented_roles_are_the_roles_the_policy_enforces(app, client):
    """The "Roles: ..." line of each operation lists exactly its policy action's roles."""
    spec = client.get("/openapi.json").get_json()
    checked = 0
    for rule, method, declared in _operations(app):
        if declared is None:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        text = spec["paths"][path][method.lower()].get("description", "")
        text = spec["paths"][path][method.lower()].get("summary", "") + "\n" + text
        match = re.search(r"Roles: ([a-z, ]+)\.", text)
        if match is None:  # the booking transitions document their rules in prose
            assert declared == (bookings_policy, "change_status"), (method, path)
            continue
        policy, action = declared
        assert set(match.group(1).split(", ")) == {r.value for r in policy.roles(action)}, (
            method, path)
        checked += 1
    assert checked > 80


# The rule table ---------------------------------------------------------------------------


class Example(Policy):
    name = "example"
    rules = {"read": Rule(EVERYONE),
             "sign": Rule((Role.PROVIDER,), refusal="Only a provider may sign ({role}).",
                          code="clinician_only")}


def test_a_refusal_names_the_allowed_roles_unless_the_rule_words_its_own():
    staff = Actor(key_id=None, role=Role.STAFF)
    Example().require(staff, "read")
    assert Example().allowed(staff, "read") and not Example().allowed(staff, "sign")
    with pytest.raises(Forbidden) as refused:
        Example().require(staff, "sign")
    assert (refused.value.code, refused.value.detail, refused.value.extras) == (
        "clinician_only", "Only a provider may sign (staff).", {})
    with pytest.raises(Forbidden) as generic:
        patients_policy.require(Actor(key_id=None, role=Role.PATIENT), "create")
    assert generic.value.code == "forbidden"
    assert generic.value.extras == {"allowed_roles": ["admin", "staff"]}
    with pytest.raises(LookupError):
        Example().roles("delete")


def test_cancelling_a_series_takes_the_right_to_cancel_a_booking():
    assert series_policy.roles("cancel_remaining") == bookings_policy.roles("cancel")
    assert Role.INTEGRATION not in bookings_policy.roles("cancel")


# can_see agrees with visible ------------------------------------------------------------


@pytest.fixture
def world(app, api):
    """Two providers, three patients, bookings between them, and the rows each area scopes:
    series, alerts, tasks, webhook subscriptions, calendar feed tokens, time off."""
    clinic = build_clinic(api)
    doctor = clinic.doctor
    other = clinic.add_provider("Dr. Bea Lin", NPIS[1])
    patient_a = clinic.patient
    patient_b = clinic.add_patient(first_name="Sam", email="sam@example.com")
    patient_c = clinic.add_patient(first_name="Kim", email="kim@example.com")
    booked = []
    for hour, provider, patient in ((13, doctor, patient_a), (14, other, patient_b),
                                    (15, other, patient_a)):
        response = clinic.book("consultation", clinic.at(hour), provider=provider,
                               patient=patient)
        assert response.status_code == 201, response.get_json()
        booked.append(response.get_json())
    for patient in (patient_a, patient_b, patient_c):
        response = api.post(f"/api/v1/patients/{patient['id']}/assessments",
                            json={"instrument": "PHQ-9", "answers": [0] * 8 + [1]})
        assert response.status_code == 201, response.get_json()
    # Waitlist entries, and offers of two freed slots to two of them.
    run_job(app)
    for patient in (patient_c, patient_a):
        response = api.post("/api/v1/waitlist", json={
            "patient_id": patient["id"], "service_type_id": clinic.services["consultation"]["id"],
            "earliest_date": clinic.day.isoformat(), "latest_date": clinic.day.isoformat(),
            "patient_state": "AZ"})
        assert response.status_code == 201, response.get_json()
    for booking in booked[:2]:
        response = api.post(f"/api/v1/bookings/{booking['id']}/cancel", json={"reason": "x"})
        assert response.status_code == 200, response.get_json()
    assert run_job(app).offered == 2

    def uid(record: dict) -> uuid.UUID:
        return uuid.UUID(record["id"])

    integrations = []
    with app.app_context():
        for name in ("a", "b"):
            issued = keys.issue_key(unit_of_work(), role=Role.INTEGRATION, label=f"int {name}")
            actor = Actor(key_id=issued.record.id, role=Role.INTEGRATION)
            webhooks.create_subscription(unit_of_work(), actor,
                                         url=f"https://hooks.example.com/{name}",
                                         events=["booking.created"], allow_private=False,
                                         now=utcnow())
            integrations.append(actor)
        for owner in (calendar.FeedOwner(provider_id=uid(doctor)),
                      calendar.FeedOwner(provider_id=uid(other)),
                      calendar.FeedOwner(patient_id=uid(patient_a))):
            calendar.create_feed_token(unit_of_work(), SYSTEM, owner, label="feed",
                                       now=utcnow())
        start = utcnow() + timedelta(days=60)
        for provider in (doctor, other):
            availability.add_time_off(unit_of_work(), SYSTEM, uid(provider), starts_at=start,
                                      ends_at=start + timedelta(days=1))
            connections.create_connection(
                unit_of_work(), SYSTEM, uid(provider), now=utcnow(), kind="push",
                label="shifts", rules=connections.ConnectionRules(box=SecretBox(None)))
        with unit_of_work() as uow:
            common = {"service_type_id": uid(clinic.services["iv-infusion"]),
                      "location_id": uid(clinic.clinic), "protocol": "iv-induction",
                      "status": SeriesStatus.ACTIVE, "planned_sessions": 6,
                      "first_start": start}
            led = TreatmentSeries(patient_id=uid(patient_a), provider_id=uid(doctor), **common)
            anyone = TreatmentSeries(patient_id=uid(patient_b), provider_id=None, **common)
            uow.session.add_all([led, anyone])
            uow.session.flush()
            # The other provider has a session in the doctor's series.
            uow.session.get(Booking, uid(booked[2])).series_id = led.id
            for booking in booked[:2]:
                uow.session.add(Task(kind=TaskKind.REMS_MONITORING_FORM,
                                     booking_id=uid(booking),
                                     patient_id=uuid.UUID(booking["patient_id"]),
                                     provider_id=uuid.UUID(booking["provider_id"]),
                                     due_at=start))
            uow.commit()
    actors = [
        Actor(key_id=uuid.uuid4(), role=Role.ADMIN),
        Actor(key_id=uuid.uuid4(), role=Role.STAFF),
        *integrations,
        Actor(key_id=uuid.uuid4(), role=Role.PROVIDER, provider_id=uid(doctor)),
        Actor(key_id=uuid.uuid4(), role=Role.PROVIDER, provider_id=uid(other)),
        Actor(key_id=uuid.uuid4(), role=Role.PROVIDER, provider_id=uuid.uuid4()),
        *(Actor(key_id=uuid.uuid4(), role=Role.PATIENT, patient_id=uid(p))
          for p in (patient_a, patient_b, patient_c)),
    ]
    return actors


SCOPED = [patients_policy, bookings_policy, series_policy, alerts_policy, tasks_policy,
          webhooks_policy, calendar_policy, availability_policy, fhir_policy,
          waitlist_entries, waitlist_offers, connections_policy]


@pytest.mark.parametrize("policy", SCOPED, ids=lambda p: p.name)
def test_can_see_agrees_with_visible_for_every_kind_of_key(app, world, policy):
    model = policy.model
    with app.app_context(), unit_of_work(read_only=True) as uow:
        rows = list(uow.session.scalars(select(model)))
        assert len(rows) >= 2
        answers = set()
        for actor in world:
            visible = set(uow.session.scalars(policy.visible(actor, select(model.id))))
            assert {row.id for row in rows if policy.can_see(actor, row)} == visible, actor
            answers.add(frozenset(visible))
    assert len(answers) > 1, "every key sees the same rows: the test shows nothing"
