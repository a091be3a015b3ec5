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


# The answers, as documentation: open objects (a FHIR reader ignores what it does not know)
# that name the elements this facade fills in. See https://hl7.org/fhir/R4/.


class FhirElement(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE  # -> additionalProperties: true
        ordered = True


def _resource_type(name: str) -> ma.fields.String:
    return ma.fields.String(required=True, validate=ma.validate.OneOf([name]))


def _list(schema: type[ma.Schema], **kwargs: object) -> ma.fields.List:
    return ma.fields.List(ma.fields.Nested(schema), **kwargs)


class FhirCoding(FhirElement):
    system = ma.fields.String()
    code = ma.fields.String()
    display = ma.fields.String()


class FhirCodeableConcept(FhirElement):
    coding = _list(FhirCoding)
    text = ma.fields.String()


class FhirReference(FhirElement):
    reference = ma.fields.String(metadata={"example": "Practitioner/3f6c..."})
    display = ma.fields.String()


class FhirIdentifier(FhirElement):
    system = ma.fields.String(metadata={"example": "http://hl7.org/fhir/sid/us-npi"})
    value = ma.fields.String()


class FhirMeta(FhirElement):
    versionId = ma.fields.String()  # noqa: N815 - FHIR's names
    lastUpdated = ma.fields.DateTime()  # noqa: N815


class FhirPeriod(FhirElement):
    start = ma.fields.String(metadata={"description": "A FHIR date or dateTime"})
    end = ma.fields.String(metadata={"description": "A FHIR date or dateTime"})


class FhirResource(FhirElement):
    id = ma.fields.String()
    meta = ma.fields.Nested(FhirMeta)


class FhirParticipant(FhirElement):
    actor = ma.fields.Nested(FhirReference)
    required = ma.fields.String(validate=ma.validate.OneOf(
        ["required", "optional", "information-only"]))
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(
        ["accepted", "declined", "tentative", "needs-action"]))


class FhirAppointmentSchema(FhirResource):
    """A booking as a FHIR R4 Appointment (participants by reference only)."""

    resourceType = _resource_type("Appointment")  # noqa: N815
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(
        ["proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
         "entered-in-error", "checked-in", "waitlist"]))
    serviceType = _list(FhirCodeableConcept)  # noqa: N815
    start = ma.fields.DateTime()
    end = ma.fields.DateTime()
    minutesDuration = ma.fields.Integer()  # noqa: N815
    created = ma.fields.DateTime()
    participant = _list(FhirParticipant, required=True)
    cancelationReason = ma.fields.Nested(FhirCodeableConcept)  # noqa: N815


class FhirHumanName(FhirElement):
    text = ma.fields.String()


class FhirQualification(FhirElement):
    identifier = _list(FhirIdentifier)
    code = ma.fields.Nested(FhirCodeableConcept, required=True)
    period = ma.fields.Nested(FhirPeriod)
    issuer = ma.fields.Nested(FhirReference)


class FhirPractitionerSchema(FhirResource):
    """A provider as a FHIR R4 Practitioner (NPI identifier, licenses as qualifications)."""

    resourceType = _resource_type("Practitioner")  # noqa: N815
    identifier = _list(FhirIdentifier)
    active = ma.fields.Boolean()
    name = _list(FhirHumanName)
    qualification = _list(FhirQualification)


class FhirScheduleSchema(FhirResource):
    """A provider's schedule (id = the provider's id)."""

    resourceType = _resource_type("Schedule")  # noqa: N815
    active = ma.fields.Boolean()
    actor = _list(FhirReference, required=True)
    comment = ma.fields.String()


class FhirExtension(FhirElement):
    url = ma.fields.String(required=True)
    valueReference = ma.fields.Nested(FhirReference)  # noqa: N815


class FhirSlotSchema(FhirResource):
    """A free slot (its location in an extension)."""

    resourceType = _resource_type("Slot")  # noqa: N815
    serviceType = _list(FhirCodeableConcept)  # noqa: N815
    schedule = ma.fields.Nested(FhirReference, required=True)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(
        ["busy", "free", "busy-unavailable", "busy-tentative", "entered-in-error"]))
    start = ma.fields.DateTime(required=True)
    end = ma.fields.DateTime(required=True)
    extension = _list(FhirExtension)


