"""Who may read and keep the on-call rota: clinic staff and providers read it (who is told
of an urgent alert, in which order); only an administrator changes it. Every row is
visible to those who may read it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from service.domain.access.actor import Role
from service.domain.access.policy import CLINICAL, Policy, Rule

ADMIN_ONLY = (Role.ADMIN,)


class OnCallPolicy(Policy):
    name = "on-call-contacts"
    rules: ClassVar[Mapping[str, Rule]] = {
        "list": Rule(CLINICAL),
        "read": Rule(CLINICAL),
        "create": Rule(ADMIN_ONLY),
        "update": Rule(ADMIN_ONLY),
        "deactivate": Rule(ADMIN_ONLY),
    }


policy = OnCallPolicy()
