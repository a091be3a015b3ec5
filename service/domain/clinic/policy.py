"""Who may read and change the clinic's locations and service types: everyone reads them;
clinic staff keep them. Every row is visible to every key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from service.domain.access.policy import EVERYONE, STAFF, Policy, Rule

CATALOG: Mapping[str, Rule] = {
    "list": Rule(EVERYONE),
    "read": Rule(EVERYONE),
    "create": Rule(STAFF),
    "update": Rule(STAFF),
    "deactivate": Rule(STAFF),
}


class LocationPolicy(Policy):
    name = "locations"
    rules: ClassVar[Mapping[str, Rule]] = CATALOG


class ServiceTypePolicy(Policy):
    name = "service-types"
    rules: ClassVar[Mapping[str, Rule]] = CATALOG


locations = LocationPolicy()
service_types = ServiceTypePolicy()
