"""Authorization: one policy per area says who may do what, and which rows an actor sees.

Each area's ``policy.py`` declares a ``Policy`` (anchor: bemserver-core's
``authorization.py`` and the per-model rules it reads):

- ``rules``: action -> ``Rule``, the roles that may do it. Routes ask ``require`` before
  calling their use case (``service.auth.authorize`` also prints the roles in the OpenAPI
  document); a use case asks ``require`` or ``allowed`` for the finer rules only it can
  decide (which status transition, clinician-only steps).
- ``visible(actor, query)``: the row filter lists apply.
- ``load(session, actor, id)``: a single read through that filter. A row the actor may not
  see is "not found" (the area's own 404), never 403: a key learns nothing about records
  that are not its own.
- ``can_see(actor, record)``: the same rule for one record already in hand (a test checks
  that it agrees with ``visible`` for every role).

Role rules are plain data, so a policy module reads as the table of its area's access.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import ExecutableOption

from service.domain.access.actor import Actor, Role
from service.domain.errors import Forbidden, InvalidInput, NotFound

# The role groups the areas' rules are written with (in the order the API documents them).
EVERYONE: tuple[Role, ...] = tuple(Role)
STAFF: tuple[Role, ...] = (Role.ADMIN, Role.STAFF)
CLINICAL: tuple[Role, ...] = (*STAFF, Role.PROVIDER)


@dataclass(frozen=True)
class Rule:
    """Who may do one action. ``refusal``: the detail of the 403 (``{role}`` is the caller's
    role), for rules a use case checks in words of its own; without it the refusal is the
    generic one, listing ``allowed_roles``."""

    roles: tuple[Role, ...]
    refusal: str | None = None
    code: str = "forbidden"


@dataclass(frozen=True)
class Missing:
    """The "not found" of an area's rows (also what a row the actor may not see answers)."""

    detail: str
    code: str

    def error(self) -> NotFound:
        return NotFound(self.detail, code=self.code)


class Policy:
    """The rules of one area; subclasses set ``name``, ``rules`` and, for areas whose rows
    are scoped, ``model``, ``missing`` and ``visible`` / ``can_see``."""

    name: ClassVar[str]
    rules: ClassVar[Mapping[str, Rule]]
    model: ClassVar[Any] = None  # the rows visible() filters and load() reads
    missing: ClassVar[Missing] = Missing("Not found.", code="not_found")

    def rule(self, action: str) -> Rule:
        try:
            return self.rules[action]
        except KeyError:
            raise LookupError(f"The {self.name} policy has no action {action!r}.") from None

    def roles(self, action: str) -> tuple[Role, ...]:
        return self.rule(action).roles

    def allowed(self, actor: Actor, action: str) -> bool:
        return actor.role in self.rule(action).roles

    def require(self, actor: Actor, action: str) -> None:
        """Refuse (403) an actor whose role may not do ``action``."""
        rule = self.rule(action)
        if actor.role in rule.roles:
            return
        if rule.refusal is None:
            raise Forbidden(f"The {actor.role.value} role may not do this.", code=rule.code,
                            allowed_roles=sorted(rule.roles))
        raise Forbidden(rule.refusal.format(role=actor.role.value), code=rule.code)

    def _by_id(self, lock: bool, options: tuple[ExecutableOption, ...]) -> Select:
        """The statement reading one row by its id (a bound parameter), built once per kind
        of read: reused, it keeps what SQLAlchemy derives from it (its cache key), so a read
        whose ``visible`` adds nothing skips that work."""
        cache: dict[tuple[bool, tuple[ExecutableOption, ...]], Select] = (
            self.__dict__.setdefault("_statements", {}))
        query = cache.get((lock, options))
        if query is None:
            query = select(self.model).where(self.model.id == bindparam("record_id"))
            if options:
                query = query.options(*options)
            if lock:
                query = query.with_for_update()
            if len(cache) < 16:  # kinds of read, not reads (options are module constants)
                cache[(lock, options)] = query
        return query

    def visible(self, actor: Actor, query: Select) -> Select:
        """Restrict a query over this area's rows to those the actor may see (default: all)."""
        return query

    def can_see(self, actor: Actor, record: Any) -> bool:
        """Whether the actor may see this one record (default: every record)."""
        return True

    def load(self, session: Session, actor: Actor, record_id: uuid.UUID, *,
             lock: bool = False, options: Sequence[ExecutableOption] = ()) -> Any:
        """One row by id, if the actor may see it (locked for update on request; loader
        ``options``: what the same statement reads with it)."""
        query = self.visible(actor, self._by_id(lock, tuple(options)))
        record = session.scalar(query, {"record_id": record_id})
        if record is None:
            raise self.missing.error()
        return record


def acts_for_provider(actor: Actor, provider_id: uuid.UUID | None) -> bool:
    """A provider key acts only for its own provider; other keys act for any provider."""
    return actor.role is not Role.PROVIDER or provider_id == actor.provider_id


# API keys --------------------------------------------------------------------------------


class KeyPolicy(Policy):
    """API keys are issued and revoked by the clinic (the command line, or an admin or staff
    key through ``/api/v1/api-keys``: staff issue patient keys only). A provider key is bound
    to one provider and a patient key to one patient; no other key is bound to anyone. Every
    key may ask who it is (``/me``)."""

    name = "access"
    rules: ClassVar[Mapping[str, Rule]] = {
        "list_keys": Rule(STAFF),
        "create_key": Rule(STAFF),
        "read_key": Rule(STAFF),
        "revoke_key": Rule(STAFF),
        "me": Rule(EVERYONE),
    }
    BOUND: ClassVar[tuple[Role, ...]] = (Role.PROVIDER, Role.PATIENT)

    def check_binding(self, role: Role, *, provider_id: uuid.UUID | None,
                      patient_id: uuid.UUID | None) -> None:
        binding = {Role.PROVIDER: provider_id, Role.PATIENT: patient_id}
        for bound in self.BOUND:
            if role is bound and binding[bound] is None:
                raise InvalidInput(f"A {bound.value} key must be bound to a {bound.value}.",
                                   code="key_binding")
        for bound in self.BOUND:
            if role is not bound and binding[bound] is not None:
                raise InvalidInput(f"Only a {bound.value} key is bound to a {bound.value}.",
                                   code="key_binding")


keys = KeyPolicy()
