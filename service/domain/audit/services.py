"""The audit trail: exactly one row per request that reads or writes patient data (and one
more, in the same transaction, for each series protocol override a clinician confirmed in it:
``protocol_override``, its id, the series' patient).

The HTTP layer opens an ``AuditContext`` for such a request (who, which resource, which
action). The row is then written in one of two ways:

- with the change: ``attach`` listens to the write sessions; the first transaction of the
  request that changes clinic data gets the row added just before it commits (outcome
  "success"), so the row and the change commit or roll back together;
- otherwise, once the answer is known, in a small transaction of its own (``record``): reads,
  refusals (403, someone else's record answered 404), failed changes (rolled back, so the row
  says "failed", never "success"), unauthenticated calls.

The row names the patient the data belongs to (found from the ids in the path, a calendar
feed's token, the record created, or the ``patient_id`` asked for), never a clinical value
or a name.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, event, insert, null, select
from sqlalchemy.orm import Session, sessionmaker

from service.db import (
    DirectStatement,
    Transactional,
    hear_direct_commits,
    hear_direct_inserts,
    utcnow,
)
from service.domain.access.actor import Actor
from service.domain.access.models import ApiKey
from service.domain.audit.models import (
    DENIED_OUTCOMES,
    AuditAction,
    AuditEvent,
    AuditOutcome,
)
from service.domain.audit.policy import policy
from service.domain.bookings.models import Booking
from service.domain.calendar.models import (
    CalendarFeedToken,
    WebhookDelivery,
    WebhookSubscription,
)
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
from service.domain.idempotency.models import IdempotencyRecord
from service.domain.patients.models import Patient
from service.domain.records import Page, paginate
from service.domain.reminders.models import Reminder
from service.domain.series.models import SeriesProtocolOverride, TreatmentSeries
from service.domain.waitlist.models import WaitlistEntry, WaitlistOffer
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
    feed_token_hash: str | None = None  # a calendar feed's token, hashed as stored
    actor: Actor | None = None
    recorded: bool = False  # the row is written (with the change, or on its own)
    created: tuple[uuid.UUID, uuid.UUID | None] | None = None  # (record id, its patient)


# The records a "create" makes, by resource type: their id becomes the row's resource id.
CREATED_MODELS: dict[str, type] = {
    "patient": Patient, "booking": Booking, "series": TreatmentSeries,
    "screening": Screening, "clearance_decision": ClearanceDecision,
    "in_person_evaluation": InPersonEvaluation, "vital_sign": VitalSign,
    "side_effect": SideEffect, "assessment": Assessment,
    "calendar_token": CalendarFeedToken, "webhook_delivery": WebhookDelivery,
    "api_key": ApiKey, "waitlist_entry": WaitlistEntry,
}

# The request's reads that its row may name without reading them again (``remember_reads``,
# ``note_read``): the records of the ``_owned`` models it read, by (model, id), with the
# patient each belongs to. None where the row is not written with the reads.
Seen = dict[object, object] | None
# What a path parameter names: (does the record exist, the patient it concerns), from a
# session opened only if a query is needed (``SessionOf``) and what the request read.
SessionOf = Callable[[], Session]
Resolver = Callable[[SessionOf, uuid.UUID, Seen], tuple[bool, uuid.UUID | None]]


def _patient_of(query: Callable[[uuid.UUID], Select]) -> Resolver:
    """A resolver from a query selecting (record id, its patient's id)."""
    def resolve(session: SessionOf, record_id: uuid.UUID, _seen: Seen
                ) -> tuple[bool, uuid.UUID | None]:
        row = session().execute(query(record_id)).first()
        return (False, None) if row is None else (True, row[1])
    return resolve


_ABSENT = object()


def _owned(model: type, patient: str) -> Resolver:
    """A resolver for the records of ``model`` (its patient: the ``patient`` attribute):
    what the request already read of it, else a query selecting (id, patient)."""
    column = getattr(model, patient)

    def resolve(session: SessionOf, record_id: uuid.UUID, seen: Seen
                ) -> tuple[bool, uuid.UUID | None]:
        if seen is not None:
            known = seen.get((model, record_id), _ABSENT)
            if known is not _ABSENT:
                return True, known  # type: ignore[return-value]
        row = session().execute(select(model.id, column).where(model.id == record_id)).first()
        return (False, None) if row is None else (True, row[1])

    _OWNED[model] = patient
    return resolve


_OWNED: dict[type, str] = {}  # model -> its patient attribute (filled by _owned)


def remember_reads(sessions: sessionmaker, seen: Callable[[], dict[object, object]]) -> None:
    """Make the sessions of ``sessions`` note the owned records they load (``_owned``) in
    ``seen()`` (the request's: ``UnitOfWork.seen``): a read's row, written in the read's
    own session, then needs no query to name them. Only for sessions that never delete
    them (reads): a record read there still exists."""

    @event.listens_for(sessions, "loaded_as_persistent")
    def _loaded(session: Session, instance: object) -> None:
        patient = _OWNED.get(type(instance))
        if patient is None:
            return
        loaded = instance.__dict__
        value = loaded.get(patient, _ABSENT)  # never a lazy load
        if value is not _ABSENT:
            seen()[(type(instance), loaded["id"])] = value


def note_read(uow: UnitOfWork, model: type, record_id: uuid.UUID,
              patient_id: uuid.UUID | None) -> None:
    """As ``remember_reads`` does for a record loaded as an instance: a read that selected
    an owned record's columns as a plain row (its id and its patient) names it here, in
    the unit of work's notes (``UnitOfWork.seen``; none: its row is written elsewhere)."""
    if uow.seen is not None and model in _OWNED:
        uow.seen[(model, record_id)] = patient_id


def _delivery_patient(session_of: SessionOf, delivery_id: uuid.UUID, _seen: Seen
                      ) -> tuple[bool, uuid.UUID | None]:
    """A webhook delivery's patient: its payload names a booking or a series, by id."""
    session = session_of()
    payload = session.scalar(select(WebhookDelivery.payload).where(
        WebhookDelivery.id == delivery_id))
    if payload is None:
        return False, None
    try:
        data = json.loads(payload).get("data") or {}
        booking_id, series_id = data.get("booking_id"), data.get("series_id")
        if booking_id:
            return True, session.scalar(select(Booking.patient_id).where(
                Booking.id == uuid.UUID(booking_id)))
        if series_id:
            return True, session.scalar(select(TreatmentSeries.patient_id).where(
                TreatmentSeries.id == uuid.UUID(series_id)))
    except (ValueError, AttributeError, TypeError):
        pass
    return True, None


# Path parameter -> (the "not found" code of that record, its resolver). The first of them
# in this order that names a patient gives the row's patient.
OWNERS: tuple[tuple[str, str, Resolver], ...] = (
    ("patient_id", "patient_not_found", _owned(Patient, "id")),
    ("booking_id", "booking_not_found", _owned(Booking, "patient_id")),
    ("appointment_id", "booking_not_found",  # a FHIR Appointment is a booking
     _owned(Booking, "patient_id")),
    ("series_id", "series_not_found", _owned(TreatmentSeries, "patient_id")),
    ("reminder_id", "reminder_not_found",
     _patient_of(lambda i: select(Reminder.id, Booking.patient_id)
                 .join(Booking, Reminder.booking_id == Booking.id).where(Reminder.id == i))),
    ("alert_id", "alert_not_found", _owned(Alert, "patient_id")),
    ("task_id", "task_not_found", _owned(Task, "patient_id")),
    ("token_id", "calendar_token_not_found", _owned(CalendarFeedToken, "patient_id")),
    ("webhook_id", "webhook_not_found",
     _patient_of(lambda i: select(WebhookSubscription.id, null())
                 .where(WebhookSubscription.id == i))),
    ("delivery_id", "webhook_delivery_not_found", _delivery_patient),
    ("key_id", "api_key_not_found",  # an API key: a patient key's patient
     _owned(ApiKey, "patient_id")),
    ("entry_id", "waitlist_entry_not_found", _owned(WaitlistEntry, "patient_id")),
    ("offer_id", "waitlist_offer_not_found", _owned(WaitlistOffer, "patient_id")),
)
FEED_NOT_FOUND = "calendar_feed_not_found"

# Tables whose rows say nothing about a patient: a transaction writing only these is not
# "the change" a request's row belongs with.
BOOKKEEPING = frozenset({AuditEvent.__tablename__, IdempotencyRecord.__tablename__})

_PENDING = "audit.pending_row"
_CHANGED = "audit.changed"
_OVERRIDES = "audit.protocol_overrides"

# A confirmed protocol override gets a row of its own beside its request's row.
OVERRIDE_RESOURCE = "protocol_override"


@dataclass(frozen=True)
class _Owners:
    patient_id: uuid.UUID | None  # the patient the request concerns, from the path
    existing: frozenset[str]  # the "not found" codes of the path's records that exist
    resource_id: uuid.UUID | None = None  # a record the path names without its id


def _owners(session: SessionOf, context: AuditContext, seen: Seen) -> _Owners:
    patient_id: uuid.UUID | None = None
    existing: set[str] = set()
    for name, missing_code, resolve in OWNERS:
        if name in context.path_ids:
            exists, patient = resolve(session, context.path_ids[name], seen)
            if exists:
                existing.add(missing_code)
            patient_id = patient_id or patient
    if context.feed_token_hash is None:
        return _Owners(patient_id, frozenset(existing))
    token = session().execute(select(CalendarFeedToken.id, CalendarFeedToken.patient_id).where(
        CalendarFeedToken.token_hash == context.feed_token_hash)).first()
    if token is None:
        return _Owners(patient_id, frozenset(existing))
    return _Owners(patient_id or token.patient_id, frozenset({*existing, FEED_NOT_FOUND}),
                   resource_id=token.id)


class AuditRow:
    """The values of one ``audit_events`` row, as attributes (what ``build_event`` gives):
    written by one Core INSERT, so no ORM instance (and its instrumentation) is made for it;
    ``id``, not given, takes its default in the INSERT."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    def values(self) -> dict[str, object]:
        return {key: value for key, value in self.__dict__.items() if key in _AUDIT_COLUMNS}


def build_event(session: SessionOf, context: AuditContext, outcome: AuditOutcome, *,
                missing: str | None = None, seen: Seen = None) -> AuditRow:
    """The row for this request. ``missing``: the code of a 404 answer; when it names a
    record of the path (or its patient, or a revoked feed token) that exists, the caller
    asked for someone else's record: the outcome becomes "not_visible" (denied).
    ``session``: gives the session its queries run on, opened only if one is needed;
    ``seen``: what the request read of the path's records (``UnitOfWork.seen``)."""
    owners = _owners(session, context, seen)
    if outcome is AuditOutcome.NOT_FOUND and missing is not None:
        if missing in owners.existing or (missing == "patient_not_found" and (
                owners.patient_id is not None or (context.patient_hint is not None and
                                                  session().get(Patient, context.patient_hint)
                                                  is not None))):
            outcome = AuditOutcome.NOT_VISIBLE
    actor = context.actor
    patient_id = (context.created[1] if context.created else None) or owners.patient_id or (
        context.patient_hint) or (actor.patient_id if actor else None)
    if context.created is not None and context.action is AuditAction.CREATE:
        resource_id: str | None = str(context.created[0])
    elif context.path_ids:
        resource_id = str(list(context.path_ids.values())[-1])
    elif owners.resource_id is not None:
        resource_id = str(owners.resource_id)
    else:
        resource_id = None
    return AuditRow(
        occurred_at=utcnow(),  # the column's own default, given: nothing left to prefetch
        key_id=actor.key_id if actor else None, role=actor.role.value if actor else None,
        action=AuditAction.DENIED if outcome in DENIED_OUTCOMES else context.action,
        resource_type=context.resource_type, resource_id=resource_id, patient_id=patient_id,
        outcome=outcome, method=context.method, request_id=context.request_id,
        client_address=context.client_address)


_AUDIT_COLUMNS = frozenset(column.key for column in AuditEvent.__table__.columns)
# Inline: nothing reads the row's generated id back, so no RETURNING (and no result to set
# up) on databases that would otherwise add one to fetch it.
_INSERT_ROW = insert(AuditEvent.__table__).inline()
# The same INSERT, every column but the generated id given (``build_event``), compiled once
# and run without SQLAlchemy's per-execution machinery (``DirectStatement``): a read's row,
# and a change's.
_INSERT_ROW_DIRECT = DirectStatement(_INSERT_ROW, columns=sorted(_AUDIT_COLUMNS - {"id"}))


def record(uow: UnitOfWork, context: AuditContext, outcome: AuditOutcome, *,
           missing: str | None = None) -> None:
    """Write the request's row in a transaction of its own (once the answer is known),
    committed before this returns (``write`` in ``uow``'s transaction)."""
    uow.run(lambda: write(uow, context, outcome, missing=missing))


def write(uow: UnitOfWork, context: AuditContext, outcome: AuditOutcome, *,
          missing: str | None = None) -> None:
    """Write the request's row: one INSERT, as a statement on ``uow``'s connection (not
    through the ORM's execution, which has nothing to do for it: nothing to flush or to
    read back), in its transaction; committing that is the caller's (``record``), unless
    the connection is in autocommit, where the row has committed when this returns (a
    read request's own: ``service.transactions.share_request_transaction``). Its session
    is asked for only if naming the records needs a query (``build_event``): not when the
    request read them (``uow.seen``)."""
    context.recorded = True
    row = build_event(lambda: uow.session, context, outcome, missing=missing, seen=uow.seen)
    _INSERT_ROW_DIRECT.execute(uow.connection(), row.values())


# Writing the row with the change ---------------------------------------------------------


def _override_event(session: Session, context: AuditContext,
                    override: SeriesProtocolOverride) -> AuditEvent:
    """The row saying a clinician confirmed a change that breaks a series' protocol (who,
    which override, whose series; the reason stays on the override)."""
    actor = context.actor
    return AuditEvent(
        key_id=actor.key_id if actor else None, role=actor.role.value if actor else None,
        action=AuditAction.CREATE, resource_type=OVERRIDE_RESOURCE,
        resource_id=str(override.id), patient_id=session.scalar(
            select(TreatmentSeries.patient_id).where(TreatmentSeries.id == override.series_id)),
        outcome=AuditOutcome.SUCCESS, method=context.method, request_id=context.request_id,
        client_address=context.client_address)


def _touches_clinic_data(objects) -> bool:  # type: ignore[no-untyped-def]
    return any(getattr(obj, "__tablename__", None) not in BOOKKEEPING for obj in objects)


def _created_by_insert(context: AuditContext, table: object, parameters: object) -> None:
    """A "create" request's record written by one Core INSERT through the session (one row,
    every column given: ``bookings.services`` writes a new booking so) is its created
    record, as the flush's new instance of the model would be (``_after_flush``)."""
    if context.action is not AuditAction.CREATE or context.created is not None:
        return
    model = CREATED_MODELS.get(context.resource_type)
    if (model is None or table is not model.__table__  # type: ignore[attr-defined]
            or not isinstance(parameters, dict) or "id" not in parameters):
        return
    record_id = parameters["id"]
    context.created = (record_id, record_id if model is Patient
                       else parameters.get("patient_id"))


def attach(sessions: sessionmaker, current: Callable[[], AuditContext | None]) -> None:
    """Make the write sessions add the current request's row to its changing transaction.

    ``current`` gives the open request's context (None outside a request, or when the
    request reads or writes no patient data)."""

    @event.listens_for(sessions, "after_flush")
    def _after_flush(session: Session, _flush_context) -> None:  # type: ignore[no-untyped-def]
        context = current()
        if context is None:
            return
        session.info.setdefault(_OVERRIDES, []).extend(
            obj for obj in session.new if isinstance(obj, SeriesProtocolOverride))
        if context.recorded:
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

    def _wrote(transaction: Transactional, table: object, parameters: object, *,
               inserted: bool) -> None:
        context = current()
        if context is None:
            return
        if getattr(table, "name", None) not in BOOKKEEPING:
            transaction.info[_CHANGED] = True
        if inserted and not context.recorded:
            _created_by_insert(context, table, parameters)

    @event.listens_for(sessions, "do_orm_execute")
    def _bulk_write(state) -> None:  # type: ignore[no-untyped-def]
        if state.is_insert or state.is_update or state.is_delete:
            _wrote(state.session, getattr(state.statement, "table", None), state.parameters,
                   inserted=state.is_insert)

    # A row written by a DirectStatement (``bookings.services.book_plain``'s booking) is
    # heard as one INSERT run through the session.
    hear_direct_inserts(sessions, lambda transaction, table, values: _wrote(
        transaction, table, values, inserted=True))

    @event.listens_for(sessions, "before_commit")
    def _before_commit(session: Session) -> None:
        context = current()
        if context is None or session.in_nested_transaction():
            return
        if any(isinstance(obj, SeriesProtocolOverride) for obj in session.new):
            session.flush()  # the override's id
        for override in session.info.pop(_OVERRIDES, []):
            session.add(_override_event(session, context, override))
        if context.recorded:
            return
        pending = [*session.new, *session.deleted,
                   *(o for o in session.dirty if session.is_modified(o))]
        if not (session.info.get(_CHANGED) or _touches_clinic_data(pending)):
            return
        session.flush()  # ids of what this request created
        _write_with_change(session, lambda: session, context)

    def _before_direct_commit(transaction: UnitOfWork) -> None:
        """``_before_commit`` for a transaction run without a session (``UnitOfWork.
        run(direct=True)``): nothing pending, no protocol override (none was flushed)."""
        context = current()
        if context is None or context.recorded or not transaction.info.get(_CHANGED):
            return
        _write_with_change(transaction, lambda: transaction.session, context)

    def _write_with_change(transaction: Transactional, session_of: SessionOf,
                           context: AuditContext) -> None:
        # The row as one INSERT statement, as ``record`` writes it: no object for the
        # commit's flush to process (nothing reads it back in this transaction), and no
        # per-execution machinery (``DirectStatement``).
        _INSERT_ROW_DIRECT.execute(transaction.connection(), build_event(
            session_of, context, AuditOutcome.SUCCESS).values())
        transaction.info[_PENDING] = True

    def _committed(transaction: Transactional) -> None:
        transaction.info.pop(_CHANGED, None)
        if transaction.info.pop(_PENDING, False):
            context = current()
            if context is not None:
                context.recorded = True

    event.listen(sessions, "after_commit", _committed)
    hear_direct_commits(sessions, before=_before_direct_commit, after=_committed)

    @event.listens_for(sessions, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop(_CHANGED, None)
        session.info.pop(_OVERRIDES, None)
        session.info.pop(_PENDING, None)


# Reading the trail -----------------------------------------------------------------------


def list_events(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                patient_id: uuid.UUID | None = None, since: datetime | None = None,
                until: datetime | None = None, resource_type: str | None = None,
                key_id: uuid.UUID | None = None) -> Page[AuditEvent]:
    """The trail, newest first (admins only)."""
    policy.require(actor, "read")
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
