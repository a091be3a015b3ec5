"""Schemas of the provider directory."""

from __future__ import annotations

import marshmallow as ma

from service.domain.providers.models import Credential, LicenseKind, LicenseStatus
from service.errors import CodedMessage
from service.extensions import PartialUpdate, RecordSchema
from service.parsing import Integer
from service.resources.fields import JURISDICTION, Date, Npi, TimeZone, text


class ProviderSchema(RecordSchema):
    name = text(200, required=True, metadata={"example": "Dr. Elena Whitfield"})
    credential = ma.fields.Enum(Credential, by_value=True, required=True)
    npi = Npi(required=True)
    timezone = TimeZone(required=True)
    is_prescriber = ma.fields.Boolean(load_default=False)
    is_rems_prescriber = ma.fields.Boolean(load_default=False)
    active = ma.fields.Boolean(load_default=True)


class ProviderUpdateSchema(PartialUpdate, ProviderSchema):
    """PATCH body: any subset of the fields."""


class ProviderQueryArgsSchema(ma.Schema):
    active = ma.fields.Boolean()
    credential = ma.fields.Enum(Credential, by_value=True)
    name = ma.fields.String(validate=ma.validate.Length(max=100),
                            metadata={"description": "Part of the name"})
    rems_prescriber = ma.fields.Boolean()


class LicenseSchema(RecordSchema):
    provider_id = ma.fields.UUID(dump_only=True)
    jurisdiction = ma.fields.String(required=True, validate=JURISDICTION,
                                    metadata={"example": "US-AZ"})
    kind = ma.fields.Enum(LicenseKind, by_value=True, required=True,
                          metadata={"description": "`license`, or `telehealth-registration` "
                                                   "(A.R.S. 36-3606: telehealth only)"})
    board = text(200, required=True, metadata={"example": "Arizona Medical Board"})
    number = text(50, required=True, metadata={"example": "MD-061234"})
    issued_on = Date(required=True)
    expires_on = Date(required=True)
    status = ma.fields.Enum(LicenseStatus, by_value=True, load_default=LicenseStatus.ACTIVE)

    @ma.validates_schema
    def _dates_in_order(self, data: dict, **kwargs: object) -> None:
        if "issued_on" in data and "expires_on" in data and data["expires_on"] < data["issued_on"]:
            raise ma.ValidationError(
                CodedMessage("A license cannot expire before it is issued.",
                             "invalid_date_range"), "expires_on")


class LicenseUpdateSchema(PartialUpdate, LicenseSchema):
    """PATCH body: any subset of the fields."""


class ExpiringQueryArgsSchema(ma.Schema):
    within_days = Integer(load_default=60, validate=ma.validate.Range(min=0, max=365))
