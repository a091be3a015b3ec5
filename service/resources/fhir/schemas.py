"""FHIR search parameters (as FHIR names them) and a loose description of the resources.

Unknown search parameters are refused (OperationOutcome, 422) rather than ignored: a
misspelled ``patient`` would otherwise widen the search to every appointment the caller may
see. ``_format`` may ask for JSON only.
"""

from __future__ import annotations

import marshmallow as ma

from service.extensions import Schema
from service.parsing import Integer

REFERENCE = ma.validate.Length(min=1, max=200)
FORMATS = ma.validate.OneOf(["json", "application/json", "application/fhir+json"])


def _repeatable(description: str, **kwargs: object) -> ma.fields.List:
    return ma.fields.List(ma.fields.String(validate=ma.validate.Length(min=1, max=300)),
                          validate=ma.validate.Length(max=4),
                          metadata={"description": description}, **kwargs)


class SearchArgsSchema(ma.Schema):
    count = Integer(data_key="_count", load_default=50,
                    validate=ma.validate.Range(min=1, max=100),
                    metadata={"description": "Page size (at most 100)"})
    format = ma.fields.String(data_key="_format", validate=FORMATS)


class PagedSearchArgsSchema(SearchArgsSchema):
    page = Integer(data_key="_page", load_default=1,
                   validate=ma.validate.Range(min=1, max=10000),
                   metadata={"description": "Page number (the Bundle's next link carries it)"})
    ids = _repeatable("Resource ids, comma-separated", data_key="_id")


class AppointmentSearchSchema(PagedSearchArgsSchema):
    patient = ma.fields.String(validate=REFERENCE, metadata={
        "description": "Patient/<id> (or the id)", "example": "Patient/3f6c..."})
    practitioner = ma.fields.String(validate=REFERENCE, metadata={
        "description": "Practitioner/<id> (or the id)"})
    date = _repeatable("The start, with a prefix (eq, ge, gt, le, lt) on a date "
                       "(YYYY, YYYY-MM, YYYY-MM-DD: whole days in the clinic's zone) or an "
                       "instant; repeat for a range: date=ge2026-12-01&date=lt2026-12-08")
    status = _repeatable("Appointment status codes, comma-separated (OR)")


class PractitionerSearchSchema(PagedSearchArgsSchema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=100),
                            metadata={"description": "Part of the name"})
    identifier = ma.fields.String(validate=ma.validate.Length(min=1, max=100), metadata={
        "description": "NPI: http://hl7.org/fhir/sid/us-npi|<npi> or the NPI alone"})
    active = ma.fields.Boolean()


class ScheduleSearchSchema(PagedSearchArgsSchema):
    actor = ma.fields.String(validate=REFERENCE,
                             metadata={"description": "Practitioner/<id>"})
    active = ma.fields.Boolean()


class SlotSearchSchema(SearchArgsSchema):
    schedule = ma.fields.String(validate=REFERENCE, metadata={
        "description": "Schedule/<id> (a provider's schedule; default: every provider)"})
    service_type = _repeatable("Service type codes (system|code or code), comma-separated; "
                               "default: every active service type",
                               data_key="service-type")
    start = _repeatable("The slot's start with a prefix (ge, gt, le, lt, eq); default: "
                        "the next 7 days; at most 62 days")
    status = ma.fields.String(validate=ma.validate.OneOf(["free"]),
                              metadata={"description": "Only free slots are served"})


class FhirResourceSchema(Schema):
    """A FHIR R4 resource (JSON); see https://hl7.org/fhir/R4/."""

    resourceType = ma.fields.String(metadata={"example": "Bundle"})  # noqa: N815 - FHIR's name
    id = ma.fields.String()
