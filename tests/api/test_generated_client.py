"""The OpenAPI document is good enough for code generators: a Python client generated from
``openapi/openapi.json`` by openapi-python-client (pinned in the dev extras), with every
warning an error, books a visit through its typed models against a real server (werkzeug's,
in a thread, on a free loopback port, serving the test app on the session's database).

Without the generator installed the test is skipped locally and fails when ``CI=true``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pytest

from tests.http_server import serving
from tests.scenario import PHOENIX, build_clinic

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "clinic_api_client"
# No post hooks (ruff): formatting the generated code only costs time here.
CONFIG = f"package_name_override: {PACKAGE}\npost_hooks: []\n"


def _generator_or_skip() -> None:
    if GENERATOR.exists():
        return
    message = f"openapi-python-client is not installed ({GENERATOR}); `make install` adds it"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The client package, generated into a temporary directory and imported."""
    _generator_or_skip()
    root = tmp_path_factory.mktemp("generated-client")
    config = root / "config.yaml"
    config.write_text(CONFIG)
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(DOCUMENT), "--output-path",
         str(root / PACKAGE), "--meta", "none", "--config", str(config), "--fail-on-warning"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture
def server(app) -> Iterator[str]:
    with serving(app, "client-server") as url:
        yield url


def _api(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.api.{name}")


def test_a_generated_client_books_through_typed_models(generated, server, api):
    clinic = build_clinic(api)
    models = importlib.import_module(f"{PACKAGE}.models")
    client = generated.AuthenticatedClient(base_url=server, token=api.tokens["staff"],
                                           raise_on_unexpected_status=True)
    service_type = uuid.UUID(clinic.services["iv-infusion"]["id"])
    patient = uuid.UUID(clinic.patient["id"])

    # searchSlots: typed slots, their instants datetimes with the location's offset
    found = _api("slots.search_slots").sync(
        client=client, service_type=service_type, start=clinic.day.isoformat(),
        end=clinic.day.isoformat(), location_id=uuid.UUID(clinic.clinic["id"]))
    assert isinstance(found, models.SlotList) and found.slots
    slot = found.slots[0]
    assert isinstance(slot.start, datetime) and isinstance(slot.end, datetime)
    assert slot.start.utcoffset() == clinic.at(8).utcoffset()

    # createBooking (held: pending until confirmed)
    wanted = models.BookingCreate(
        patient_id=patient, provider_id=slot.provider_id, service_type_id=service_type,
        location_id=slot.location_id, start=slot.start, ride_home_confirmed=True, hold=True)
    booking = _api("bookings.create_booking").sync(client=client, body=wanted)
    assert isinstance(booking, models.Booking), booking
    assert isinstance(booking.id, uuid.UUID) and booking.start == slot.start
    assert booking.status.value == "pending"

    # getBooking: every always-present member is typed, none "unset"
    read = _api("bookings.get_booking").sync(booking.id, client=client)
    assert isinstance(read, models.Booking)
    assert (read.id, read.version, read.start, read.end) == (
        booking.id, booking.version, booking.start, booking.end)
    assert isinstance(read.created_at, datetime) and read.created_at.tzinfo is not None
    # One rendering of time: the location's zone and offset, in POST and GET alike
    assert read.timezone == booking.timezone == "America/Phoenix"
    assert read.start.utcoffset() == booking.start.utcoffset() == slot.start.utcoffset()
    assert read.patient_local_start is None  # in person: no patient-local time
    shown = _api("bookings.get_booking").sync(booking.id, client=client,
                                              timezone="America/New_York")
    assert shown.start == read.start and shown.start.utcoffset() != read.start.utcoffset()

    # 409 slot_unavailable: a typed Problem that keeps its alternatives
    taken = _api("bookings.create_booking").sync(client=client, body=wanted)
    assert isinstance(taken, models.Problem), taken
    assert (taken.status, taken.code) == (409, "slot_unavailable")
    assert taken.alternatives
    alternative = taken.alternatives[0]
    assert isinstance(alternative.start, datetime) and alternative.start > slot.start
    assert alternative.provider_id == slot.provider_id
    assert alternative.start.astimezone(PHOENIX).date() >= clinic.day
    assert alternative.start.utcoffset() == slot.start.utcoffset()

    # confirmBooking, then cancelBooking
    confirmed = _api("bookings.confirm_booking").sync(booking.id, client=client)
    assert isinstance(confirmed, models.Booking) and confirmed.status.value == "booked"
    cancelled = _api("bookings.cancel_booking").sync(
        booking.id, client=client, body=models.Cancel(reason="Patient asked to cancel"))
    assert isinstance(cancelled, models.Booking) and cancelled.status.value == "cancelled"
    assert isinstance(cancelled.cancelled_at, datetime)

    # listBookings: the page's links beside X-Pagination
    listed = _api("bookings.list_bookings").sync_detailed(client=client, page_size=1)
    assert listed.status_code == 200 and [b.id for b in listed.parsed] == [booking.id]
    assert listed.headers["Link"] == (
        '</api/v1/bookings?page_size=1&page=1>; rel="first", '
        '</api/v1/bookings?page_size=1&page=1>; rel="last"')
