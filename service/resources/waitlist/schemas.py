"""Schemas of the waitlist: entries and offers."""

from __future__ import annotations

import marshmallow as ma

from service.domain.waitlist.models import EntryStatus, OfferStatus, TimeOfDay
from service.extensions import RecordSchema, Schema
from service.parsing import Integer
from service.resources.fields import STATE, Date


class EntrySchema(RecordSchema):
    patient_id = ma.fields.UUID()
    service_type_id = ma.fields.UUID()
    provider_ids = ma.fields.List(ma.fields.UUID(), metadata={
        "description": "Empty: any provider who offers the service"})
    location_id = ma.fields.UUID(allow_none=True)
    earliest_date = ma.fields.Date()
    latest_date = ma.fields.Date(metadata={"description": "The entry expires after this day"})
    weekdays = ma.fields.List(ma.fields.Integer(), metadata={
        "description": "ISO weekdays (1 = Monday); empty: any"})
    times_of_day = ma.fields.List(
        ma.fields.String(metadata={"enum": [t.value for t in TimeOfDay]}), metadata={
            "description": "morning 06-12, afternoon 12-17, evening 17-22 (the location's "
                           "zone); empty: any"})
    series_id = ma.fields.UUID(allow_none=True)
    keep_by = ma.fields.Date(allow_none=True, metadata={
        "description": "A series session: the last day that keeps the protocol's window "
                       "(slots on or before it give the entry clinical priority)"})
    patient_state = ma.fields.String(allow_none=True)
    ride_home_confirmed = ma.fields.Boolean()
    position = ma.fields.Integer(metadata={
        "description": "Place in the queue (lower first; first come unless staff reorder)"})
    status = ma.fields.Enum(EntryStatus, by_value=True)


class EntryCreateSchema(Schema):
    patient_id = ma.fields.UUID(metadata={"description": "Staff: required; a patient key: "
                                                         "itself"})
    service_type_id = ma.fields.UUID(required=True)
    provider_ids = ma.fields.List(ma.fields.UUID(), load_default=list,
                                  validate=ma.validate.Length(max=20))
    location_id = ma.fields.UUID()
    earliest_date = Date(required=True)
    latest_date = Date(required=True)
    weekdays = ma.fields.List(Integer(validate=ma.validate.Range(min=1, max=7)),
                              load_default=list, validate=ma.validate.Length(max=7))
    times_of_day = ma.fields.List(ma.fields.Enum(TimeOfDay, by_value=True), load_default=list,
                                  validate=ma.validate.Length(max=3))
    series_id = ma.fields.UUID(metadata={
        "description": "Waiting for a session of this series (its protocol window counts)"})
    patient_state = ma.fields.String(validate=STATE, metadata={
        "description": "Telehealth: where the patient will be (default: their home state)"})
    ride_home_confirmed = ma.fields.Boolean(load_default=False, metadata={
        "description": "Treatments: the patient will have a ride home"})


class EntryMoveSchema(Schema):
    position = Integer(required=True, validate=ma.validate.Range(min=1, max=100000),
                       metadata={"description": "1: the front of the list"})


class EntryQueryArgsSchema(ma.Schema):
    status = ma.fields.List(ma.fields.Enum(EntryStatus, by_value=True),
                            validate=ma.validate.Length(max=5),
                            metadata={"description": "Repeatable"})
    service_type_id = ma.fields.UUID()
    patient_id = ma.fields.UUID()


class OfferSchema(RecordSchema):
    entry_id = ma.fields.UUID()
    booking_id = ma.fields.UUID(metadata={"description": "The held (pending) booking"})
    patient_id = ma.fields.UUID()
    provider_id = ma.fields.UUID()
    start = ma.fields.AwareDateTime(attribute="starts_at")
    status = ma.fields.Enum(OfferStatus, by_value=True)
    freed_at = ma.fields.AwareDateTime(metadata={"description": "When the slot freed up"})
    offered_at = ma.fields.AwareDateTime()
    expires_at = ma.fields.AwareDateTime(metadata={
        "description": "The hold runs out then and the slot goes to the next patient"})
    decided_at = ma.fields.AwareDateTime(allow_none=True)


class OfferQueryArgsSchema(ma.Schema):
    status = ma.fields.List(ma.fields.Enum(OfferStatus, by_value=True),
                            validate=ma.validate.Length(max=4),
                            metadata={"description": "Repeatable"})
    patient_id = ma.fields.UUID()
    entry_id = ma.fields.UUID()
