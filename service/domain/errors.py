"""Domain errors: what went wrong, in the clinic's words, with a stable machine code.

The HTTP layer (``service/errors.py``) maps each category to a status; the domain never
speaks HTTP. ``register_constraint`` ties a database constraint's name to the error its
violation means, so a race caught by the database answers exactly like the Python check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class DomainError(Exception):
    code = "domain_error"
    title = "The request breaks a rule of the clinic"

    def __init__(self, detail: str, *, code: str | None = None, title: str | None = None,
                 **extras: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        if title:
            self.title = title
        self.extras = extras


class NotFound(DomainError):
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    title = "Conflict with the current state"


class InvalidInput(DomainError):
    code = "invalid_input"
    title = "Invalid input"


class InvalidState(DomainError):
    code = "invalid_state"
    title = "Not allowed in the current state"


class Forbidden(DomainError):
    code = "forbidden"
    title = "Not allowed for this caller"


class Unauthenticated(DomainError):
    code = "unauthenticated"
    title = "Authentication required"


class PreconditionFailed(DomainError):
    code = "precondition_failed"
    title = "The resource changed since it was read"


class Gone(DomainError):
    code = "gone"
    title = "No longer available"


ConstraintError = Callable[[], DomainError]
_CONSTRAINTS: dict[str, ConstraintError] = {}


def register_constraint(name: str, error: ConstraintError) -> None:
    """Declare what a violation of the named database constraint means."""
    _CONSTRAINTS[name] = error


def constraint_error(name: str | None) -> DomainError | None:
    if name and name in _CONSTRAINTS:
        return _CONSTRAINTS[name]()
    return None
