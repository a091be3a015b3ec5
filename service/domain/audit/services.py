"""The audit trail: exactly one row per request that reads or writes patient data.

The HTTP layer opens an ``AuditContext`` for such a request (who, which resource, which
action). The row is then written in one of two ways:

- with the change: ``attach`` listens to the write sessions; the first transaction of the
  request that changes clinic data gets the row added just before it commits (outcome
  "success"), so the row and the change commit or roll back together;
- otherwise, once the answer is known, in a small transaction of its own (``record``): reads,
  refusals (403, someone else's record answered 404), failed changes (rolled back, so the row
  says "failed", never "success"), unauthenticated calls.

The row names the patient the data belongs to (found from the ids in the path, the record
created, or the ``patient_id`` asked for), never a clinical value or a name.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, event, select
from sqlalchemy.orm import Session, sessionmaker

from service.domain.access.actor import Actor, Role
from service.domain.audit.models import (
    DENIED_OUTCOMES,
    AuditAction,
    AuditEvent,
    AuditOutcome,
)
from service.domain.bookings.models import Booking, IdempotencyRecord
from service.domain.consultations.models import (
    Alert,
    Assessment,
    ClearanceDecision,
    InPersonEvaluation,
    Screening,
    SideEffect,
    Task,
    VitalSign,
)
from service.domain.errors import Forbidden
from service.domain.patients.models import Patient
from service.domain.records import Page, paginate
from service.domain.reminders.models import Reminder
from service.domain.series.models import TreatmentSeries
from service.uow import UnitOfWork


@dataclass
class AuditContext:
    """What one request does to patient data (filled in by the HTTP layer)."""

    resource_type: str
    action: AuditAction
    method: str
    request_id: str
    client_address: str | None
    path_ids: dict[str, uuid.UUID] = field(default_factory=dict)  # in path order
    patient_hint: uuid.UUID | None = None  # a patient_id asked for in the query or body
    actor: Actor | None = None
    recorded: bool = False  # the row is written (with the change, or on its own)
    created: tuple[uuid.UUID, uuid.UUID | None] | None = None  # (record id, its patient)


# The records a "create" makes, by resource type: their id becomes the row's resource id.
CREATED_MODELS: dict[str, type] = {
    "patient": Patient, "booking": Booking, "series": TreatmentSeries,
    "screening": Screening, "clearance_decision": ClearanceDecision,
    "in_person_evaluation": InPersonEvaluation, "vital_sign": VitalSign,
    "side_effect": SideEffect, "assessment": Assessment,
}

# Path parameter -> (the "not found" code of that record, the query for its patient).
# The first one present in a path names the patient the request concerns.
OWNERS: tuple[tuple[str, str, Callable[[uuid.UUID], Select]], ...] = (
    ("patient_id", "patient_not_found", lambda i: select(Patient.id).where(Patient.id == i)),
    ("booking_id", "booking_not_found",
     lambda i: select(Booking.patient_id).where(Booking.id == i)),
    ("series_id", "series_not_found",
     lambda i: select(TreatmentSeries.patient_id).where(TreatmentSeries.id == i)),
    ("reminder_id", "reminder_not_found",
     lambda i: select(Booking.patient_id).join(Reminder, Reminder.booking_id == Booking.id)
     .where(Reminder.id == i)),
    ("alert_id", "alert_not_found", lambda i: select(Alert.patient_id).where(Alert.id == i)),
    ("task_id", "task_not_found", lambda i: select(Task.patient_id).where(Task.id == i)),
)

# Tables whose rows say nothing about a patient: a transaction writing only these is not
# "the change" a request's row belongs with.
BOOKKEEPING = frozenset({AuditEvent.__tablename__, IdempotencyRecord.__tablename__})

_PENDING = "audit.pending_row"
_CHANGED = "audit.changed"


def _owner(session: Session, context: AuditContext
           ) -> tuple[str | None, uuid.UUID | None]:
    """(the owner's "not found" code, its patient id) from the first owner id in the path."""
    for name, missing_code, query in OWNERS:
        if name in context.path_ids:
            return missing_code, session.scalar(query(context.path_ids[name]))
    return None, None


def build_event(session: Session, context: AuditContext, outcome: AuditOutcome, *,
                missing: str | None = None) -> AuditEvent:
    """The row for this request. ``missing``: the code of a 404 answer; when it names the
    owner of the path and that record exists, the caller asked for someone else's record:
    the outcome becomes "not_visible" (denied)."""
    missing_code, owner_patient = _owner(session, context)
    if outcome is AuditOutcome.NOT_FOUND and missing is not None and missing in (
            missing_code, "patient_not_found") and (owner_patient or context.patient_hint):
        exists = owner_patient is not None or session.get(
            Patient, context.patient_hint) is not None
        if exists:
            outcome = AuditOutcome.NOT_VISIBLE
    actor = context.actor
    patient_id = (context.created[1] if context.created else None) or owner_patient or (
        context.patient_hint) or (actor.patient_id if actor else None)
    if context.created is not None and context.action is AuditAction.CREATE:
        resource_id: str | None = str(context.created[0])
    elif context.path_ids:
        resource_id = str(list(context.path_ids.values())[-1])
    else:
        resource_id = None
    return AuditEvent(
        key_id=actor.key_id if actor else None, role=actor.role.value if actor else None,
        action=AuditAction.DENIED if outcome in DENIED_OUTCOMES else context.action,
        resource_type=context.resource_type, resource_id=resource_id, patient_id=patient_id,
        outcome=outcome, method=context.method, request_id=context.request_id,
        client_address=context.client_address)


def record(uow: UnitOfWork, context: AuditContext, outcome: AuditOutcome, *,
           missing: str | None = None) -> AuditEvent:
    """Write the request's row in a transaction of its own (once the answer is known)."""
    context.recorded = True

    def work() -> AuditEvent:
        row = build_event(uow.session, context, outcome, missing=missing)
        uow.session.add(row)
        return row

    return uow.run(work)


# Writing the row with the change ---------------------------------------------------------


def _touches_clinic_data(objects) -> bool:  # type: ignore[no-untyped-def]
    return any(getattr(obj, "__tablename__", None) not in BOOKKEEPING for obj in objects)


def attach(sessions: sessionmaker, current: Callable[[], AuditContext | None]) -> None:
    """Make the write sessions add the current request's row to its changing transaction.

    ``current`` gives the open request's context (None outside a request, or when the
    request reads or writes no patient data)."""

    @event.listens_for(sessions, "after_flush")
    def _after_flush(session: Session, _flush_context) -> None:  # type: ignore[no-untyped-def]
        context = current()
        if context is None or context.recorded:
            return
        changed = [*session.new, *session.deleted,
                   *(o for o in session.dirty if session.is_modified(o))]
        if _touches_clinic_data(changed):
            session.info[_CHANGED] = True
        model = CREATED_MODELS.get(context.resource_type)
        if context.action is AuditAction.CREATE and context.created is None and model:
            for obj in session.new:
                if isinstance(obj, model):
                    patient = obj.id if isinstance(obj, Patient) else getattr(
                        obj, "patient_id", None)
                    context.created = (obj.id, patient)
                    break

    @event.listens_for(sessions, "do_orm_execute")
    def _bulk_write(state) -> None:  # type: ignore[no-untyped-def]
        if (state.is_insert or state.is_update or state.is_delete) and current() is not None:
            table = getattr(state.statement, "table", None)
            if getattr(table, "name", None) not in BOOKKEEPING:
                state.session.info[_CHANGED] = True

    @event.listens_for(sessions, "before_commit")
    def _before_commit(session: Session) -> None:
        context = current()
        if context is None or context.recorded or session.in_nested_transaction():
            return
        pending = [*session.new, *session.deleted,
                   *(o for o in session.dirty if session.is_modified(o))]
        if not (session.info.get(_CHANGED) or _touches_clinic_data(pending)):
            return
        session.flush()  # ids of what this request created
        session.add(build_event(session, context, AuditOutcome.SUCCESS))
        session.info[_PENDING] = True

    @event.listens_for(sessions, "after_commit")
    def _after_commit(session: Session) -> None:
        session.info.pop(_CHANGED, None)
        if session.info.pop(_PENDING, False):
            context = current()
            if context is not None:
                context.recorded = True

    @event.listens_for(sessions, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop(_CHANGED, None)
        session.info.pop(_PENDING, None)


# Reading the trail -----------------------------------------------------------------------


def list_events(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                patient_id: uuid.UUID | None = None, since: datetime | None = None,
                until: datetime | None = None, resource_type: str | None = None,
                key_id: uuid.UUID | None = None) -> Page[AuditEvent]:
    """The trail, newest first (admins only)."""
    if actor.role is not Role.ADMIN:
        raise Forbidden("Only an admin reads the audit trail.", code="forbidden")
    query = select(AuditEvent)
    if patient_id is not None:
        query = query.where(AuditEvent.patient_id == patient_id)
    if resource_type is not None:
        query = query.where(AuditEvent.resource_type == resource_type)
    if key_id is not None:
        query = query.where(AuditEvent.key_id == key_id)
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since)
    if until is not None:
        query = query.where(AuditEvent.occurred_at < until)
    with uow:
        return paginate(uow.session, query.order_by(AuditEvent.occurred_at.desc(),
                                                    AuditEvent.id.desc()),
                        page=page, page_size=page_size)
