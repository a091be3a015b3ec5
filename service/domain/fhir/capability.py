"""What the FHIR R4 facade serves, in one table, and the CapabilityStatement made from it.

``RESOURCES`` lists each resource type with its interactions and search parameters; the
HTTP layer's search schemas parse exactly these (a test compares them), and
``GET /fhir/R4/metadata`` publishes them. Pure: plain values in, a JSON dict out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FHIR_VERSION = "4.0.1"
STANDARD = "http://hl7.org/fhir/SearchParameter"
# When the capabilities below last changed (the CapabilityStatement's date).
CAPABILITIES_DATE = "2026-11-30"
MAX_COUNT = 100
DEFAULT_COUNT = 50


@dataclass(frozen=True)
class SearchParameter:
    name: str
    type: str  # FHIR search parameter type: token, reference, date, string
    documentation: str
    definition: str  # the standard SearchParameter it implements


@dataclass(frozen=True)
class ResourceCapability:
    type: str
    documentation: str
    search: tuple[SearchParameter, ...]
    sorts: tuple[str, ...] = ()  # accepted _sort values
    counts: bool = True  # a total (and _summary=count) is served
    versioned: bool = True  # meta.versionId, and a W/"<version>" ETag for If-None-Match
    reads: bool = True  # GET <type>/<id>


def _id(resource: str) -> SearchParameter:
    return SearchParameter("_id", "token", f"{resource} ids, comma-separated",
                           f"{STANDARD}/Resource-id")


def _identifier(resource: str) -> SearchParameter:
    return SearchParameter("identifier", "token",
                           "urn:ietf:rfc:3986|urn:uuid:<id> (or urn:uuid:<id>): the id this "
                           f"server gives the {resource.lower()}",
                           f"{STANDARD}/{resource}-identifier")


RESOURCES: tuple[ResourceCapability, ...] = (
    ResourceCapability(
        "Appointment",
        "A booking. Patients see their own, providers theirs, staff and integrations all.",
        (_id("Appointment"),
         SearchParameter("patient", "reference", "Patient/<id> (or the id)",
                         f"{STANDARD}/Appointment-patient"),
         SearchParameter("practitioner", "reference", "Practitioner/<id> (or the id)",
                         f"{STANDARD}/Appointment-practitioner"),
         SearchParameter("date", "date", "The start: eq, ge, gt, le, lt on a date (whole "
                                         "days in the clinic's zone) or an instant; repeat "
                                         "for a range", f"{STANDARD}/Appointment-date"),
         SearchParameter("status", "token", "Appointment status codes, comma-separated",
                         f"{STANDARD}/Appointment-status")),
        sorts=("date", "-date")),
    ResourceCapability(
        "Patient",
        "A patient, under the API's access rules: a patient key sees only its patient, a "
        "provider key the patients it has visits with. Every read is audited.",
        (_id("Patient"), _identifier("Patient"),
         SearchParameter("name", "string", "Part of the first or last name",
                         f"{STANDARD}/Patient-name"))),
    ResourceCapability(
        "Practitioner",
        "A provider: NPI, credential, licenses.",
        (_id("Practitioner"),
         SearchParameter("identifier", "token",
                         "NPI: http://hl7.org/fhir/sid/us-npi|<npi> or the NPI alone",
                         f"{STANDARD}/Practitioner-identifier"),
         SearchParameter("name", "string", "Part of the name",
                         f"{STANDARD}/Practitioner-name"),
         SearchParameter("active", "token", "true or false",
                         f"{STANDARD}/Practitioner-active"))),
    ResourceCapability(
        "Location",
        "A clinic site, or the virtual location of telehealth visits.",
        (_id("Location"), _identifier("Location"),
         SearchParameter("name", "string", "Part of the name",
                         f"{STANDARD}/Location-name"))),
    ResourceCapability(
        "Schedule",
        "One per provider (the same id), spanning their locations.",
        (_id("Schedule"),
         SearchParameter("actor", "reference", "Practitioner/<id>",
                         f"{STANDARD}/Schedule-actor"),
         SearchParameter("active", "token", "true or false",
                         f"{STANDARD}/Schedule-active")),
        versioned=False),
    ResourceCapability(
        "Slot",
        "Free starts computed by the slot search, earliest first, at most _count; no total "
        "(narrow start to page).",
        (SearchParameter("schedule", "reference", "Schedule/<id> (default: every provider)",
                         f"{STANDARD}/Slot-schedule"),
         SearchParameter("service-type", "token", "Service type codes (system|code or "
                                                  "code), comma-separated",
                         f"{STANDARD}/Slot-service-type"),
         SearchParameter("start", "date", "ge, gt, le, lt, eq; default: the next 7 days; "
                                          "at most 62 days", f"{STANDARD}/Slot-start"),
         SearchParameter("status", "token", "free (only free slots are served)",
                         f"{STANDARD}/Slot-status")),
        sorts=("start",), counts=False, versioned=False, reads=False),
)

BY_TYPE = {resource.type: resource for resource in RESOURCES}

RESULT_PARAMETERS = (
    f"_count (at most {MAX_COUNT}; more is served as {MAX_COUNT}; 0 answers the total "
    "only), _page, _summary=count (the total, no entries; not for Slot), _sort (Appointment: "
    "date or -date; Slot: start), _format=json. Unknown or unsupported parameters are "
    "ignored (left out of the Bundle's self link and named in an OperationOutcome entry, "
    "search mode outcome) unless the request says Prefer: handling=strict, which refuses "
    "them (422, or 400 for an unsupported value).")


def capability_statement(*, base_url: str, software: str, version: str,
                         cors: bool) -> dict[str, Any]:
    """The server's CapabilityStatement (R4): what it reads and searches, how to sign in."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": CAPABILITIES_DATE,
        "publisher": software,
        "kind": "instance",
        "software": {"name": software, "version": version},
        "implementation": {"description": "FHIR R4 read facade of the clinic's scheduling "
                                          "service", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Read and search only. Search result parameters: "
                             + RESULT_PARAMETERS,
            "security": {
                "cors": cors,
                "service": [{"text": "Bearer"}],
                "description": "Send 'Authorization: Bearer <API key>' (ck_<role>_<id>_"
                               "<secret>); the same keys and access rules as /api/v1. This "
                               "statement needs no key.",
            },
            "resource": [_resource(resource) for resource in RESOURCES],
        }],
    }


def _resource(resource: ResourceCapability) -> dict[str, Any]:
    return {
        "type": resource.type,
        "documentation": resource.documentation,
        "interaction": [{"code": code} for code, served in (
            ("read", resource.reads), ("search-type", True)) if served],
        "versioning": "versioned" if resource.versioned else "no-version",
        "readHistory": False,
        "updateCreate": False,
        "conditionalRead": "not-match" if resource.versioned else "not-supported",
        "searchParam": [{"name": p.name, "definition": p.definition, "type": p.type,
                         "documentation": p.documentation} for p in resource.search],
    }
