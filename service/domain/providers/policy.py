"""Who may read and change the provider directory: everyone reads it (it is public to the
clinic's keys, the FHIR Practitioner facade included); clinic staff keep it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from service.domain.access.policy import EVERYONE, STAFF, Policy, Rule


class ProviderPolicy(Policy):
    name = "providers"
    rules: ClassVar[Mapping[str, Rule]] = {
        "list": Rule(EVERYONE),
        "read": Rule(EVERYONE),
        "create": Rule(STAFF),
        "update": Rule(STAFF),
        "deactivate": Rule(STAFF),
        "list_licenses": Rule(EVERYONE),
        "read_license": Rule(EVERYONE),
        "add_license": Rule(STAFF),
        "update_license": Rule(STAFF),
        "expiring_licenses": Rule(STAFF),
    }
    # Rows: every provider and license is visible to every key (the default).


policy = ProviderPolicy()
