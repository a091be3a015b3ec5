"""Calendar use cases: feed tokens, and the feed itself.

(What a booking change sets off here, the change feed and the webhook deliveries, are
handlers of the booking's events: ``sync.number_changes`` and ``webhooks``, wired in
``service/bootstrap.py``.)

Feed tokens: a provider (or clinic staff for them) and a patient (or staff for them) create
and revoke tokens; the token is shown once and stored as its SHA-256 (256 random bits: a
fast hash is the right tool, as for API keys). ``GET /api/v1/calendars/<token>.ics`` is
authenticated by the token alone; a revoked or unknown token is "not found".
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from service.domain.access.actor import Actor
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.calendar import ics
from service.domain.calendar.models import CalendarFeedToken
from service.domain.calendar.policy import policy
from service.domain.clinic.models import Location, LocationKind
from service.domain.errors import NotFound
from service.domain.patients.services import find_patient
from service.domain.providers.models import Provider
from service.domain.records import Page, paginate
from service.uow import UnitOfWork

TOKEN_PREFIX = "cal_"
_TOKEN = re.compile(r"cal_[A-Za-z0-9_-]{43}")
FEED_PAST = timedelta(days=90)  # visits that started longer ago leave the feed
CANCELLED_KEPT = timedelta(days=30)  # a cancellation stays (STATUS:CANCELLED) this long
FEED_LIMIT = 2000  # events per feed, earliest first


# Feed tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedOwner:
    """Whose visits a feed shows: one provider's, or one patient's."""

    provider_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None


@dataclass(frozen=True)
class IssuedFeedToken:
    record: CalendarFeedToken
    token: str  # shown once

    def __getattr__(self, name: str) -> object:  # the schema reads the record's fields
        return getattr(self.record, name)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_owner(uow: UnitOfWork, actor: Actor, owner: FeedOwner) -> None:
    """The owner must exist and be visible (else "not found"); then the calendar policy."""
    if owner.provider_id is not None:
        if uow.session.get(Provider, owner.provider_id) is None:
            raise NotFound("No provider with this id.", code="provider_not_found")
    else:
        find_patient(uow, actor, owner.patient_id)  # not visible: patient_not_found
    policy.check_owner(actor, owner)


def _owned(query, owner: FeedOwner):  # type: ignore[no-untyped-def]
    if owner.provider_id is not None:
        return query.where(CalendarFeedToken.provider_id == owner.provider_id)
    return query.where(CalendarFeedToken.patient_id == owner.patient_id)


def create_feed_token(uow: UnitOfWork, actor: Actor, owner: FeedOwner, *, label: str,
                      now: datetime) -> IssuedFeedToken:
    token = f"{TOKEN_PREFIX}{secrets.token_urlsafe(32)}"

    def work() -> IssuedFeedToken:
        _check_owner(uow, actor, owner)
        record = CalendarFeedToken(token_hash=hash_token(token), provider_id=owner.provider_id,
                                   patient_id=owner.patient_id, label=label, created_at=now,
                                   created_by_key_id=actor.key_id)
        uow.session.add(record)
        return IssuedFeedToken(record=record, token=token)

    return uow.run(work)


def list_feed_tokens(uow: UnitOfWork, actor: Actor, owner: FeedOwner, *, page: int,
                     page_size: int) -> Page[CalendarFeedToken]:
    with uow:
        _check_owner(uow, actor, owner)
        query = _owned(policy.visible(actor, select(CalendarFeedToken)), owner).order_by(
            CalendarFeedToken.created_at, CalendarFeedToken.id)
        return paginate(uow.session, query, page=page, page_size=page_size)


def revoke_feed_token(uow: UnitOfWork, actor: Actor, owner: FeedOwner, token_id: uuid.UUID, *,
                      now: datetime) -> CalendarFeedToken:
    """Revoke a token at once (its feed answers 404 from now on); revoking twice is fine."""

    def work() -> CalendarFeedToken:
        _check_owner(uow, actor, owner)
        tokens = _owned(policy.visible(actor, select(CalendarFeedToken)), owner)
        record = uow.session.scalar(
            tokens.where(CalendarFeedToken.id == token_id).with_for_update())
        if record is None:
            raise NotFound("No calendar feed token with this id.",
                           code="calendar_token_not_found")
        if record.revoked_at is None:
            record.revoked_at = now
        return record

    return uow.run(work)


# The feed -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feed:
    body: bytes
    etag: str  # strong: a hash of the body


def _feed_status(status: BookingStatus) -> str:
    if status is BookingStatus.CANCELLED:
        return ics.STATUS_CANCELLED
    if status is BookingStatus.PENDING:
        return ics.STATUS_TENTATIVE
    return ics.STATUS_CONFIRMED


def _address(location: Location) -> str:
    parts = [location.name, location.address_line1, location.address_line2,
             " ".join(p for p in (location.city, location.state, location.postal_code) if p)]
    return ", ".join(p for p in parts if p)


def calendar_feed(uow: UnitOfWork, token: str, *, now: datetime, refresh: timedelta,
                  clinic_name: str) -> Feed:
    """The feed a token opens: its owner's visits from 90 days ago on, cancellations of the
    last 30 days as STATUS:CANCELLED (so subscribed calendars drop them)."""
    not_found = NotFound("No calendar feed for this address.", code="calendar_feed_not_found")
    if not _TOKEN.fullmatch(token):
        raise not_found
    with uow:
        session = uow.session
        record = session.scalar(select(CalendarFeedToken).where(
            CalendarFeedToken.token_hash == hash_token(token),
            CalendarFeedToken.revoked_at.is_(None)))
        if record is None:
            raise not_found
        query = (select(Booking, Location).join(Location, Location.id == Booking.location_id)
                 .where(Booking.starts_at >= now - FEED_PAST,
                        or_(Booking.status != BookingStatus.CANCELLED,
                            Booking.cancelled_at >= now - CANCELLED_KEPT))
                 .order_by(Booking.starts_at, Booking.id).limit(FEED_LIMIT))
        if record.provider_id is not None:
            query = query.where(Booking.provider_id == record.provider_id)
            name = "Clinic schedule"
        else:
            query = query.where(Booking.patient_id == record.patient_id)
            name = "My clinic visits"
        events = [ics.FeedEvent(
            uid=str(booking.id), start=booking.starts_at, end=booking.leaves_at,
            created=booking.created_at, modified=booking.updated_at,
            sequence=booking.version - 1, status=_feed_status(booking.status),
            in_person=location.kind is LocationKind.CLINIC, location=_address(location))
            for booking, location in session.execute(query)]
    body = ics.render(events, calendar_id=record.id, name=name, refresh=refresh,
                      prodid=f"-//{clinic_name}//Clinic scheduling//EN")
    return Feed(body=body, etag=hashlib.sha256(body).hexdigest()[:32])