class FhirIssue(FhirElement):
    severity = ma.fields.String(required=True, validate=ma.validate.OneOf(
        ["fatal", "error", "warning", "information"]))
    code = ma.fields.String(required=True, metadata={"example": "invalid"})
    details = ma.fields.Nested(FhirCodeableConcept, metadata={
        "description": "coding[0].code is the service's problem code (system <base>/problems)"})
    diagnostics = ma.fields.String()
    expression = ma.fields.List(ma.fields.String())


class FhirOperationOutcomeSchema(FhirElement):
    """An error: the HTTP status of the rest of the API, the problem code in details."""

    resourceType = _resource_type("OperationOutcome")  # noqa: N815
    issue = _list(FhirIssue, required=True)


class FhirBundleLink(FhirElement):
    relation = ma.fields.String(required=True, metadata={"example": "next"})
    url = ma.fields.String(required=True)


class FhirBundleSearch(FhirElement):
    mode = ma.fields.String(validate=ma.validate.OneOf(["match", "include", "outcome"]))


class FhirAddress(FhirElement):
    line = ma.fields.List(ma.fields.String())
    city = ma.fields.String()
    state = ma.fields.String()
    postalCode = ma.fields.String()  # noqa: N815


class FhirPatientSchema(FhirResource):
    """A patient as a FHIR R4 Patient (identifier urn:uuid:<id>)."""

    resourceType = _resource_type("Patient")  # noqa: N815
    identifier = _list(FhirIdentifier)
    active = ma.fields.Boolean()
    name = _list(FhirHumanName)
    birthDate = ma.fields.String(metadata={"description": "A FHIR date"})  # noqa: N815


class FhirLocationSchema(FhirResource):
    """A clinic site or the virtual (telehealth) location as a FHIR R4 Location."""

    resourceType = _resource_type("Location")  # noqa: N815
    identifier = _list(FhirIdentifier)
    status = ma.fields.String()
    name = ma.fields.String()
    mode = ma.fields.String()
    address = ma.fields.Nested(FhirAddress)


class FhirCapabilityStatementSchema(FhirElement):
    """What this FHIR server serves: resources, interactions and search parameters."""

    resourceType = _resource_type("CapabilityStatement")  # noqa: N815
    status = ma.fields.String(required=True)
    date = ma.fields.String(required=True)
    kind = ma.fields.String(required=True)
    fhirVersion = ma.fields.String(required=True)  # noqa: N815
    format = ma.fields.List(ma.fields.String(), required=True)
    rest = ma.fields.List(ma.fields.Dict(), required=True)


class FhirEntryResource(FhirResource):
    """A matched resource (``search.mode`` match), or an OperationOutcome (``search.mode``
    outcome) naming the search parameters that were ignored."""

    resourceType = ma.fields.String(required=True)  # noqa: N815


def _searchset(name: str, resource: type[ma.Schema]) -> type[ma.Schema]:
    """A searchset Bundle whose entries are ``resource``s (one named schema per type)."""
    entry = type(f"Fhir{name}EntrySchema", (FhirElement,), {
        "fullUrl": ma.fields.String(),
        "resource": ma.fields.Nested(FhirEntryResource, required=True, metadata={
            "description": f"A {name} (search.mode match), or an OperationOutcome "
                           "(search.mode outcome) naming ignored search parameters"}),
        "search": ma.fields.Nested(FhirBundleSearch),
    })
    return type(f"Fhir{name}BundleSchema", (FhirElement,), {
        "__doc__": f"A searchset Bundle of {name} resources",
        "resourceType": _resource_type("Bundle"),
        "type": ma.fields.String(required=True, validate=ma.validate.OneOf(["searchset"])),
        "total": ma.fields.Integer(metadata={"description": "Absent on Slot searches"}),
        "link": _list(FhirBundleLink),
        "entry": _list(entry),
    })


FhirAppointmentBundleSchema = _searchset("Appointment", FhirAppointmentSchema)
FhirPractitionerBundleSchema = _searchset("Practitioner", FhirPractitionerSchema)
FhirScheduleBundleSchema = _searchset("Schedule", FhirScheduleSchema)
FhirSlotBundleSchema = _searchset("Slot", FhirSlotSchema)
FhirPatientBundleSchema = _searchset("Patient", FhirPatientSchema)
FhirLocationBundleSchema = _searchset("Location", FhirLocationSchema)
