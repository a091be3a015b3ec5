"""The on-call rota and what an urgent alert sets in motion.

The rota: contacts in ``tier`` order, each with the addresses a notice goes to (use cases
below, kept by an administrator). When an urgent alert is raised (``AlertRaised``), every
active contact is given its notices in the alert's transaction: tier 1 due at once, each
next tier one escalation period later (``ALERT_ESCALATION_MINUTES``), so the rota in force
when the alert was raised is the one that escalates it. When the alert is acknowledged
(``AlertAcknowledged``) its open notices are cancelled: escalation stops. The scheduler's
``alert-notices`` job sends them (``dispatch.py``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from service.domain.access.actor import Actor
from service.domain.consultations.events import AlertAcknowledged, AlertRaised
from service.domain.errors import InvalidInput, NotFound
from service.domain.oncall.escalation import escalation_plan
from service.domain.oncall.models import (
    OPEN_NOTICE_STATUSES,
    AlertNotice,
    NoticeChannel,
    NoticeStatus,
    OnCallContact,
    notice_key,
)
from service.domain.providers.models import Provider
from service.domain.records import Page, apply_changes, deactivate, get_or_raise, paginate
from service.uow import UnitOfWork

log = logging.getLogger(__name__)


# The rota ----------------------------------------------------------------------------------


def _contact(uow: UnitOfWork, contact_id: uuid.UUID) -> OnCallContact:
    return get_or_raise(uow.session, OnCallContact, contact_id, code="on_call_contact_not_found",
                        what="on-call contact")


def _check(uow: UnitOfWork, values: dict[str, Any]) -> None:
    if not values.get("email") and not values.get("phone"):
        raise InvalidInput("An on-call contact needs an email address or a phone number.",
                           code="contact_address_required")
    provider_id = values.get("provider_id")
    if provider_id is not None and uow.session.get(Provider, provider_id) is None:
        raise NotFound("No provider with this id.", code="provider_not_found")


def list_contacts(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                  active: bool | None = None) -> Page[OnCallContact]:
    """The rota in the order it is called: tier, then name."""
    query = select(OnCallContact).order_by(OnCallContact.tier, OnCallContact.name,
                                           OnCallContact.id)
    if active is not None:
        query = query.where(OnCallContact.active.is_(active))
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)


def get_contact(uow: UnitOfWork, actor: Actor, contact_id: uuid.UUID) -> OnCallContact:
    with uow:
        return _contact(uow, contact_id)


def create_contact(uow: UnitOfWork, actor: Actor, **values: Any) -> OnCallContact:
    def work() -> OnCallContact:
        _check(uow, values)
        contact = OnCallContact(**values)
        uow.session.add(contact)
        return contact

    return uow.run(work)


def update_contact(uow: UnitOfWork, actor: Actor, contact_id: uuid.UUID, *,
                   expected_version: int | None, changes: dict[str, Any]) -> OnCallContact:
    def work() -> OnCallContact:
        contact = _contact(uow, contact_id)
        current = {name: getattr(contact, name) for name in ("email", "phone", "provider_id")}
        _check(uow, {**current, **changes})
        apply_changes(contact, changes, expected_version=expected_version)
        return contact

    return uow.run(work)


def deactivate_contact(uow: UnitOfWork, actor: Actor, contact_id: uuid.UUID) -> OnCallContact:
    """Off the rota: no new notices; notices already planned for it are skipped."""
    return deactivate(uow, OnCallContact, contact_id, code="on_call_contact_not_found",
                      what="on-call contact")


# Urgent alerts -----------------------------------------------------------------------------


def notify_on_call(uow: UnitOfWork, event: AlertRaised, *, escalation: timedelta) -> None:
    """Plan the notices of an urgent alert (handler of ``AlertRaised``, in its transaction):
    the first tier of the rota at once, each next tier ``escalation`` after the previous
    one, on every channel a contact has."""
    if not event.urgent:
        return
    session = uow.session
    contacts = list(session.scalars(
        select(OnCallContact).where(OnCallContact.active.is_(True))
        .order_by(OnCallContact.tier, OnCallContact.name, OnCallContact.id)))
    if not contacts:
        log.warning("urgent alert %s raised with nobody on the on-call rota", event.alert_id)
        return
    now = event.occurred_at
    plan = escalation_plan((contact.tier for contact in contacts), raised_at=now,
                           escalation=escalation)
    for contact in contacts:
        due = plan[contact.tier]
        for channel, address in ((NoticeChannel.EMAIL, contact.email),
                                 (NoticeChannel.SMS, contact.phone)):
            if not address:
                continue
            session.add(AlertNotice(
                alert_id=event.alert_id, contact_id=contact.id, tier=contact.tier,
                escalated=due > now, channel=channel,
                dedupe_key=notice_key(event.alert_id, contact.tier, contact.id, channel.value),
                status=NoticeStatus.PLANNED, due_at=due, next_attempt_at=due, attempts=0,
                created_at=now, updated_at=now))


def stop_escalation(uow: UnitOfWork, event: AlertAcknowledged) -> None:
    """An acknowledged alert tells nobody more (handler of ``AlertAcknowledged``)."""
    uow.session.execute(
        update(AlertNotice)
        .where(AlertNotice.alert_id == event.alert_id,
               AlertNotice.status.in_(OPEN_NOTICE_STATUSES))
        .values(status=NoticeStatus.CANCELLED, reason="acknowledged", lease_until=None,
                claim_token=None, updated_at=event.occurred_at)
        .execution_options(synchronize_session=False))


def list_notices(uow: UnitOfWork, alert_id: uuid.UUID) -> list[AlertNotice]:
    """An alert's notices, in the order they fall due (for the alert's answer and tests)."""
    with uow:
        return list(uow.session.scalars(
            select(AlertNotice).where(AlertNotice.alert_id == alert_id)
            .order_by(AlertNotice.due_at, AlertNotice.tier, AlertNotice.id)))
