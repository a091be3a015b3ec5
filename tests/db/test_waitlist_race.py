"""Two patients accepting one freed slot at once cannot both win.

The slot is held for one offered patient at a time (a pending booking); the offer row is
locked by whoever decides it. The race that can happen: the first patient accepts at the
last moment while the scheduler's job, a second later, finds the hold expired, releases it
to the next patient, who accepts at once. Whatever the interleaving, exactly one of them
ends up booked and the slot holds exactly one live booking (both databases)."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from service.domain.access.actor import Actor, Role
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.errors import DomainError
from service.domain.waitlist import services as waitlist
from service.domain.waitlist.models import OfferStatus, WaitlistOffer
from service.extensions import unit_of_work
from tests.api.test_waitlist import cancel, join, ok, run_job
from tests.scenario import build_clinic

ROUNDS = 4


@pytest.fixture
def clinic(app, api):
    scenario = build_clinic(api)
    run_job(app)
    return scenario


def _patient(patient: dict[str, Any]) -> Actor:
    return Actor(key_id=None, role=Role.PATIENT, patient_id=uuid.UUID(patient["id"]))


def _open_offer(app, patient: dict[str, Any]) -> WaitlistOffer | None:
    with app.app_context(), unit_of_work() as uow:
        return uow.session.scalar(select(WaitlistOffer).where(
            WaitlistOffer.patient_id == uuid.UUID(patient["id"]),
            WaitlistOffer.status == OfferStatus.OFFERED))


def _race(app, first: dict, second: dict, offer: WaitlistOffer) -> dict[str, str]:
    """The first patient accepts a second before the hold ends while the job runs a second
    after it and the second patient accepts whatever they are offered."""
    barrier = threading.Barrier(2)
    outcome: dict[str, str] = {}

    def accept_late() -> None:
        with app.app_context():
            barrier.wait()
            try:
                waitlist.accept_offer(unit_of_work(), _patient(first), offer.id,
                                      now=offer.expires_at - timedelta(seconds=1))
                outcome["first"] = "won"
            except DomainError as refused:
                outcome["first"] = refused.code

    def expire_and_accept() -> None:
        with app.app_context():
            barrier.wait()
            run_job(app, at=offer.expires_at + timedelta(seconds=1))
            mine = _open_offer(app, second)
            if mine is None:
                outcome["second"] = "no_offer"
                return
            try:
                waitlist.accept_offer(unit_of_work(), _patient(second), mine.id,
                                      now=offer.expires_at + timedelta(seconds=2))
                outcome["second"] = "won"
            except DomainError as refused:
                outcome["second"] = refused.code

    threads = [threading.Thread(target=accept_late), threading.Thread(target=expire_and_accept)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcome


def test_two_patients_accepting_one_slot_at_once_cannot_both_win(app, api, clinic):
    winners = []
    for index in range(ROUNDS):
        start = clinic.at(13 + index)
        holder = clinic.add_patient(first_name=f"Holder{index}")
        first = clinic.add_patient(first_name=f"First{index}")
        second = clinic.add_patient(first_name=f"Second{index}")
        visit = ok(clinic.book("consultation", start, patient=holder), 201)
        for patient in (first, second):
            join(api, clinic, patient)
        ok(cancel(api, visit))
        run_job(app)
        offer = _open_offer(app, first)
        assert offer is not None
        outcome = _race(app, first, second, offer)
        assert sorted(outcome.values()).count("won") == 1, outcome
        winners.append(next(k for k, v in outcome.items() if v == "won"))
        with app.app_context(), unit_of_work() as uow:
            live = list(uow.session.scalars(select(Booking).where(
                Booking.provider_id == uuid.UUID(clinic.doctor["id"]),
                Booking.starts_at == datetime.fromisoformat(visit["start"]),
                Booking.status != BookingStatus.CANCELLED)))
            assert [b.status for b in live] == [BookingStatus.BOOKED], outcome
            winner = first if outcome.get("first") == "won" else second
            assert live[0].patient_id == uuid.UUID(winner["id"])
        # Both entries leave the race closed or waiting, never two filled.
        for patient in (first, second):
            api_entries = ok(api.get("/api/v1/waitlist",
                                     query_string={"patient_id": patient["id"]}))
            assert [e["status"] for e in api_entries] in (["filled"], ["waiting"])
            if api_entries[0]["status"] == "waiting":  # out of the next round's way
                ok(api.request("DELETE", f"/api/v1/waitlist/{api_entries[0]['id']}"))
    assert winners  # which one won depends on the interleaving; never both


def test_a_double_click_accepts_once(app, api, clinic):
    holder = clinic.add_patient(first_name="Holder")
    waiting = clinic.add_patient(first_name="Waiting")
    visit = ok(clinic.book("consultation", clinic.at(13), patient=holder), 201)
    join(api, clinic, waiting)
    ok(cancel(api, visit))
    run_job(app)
    offer = _open_offer(app, waiting)
    barrier = threading.Barrier(2)
    results: list[str] = []
    lock = threading.Lock()

    def accept() -> None:
        with app.app_context():
            barrier.wait()
            try:
                waitlist.accept_offer(unit_of_work(), _patient(waiting), offer.id,
                                      now=offer.offered_at + timedelta(seconds=5))
                result = "won"
            except DomainError as refused:
                result = refused.code
            with lock:
                results.append(result)

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == ["offer_not_open", "won"], results
