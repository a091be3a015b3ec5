"""Schemas of the on-call rota."""

from __future__ import annotations

import marshmallow as ma

from service.domain.oncall.models import MAX_TIER
from service.extensions import PartialUpdate, RecordSchema
from service.parsing import Integer
from service.resources.fields import Phone, text


class OnCallContactSchema(RecordSchema):
    name = text(120, required=True, metadata={"example": "Dr. Whitfield (on call)"})
    tier = Integer(required=True, validate=ma.validate.Range(min=1, max=MAX_TIER), metadata={
        "description": "Escalation order: tier 1 is told of an urgent alert at once, each "
                       "next tier when nobody acknowledged it within ALERT_ESCALATION_MINUTES "
                       "of the previous one", "example": 1})
    provider_id = ma.fields.UUID(allow_none=True, metadata={
        "description": "The provider this contact is, if one"})
    email = ma.fields.Email(allow_none=True, validate=ma.validate.Length(max=254))
    phone = Phone(allow_none=True)
    active = ma.fields.Boolean(load_default=True)


class OnCallContactUpdateSchema(PartialUpdate, OnCallContactSchema):
    """PATCH body: any subset of the fields."""


class OnCallContactQueryArgsSchema(ma.Schema):
    active = ma.fields.Boolean()
