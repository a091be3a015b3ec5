"""A layout that mirrors itself: every area of ``service/resources`` (HTTP) has its
``service/domain`` (rules) folder of the same name, and back; an area is a package or a
module. The few that exist on one side only say why, below."""

from __future__ import annotations

from pathlib import Path

import service

ROOT = Path(service.__file__).parent
NOT_AREAS = {"__init__", "__pycache__", "common", "fields", "errors"}  # shared helpers

# Areas with nothing to say over HTTP (used by the other areas' rules).
DOMAIN_ONLY = {
    "time",  # the clinic's time zone arithmetic
    "records",  # paging and partial updates, shared by every area
    "events",  # the base class of domain events
    "retries",  # the backoff of the outboxes
    "outbox",  # the one outbox runner (reminders, webhooks), driven by the scheduler
    "recipients",  # who hears of a booking change (webhooks, write-back calendars): both
    # outbox handlers' one read a transaction
    "json_rows",  # rows handed to a statement as one JSON parameter (the change feed's)
}
# HTTP surfaces with no rules of their own.
RESOURCES_ONLY = {
    "board",  # the front-desk page: reads bookings and consultations through their use cases
    "docs",  # Swagger UI assets
    "health",  # /healthz and /readyz: the process and the database, no clinic rule
    "slots",  # GET /slots: the availability area's search as a resource of its own
}


def _areas(layer: str) -> set[str]:
    return {p.stem for p in (ROOT / layer).iterdir()
            if (p.is_dir() or p.suffix == ".py") and p.stem not in NOT_AREAS}


def test_resources_and_domain_have_the_same_areas() -> None:
    resources, domain = _areas("resources"), _areas("domain")
    assert resources - domain == RESOURCES_ONLY, "an HTTP area without its domain folder"
    assert domain - resources == DOMAIN_ONLY, "a domain area without its HTTP folder"
