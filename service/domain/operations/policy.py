"""Who may read the service's own figures (``GET /metrics``): admins only. The figures hold
no patient data, but they show load and error rates an outsider has no business seeing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from service.domain.access.actor import Role
from service.domain.access.policy import Policy, Rule


class OperationsPolicy(Policy):
    name = "operations"
    rules: ClassVar[Mapping[str, Rule]] = {
        "read_metrics": Rule((Role.ADMIN,)),
    }


policy = OperationsPolicy()
