"""FHIR search parameters (as FHIR names them) and a loose description of the resources.

Each schema parses the parameters ``service.domain.fhir.capability.RESOURCES`` declares for
its resource, plus the result parameters (``_count``, ``_page``, ``_summary``, ``_sort``,
``_format``). Parameters a schema does not know are ignored, as FHIR servers do (the
Bundle's self link leaves them out and an OperationOutcome entry names them), unless the
client sends ``Prefer: handling=strict``: then they are refused (422), so a misspelled
``patient`` cannot silently widen a search. ``_format`` may ask for JSON only.
"""

from __future__ import annotations

import marshmallow as ma

from service.domain.fhir.capability import DEFAULT_COUNT, MAX_COUNT
from service.extensions import Schema
from service.parsing import Integer

REFERENCE = ma.validate.Length(min=1, max=200)
FORMATS = ma.validate.OneOf(["json", "application/json", "application/fhir+json"])


def _repeatable(description: str, **kwargs: object) -> ma.fields.List:
    return ma.fields.List(ma.fields.String(validate=ma.validate.Length(min=1, max=300)),
                          validate=ma.validate.Length(max=4),
                          metadata={"description": description}, **kwargs)


class SearchArgsSchema(ma.Schema):
    count = Integer(data_key="_count", validate=ma.validate.Range(min=0), metadata={
        "description": f"Page size (default {DEFAULT_COUNT}; above {MAX_COUNT} the server "
                       f"serves {MAX_COUNT}; 0: the total only, as _summary=count)"})
    format = ma.fields.String(data_key="_format", validate=FORMATS)
    summary = ma.fields.String(data_key="_summary", validate=ma.validate.Length(max=20),
                               metadata={"description": "count: a Bundle with the total "
                                                        "and no entries"})
    sort = ma.fields.String(data_key="_sort", validate=ma.validate.Length(max=100), metadata={
        "description": "Appointment: date (earliest first, the default) or -date; Slot: "
                       "start"})


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


class PatientSearchSchema(PagedSearchArgsSchema):
    identifier = ma.fields.String(validate=ma.validate.Length(min=1, max=200), metadata={
        "description": "urn:ietf:rfc:3986|urn:uuid:<id> (or urn:uuid:<id>)"})
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=100),
                            metadata={"description": "Part of the first or last name"})


class LocationSearchSchema(PagedSearchArgsSchema):
    identifier = ma.fields.String(validate=ma.validate.Length(min=1, max=200), metadata={
        "description": "urn:ietf:rfc:3986|urn:uuid:<id> (or urn:uuid:<id>)"})
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=100),
                            metadata={"description": "Part of the name"})


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
