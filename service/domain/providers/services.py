"""Use cases of the provider directory: providers and their licenses."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select

from service.db import utcnow
from service.domain.access.actor import Actor
from service.domain.errors import Conflict, InvalidInput, NotFound
from service.domain.providers.events import LicenseChanged
from service.domain.providers.models import Credential, License, Provider
from service.domain.records import Page, apply_changes, deactivate, get_or_raise, paginate
from service.uow import UnitOfWork


def _provider(uow: UnitOfWork, provider_id: uuid.UUID) -> Provider:
    return get_or_raise(uow.session, Provider, provider_id, code="provider_not_found",
                        what="provider")


def list_providers(uow: UnitOfWork, actor: Actor, *, page: int, page_size: int,
                   active: bool | None = None, credential: Credential | None = None,
                   name: str | None = None, rems_prescriber: bool | None = None
                   ) -> Page[Provider]:
    query = select(Provider).order_by(Provider.name, Provider.id)
    if active is not None:
        query = query.where(Provider.active.is_(active))
    if credential is not None:
        query = query.where(Provider.credential == credential)
    if name:
        query = query.where(Provider.name.ilike(f"%{name}%"))
    if rems_prescriber is not None:
        query = query.where(Provider.is_rems_prescriber.is_(rems_prescriber))
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)


def get_provider(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID) -> Provider:
    with uow:
        return _provider(uow, provider_id)


def _check_prescriber_flags(values: dict[str, Any]) -> None:
    if values.get("is_rems_prescriber") and not values.get("is_prescriber"):
        raise InvalidInput("A REMS prescriber must also be a prescriber.",
                           code="rems_requires_prescriber")


def create_provider(uow: UnitOfWork, actor: Actor, **values: Any) -> Provider:
    _check_prescriber_flags(values)

    def work() -> Provider:
        if uow.session.scalar(select(Provider.id).where(Provider.npi == values["npi"])):
            raise Conflict("A provider with this NPI already exists.", code="duplicate_npi")
        provider = Provider(**values)
        uow.session.add(provider)
        return provider

    return uow.run(work)


def update_provider(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID, *,
                    expected_version: int | None, changes: dict[str, Any]) -> Provider:
    def work() -> Provider:
        provider = _provider(uow, provider_id)
        merged = {"is_prescriber": provider.is_prescriber,
                  "is_rems_prescriber": provider.is_rems_prescriber, **changes}
        _check_prescriber_flags(merged)
        if "npi" in changes and changes["npi"] != provider.npi and uow.session.scalar(
            select(Provider.id).where(Provider.npi == changes["npi"])
        ):
            raise Conflict("A provider with this NPI already exists.", code="duplicate_npi")
        apply_changes(provider, changes, expected_version=expected_version)
        return provider

    return uow.run(work)


def deactivate_provider(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID) -> Provider:
    return deactivate(uow, Provider, provider_id, code="provider_not_found", what="provider")


# Licenses ---------------------------------------------------------------------------------


def _license(uow: UnitOfWork, provider_id: uuid.UUID, license_id: uuid.UUID) -> License:
    record = uow.session.get(License, license_id)
    if record is None or record.provider_id != provider_id:
        _provider(uow, provider_id)
        raise NotFound("No license with this id for this provider.", code="license_not_found")
    return record


def _check_dates(issued_on: date, expires_on: date) -> None:
    if expires_on < issued_on:
        raise InvalidInput("A license cannot expire before it is issued.",
                           code="invalid_date_range")


def _check_unique_number(uow: UnitOfWork, board: str, number: str,
                         exclude: uuid.UUID | None = None) -> None:
    query = select(License.id).where(License.board == board, License.number == number)
    if exclude is not None:
        query = query.where(License.id != exclude)
    if uow.session.scalar(query):
        raise Conflict("This board already has a license with this number.",
                       code="duplicate_license")


def list_licenses(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID, *, page: int,
                  page_size: int) -> Page[License]:
    with uow:
        _provider(uow, provider_id)
        query = (select(License).where(License.provider_id == provider_id)
                 .order_by(License.expires_on, License.id))
        return paginate(uow.session, query, page=page, page_size=page_size)


def get_license(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID,
                license_id: uuid.UUID) -> License:
    with uow:
        return _license(uow, provider_id, license_id)


def add_license(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID, **values: Any) -> License:
    _check_dates(values["issued_on"], values["expires_on"])

    def work() -> License:
        _provider(uow, provider_id)
        _check_unique_number(uow, values["board"], values["number"])
        record = License(provider_id=provider_id, **values)
        uow.session.add(record)
        return record

    return uow.run(work)


def update_license(uow: UnitOfWork, actor: Actor, provider_id: uuid.UUID,
                   license_id: uuid.UUID, *, expected_version: int | None,
                   changes: dict[str, Any]) -> License:
    def work() -> License:
        record = _license(uow, provider_id, license_id)
        _check_dates(changes.get("issued_on", record.issued_on),
                     changes.get("expires_on", record.expires_on))
        if "board" in changes or "number" in changes:
            _check_unique_number(uow, changes.get("board", record.board),
                                 changes.get("number", record.number), exclude=record.id)
        apply_changes(record, changes, expected_version=expected_version)
        uow.record(LicenseChanged(provider_id=record.provider_id, occurred_at=utcnow()))
        return record

    return uow.run(work)


def expiring_licenses(uow: UnitOfWork, actor: Actor, *, today: date, within_days: int,
                      page: int, page_size: int) -> Page[License]:
    """Active licenses of active providers expiring within the next ``within_days`` days."""
    query = (
        select(License)
        .join(Provider)
        .where(License.status == "active", Provider.active.is_(True),
               License.expires_on >= today,
               License.expires_on <= today + timedelta(days=within_days))
        .order_by(License.expires_on, License.id)
    )
    with uow:
        return paginate(uow.session, query, page=page, page_size=page_size)
