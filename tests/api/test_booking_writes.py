"""What a booking writes, and in how many statements (issue 14): every row of the change
(the booking, its history row, its reminders, the change feed, the webhook deliveries, the
audit row) in one transaction; on PostgreSQL in at most 7 statements (and one a webhook
delivery), the recipients read with the parties and the history row written by the change
feed's statement."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event, func, select

from service.domain.audit.models import AuditEvent
from service.domain.availability import versions
from service.domain.bookings.history import BookingEvent
from service.domain.calendar.models import BookingChange, WebhookDelivery
from service.domain.reminders.models import Reminder
from tests.api.test_directory import assert_problem
from tests.factories import NPIS
from tests.scenario import build_clinic

MOST_STATEMENTS_ON_POSTGRESQL = 7


@pytest.fixture
def clinic(api):
    return build_clinic(api)


def _rows(session, model, *where) -> list:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(model).where(*where)))


def test_a_booking_writes_every_row_in_few_statements(app, api, clinic):
    hooks = [api.post("/api/v1/webhooks", role="integration", json={
        "url": f"https://ehr.example.com/hooks/{n}", "events": events}).get_json()
        for n, events in enumerate((["booking.created"], ["booking.cancelled"]))]
    warm = clinic.book("consultation", clinic.at(14))  # the key is known from now on
    assert warm.status_code == 201, warm.get_json()
    database = app.extensions["clinic.database"]
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(database.writer, "before_cursor_execute", count)
    try:
        response = clinic.book("consultation", clinic.at(13))
    finally:
        event.remove(database.writer, "before_cursor_execute", count)
    assert response.status_code == 201, response.get_json()
    booking_id = uuid.UUID(response.get_json()["id"])
    # The tests look the key up on every request (no key cache); a subscription asking for
    # the change adds its delivery's row.
    statements = [s for s in statements if "FROM api_keys" not in s]
    if database.dialect == "postgresql":
        assert len(statements) <= MOST_STATEMENTS_ON_POSTGRESQL + 1, [
            s[:40] for s in statements]
        # Who hears of it is read with the parties, in their query.
        assert [s for s in statements if "webhook_subscriptions" in s] == [statements[0]]
        assert "FROM patients" in statements[0]

    with database.read_sessions() as session:
        history = _rows(session, BookingEvent, BookingEvent.booking_id == booking_id)
        assert [h.kind.value for h in history] == ["booking.created"]
        assert history[0].actor_key_id is not None and history[0].occurred_at is not None
        assert _rows(session, Reminder, Reminder.booking_id == booking_id)
        assert [c.kind for c in _rows(session, BookingChange,
                                      BookingChange.booking_id == booking_id)] == [
            "booking.created"]
        delivered = [d.subscription_id for d in session.scalars(select(WebhookDelivery))]
        assert delivered == [uuid.UUID(hooks[0]["id"])] * 2  # only the one that asked for it
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.resource_id == str(booking_id))) == 1


def test_history_rows_follow_the_changes_of_a_booking(app, api, clinic):
    made = clinic.book("consultation", clinic.at(13), hold=True)
    assert made.status_code == 201, made.get_json()
    booking = made.get_json()
    for action, body in (("confirm", None), ("cancel", {"reason": "moved away"})):
        response = api.post(f"/api/v1/bookings/{booking['id']}/{action}", json=body)
        assert response.status_code == 200, response.get_json()
    database = app.extensions["clinic.database"]
    with database.read_sessions() as session:
        history = list(session.scalars(
            select(BookingEvent).where(BookingEvent.booking_id == uuid.UUID(booking["id"]))
            .order_by(BookingEvent.id)))
        changes = list(session.scalars(
            select(BookingChange.kind).where(BookingChange.booking_id == uuid.UUID(booking["id"]))
            .order_by(BookingChange.seq)))
    assert [h.kind.value for h in history] == changes == [
        "booking.created", "booking.confirmed", "booking.cancelled"]
    assert all(h.actor_key_id is not None for h in history)


def test_a_booking_bumps_its_provider_its_patient_and_the_chairs_it_holds(app, clinic):
    database = app.extensions["clinic.database"]
    provider = versions.provider_scope(uuid.UUID(clinic.doctor["id"]))
    patient = versions.patient_scope(uuid.UUID(clinic.patient["id"]))
    chairs = versions.chairs_scope(uuid.UUID(clinic.clinic["id"]))
    video_chairs = versions.chairs_scope(uuid.UUID(clinic.virtual["id"]))

    def read() -> dict[str, int]:
        with database.read_sessions() as session:
            return versions.read(session, [provider, patient, chairs, video_chairs])

    before = read()
    for service, start, chair in (("consultation", clinic.at(13), 0),
                                  ("iv-infusion", clinic.at(9), 1)):
        made = clinic.book(service, start)
        assert made.status_code == 201, made.get_json()
        after = read()
        assert {scope: after[scope] - before[scope] for scope in after} == {
            provider: 1, patient: 1, chairs: chair, video_chairs: 0, versions.ALL: 0}
        before = after


def test_a_booking_names_the_first_party_it_cannot_find(api, clinic):
    unknown = {"id": str(uuid.uuid4())}
    for parties, code in (({"patient": unknown, "provider": unknown,
                            "service_type_id": unknown["id"]}, "patient_not_found"),
                          ({"provider": unknown, "location": unknown}, "provider_not_found"),
                          ({"service_type_id": unknown["id"], "location": unknown},
                           "service_type_not_found"),
                          ({"location": unknown}, "location_not_found")):
        assert_problem(clinic.book("consultation", clinic.at(13), **parties), 404, code)
    made = clinic.book("consultation", clinic.at(13))
    assert made.status_code == 201, made.get_json()
    # A provider key books only its own visits, even with a patient it sees (every party
    # found by the one query).
    other = clinic.add_provider("Dr. Ben Cole", NPIS[1])
    api.bind("doc", "provider", provider_id=clinic.doctor["id"])
    assert_problem(clinic.book("consultation", clinic.at(15), provider=other, role="doc"),
                   404, "provider_not_found")
