"""The audit trail: one append-only row per request that reads or writes patient data.

A row says who (API key and role), did what (action) to which resource (type, id, and the
patient it concerns), with which outcome, when, from where and in which request. It never
holds a clinical value or a name. Rows are never updated (PostgreSQL and SQLite triggers
refuse it) nor deleted by the service (a PostgreSQL trigger refuses DELETE too).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, enum_column, utcnow


class AuditAction(enum.StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    DENIED = "denied"


class AuditOutcome(enum.StrEnum):
    SUCCESS = "success"
    REPLAYED = "replayed"  # an Idempotency-Key replay of the first answer
    FAILED = "failed"  # refused by a rule (409, 412, 422, ...): nothing changed
    NOT_FOUND = "not_found"  # no such record at all
    ERROR = "error"  # an unexpected error: nothing changed
    FORBIDDEN = "forbidden"  # denied: the role may not (403)
    NOT_VISIBLE = "not_visible"  # denied: someone else's record (answered 404)
    UNAUTHENTICATED = "unauthenticated"  # denied: no valid API key (401)


DENIED_OUTCOMES = frozenset({AuditOutcome.FORBIDDEN, AuditOutcome.NOT_VISIBLE,
                             AuditOutcome.UNAUTHENTICATED})


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_patient_occurred", "patient_id", "occurred_at"),
    )

    # BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite: both autoincrement.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[AuditAction] = mapped_column(enum_column(AuditAction, "audit_action"))
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(64))  # None: the collection
    # No foreign key: the trail outlives what it points to and never blocks a change.
    patient_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    outcome: Mapped[AuditOutcome] = mapped_column(enum_column(AuditOutcome, "audit_outcome"))
    method: Mapped[str] = mapped_column(String(8))
    request_id: Mapped[str] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(45))
