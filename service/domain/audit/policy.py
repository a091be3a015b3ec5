"""Who may read the audit trail: admins only, every row. (Everyone's requests are written
to it; nobody changes it.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from service.domain.access.actor import Role
from service.domain.access.policy import Policy, Rule


class AuditPolicy(Policy):
    name = "audit"
    rules: ClassVar[Mapping[str, Rule]] = {
        "read": Rule((Role.ADMIN,)),
    }


policy = AuditPolicy()
