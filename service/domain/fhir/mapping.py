"""The clinic's records as FHIR R4 resources (JSON dicts; pure).

- Appointment: a booking. Its status is already a FHIR Appointment status (pending, booked,
  checked-in, fulfilled, cancelled, noshow); participants are the patient, the practitioner
  and the location, by reference only (no names: the EHR has the patient already).
- Practitioner: a provider, with the NPI as identifier and the credential and licenses as
  qualifications.
- Schedule: one per provider (id = the provider's id), the actor being the Practitioner.
- Slot: a free start from the slot search, on its provider's Schedule, its location in an
  extension; the id is derived from (service type, provider, location, start), so the
  same slot keeps its id.
- Patient: a patient (name, birth date, contact, home state, zone), for the callers who may
  see them; Location: a clinic site or the virtual (telehealth) location. Both carry their
  id as a ``urn:uuid`` identifier, so an EHR can store and search it.
- Bundle (searchset) and OperationOutcome. Every reference is relative (``Patient/<id>``)
  and resolves on this server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
DEGREE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0360"
DEGREES = {"MD", "DO", "NP", "PA"}  # in v2-0360; CRNA is text only
SERVICE_TYPE_SYSTEM = "urn:clinic-scheduling:service-type"
# A provider's Schedule spans their locations; each Slot names its location here.
SLOT_LOCATION_EXTENSION = "urn:clinic-scheduling:slot-location"
SLOT_NAMESPACE = uuid.UUID("6f1c2b7e-3d4a-5b6c-8d9e-0f1a2b3c4d5e")
URI_SYSTEM = "urn:ietf:rfc:3986"  # identifiers that are URIs: urn:uuid:<our id>
TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/tz-code"

ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found",
               405: "not-supported", 406: "not-supported", 409: "conflict", 410: "deleted",
               412: "conflict", 415: "not-supported", 422: "invalid", 428: "required",
               429: "throttled", 500: "exception", 503: "transient"}


def instant(value: datetime) -> str:
    """A FHIR instant: UTC, seconds precision or finer, with "Z"."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def reference(resource_type: str, record_id: Any, display: str | None = None
              ) -> dict[str, str]:
    ref = {"reference": f"{resource_type}/{record_id}"}
    if display:
        ref["display"] = display
    return ref


def service_type_concept(code: str, name: str) -> dict[str, Any]:
    return {"coding": [{"system": SERVICE_TYPE_SYSTEM, "code": code, "display": name}],
            "text": name}


def appointment(booking: Any, service_type: Any, location: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": str(booking.id),
        "meta": {"versionId": str(booking.version), "lastUpdated": instant(booking.updated_at)},
        "status": booking.status.value,
        "serviceType": [service_type_concept(service_type.code, service_type.name)],
        "start": instant(booking.starts_at),
        # The whole stay: the visit plus monitoring or recovery (when the patient may leave).
        "end": instant(booking.leaves_at),
        "minutesDuration": int((booking.leaves_at - booking.starts_at).total_seconds() // 60),
        "created": instant(booking.created_at),
        "participant": [
            {"actor": reference("Patient", booking.patient_id), "required": "required",
             "status": "accepted"},
            {"actor": reference("Practitioner", booking.provider_id), "required": "required",
             "status": "accepted"},
            {"actor": reference("Location", booking.location_id, location.name),
             "required": "required", "status": "accepted"},
        ],
    }
    if booking.cancel_reason:
        resource["cancelationReason"] = {"text": booking.cancel_reason}
    return resource


def practitioner(provider: Any) -> dict[str, Any]:
    credential = provider.credential.value
    degree: dict[str, Any] = {"text": credential}
    if credential in DEGREES:
        degree["coding"] = [{"system": DEGREE_SYSTEM, "code": credential}]
    qualifications: list[dict[str, Any]] = [{"code": degree}]
    for held in provider.licenses:
        qualifications.append({
            "identifier": [{"value": held.number}],
            "code": {"text": f"{held.kind.value} {held.jurisdiction} ({held.status.value})"},
            "period": {"start": held.issued_on.isoformat(), "end": held.expires_on.isoformat()},
            "issuer": {"display": held.board},
        })
    return {
        "resourceType": "Practitioner",
        "id": str(provider.id),
        "meta": {"versionId": str(provider.version),
                 "lastUpdated": instant(provider.updated_at)},
        "identifier": [{"system": NPI_SYSTEM, "value": provider.npi}],
        "active": provider.active,
        "name": [{"text": provider.name}],
        "qualification": qualifications,
    }


def schedule(provider: Any) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "id": str(provider.id),
        "active": provider.active,
        "actor": [reference("Practitioner", provider.id, provider.name)],
        "comment": "Free slots: GET Slot?schedule=Schedule/<id> (computed from working "
                   "hours, bookings, licenses).",
    }


def record_identifier(record_id: Any) -> dict[str, str]:
    return {"system": URI_SYSTEM, "value": f"urn:uuid:{record_id}"}


def _meta(record: Any) -> dict[str, str]:
    return {"versionId": str(record.version), "lastUpdated": instant(record.updated_at)}


def patient(record: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(record.id),
        "meta": _meta(record),
        "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": record.timezone}],
        "identifier": [record_identifier(record.id)],
        "active": record.active,
        "name": [{"family": record.last_name, "given": [record.first_name]}],
        "birthDate": record.birth_date.isoformat(),
    }
    telecom = [{"system": "phone", "value": record.phone}] if record.phone else []
    if record.email:
        telecom.append({"system": "email", "value": record.email})
    if telecom:
        resource["telecom"] = telecom
    if record.home_state:
        resource["address"] = [{"state": record.home_state, "country": "US"}]
    return resource


def location(record: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Location",
        "id": str(record.id),
        "meta": _meta(record),
        "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": record.timezone}],
        "identifier": [record_identifier(record.id)],
        "status": "active" if record.active else "inactive",
        "name": record.name,
        "mode": "instance",
    }
    if record.kind.value == "virtual":
        resource["type"] = [{"text": "Telehealth (virtual visits)"}]
    else:
        lines = [line for line in (record.address_line1, record.address_line2) if line]
        address: dict[str, Any] = {"use": "work", "type": "physical"}
        if lines:
            address["line"] = lines
        for name, value in (("city", record.city), ("state", record.state),
                            ("postalCode", record.postal_code)):
            if value:
                address[name] = value
        address["country"] = "US"
        resource["address"] = address
        resource["physicalType"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/location-physical-type",
            "code": "bu", "display": "Building"}]}
    return resource


def slot_id(service_type_id: Any, provider_id: Any, location_id: Any, start: datetime) -> str:
    key = f"{service_type_id}/{provider_id}/{location_id}/{instant(start)}"
    return str(uuid.uuid5(SLOT_NAMESPACE, key))


def slot(found: Any, service_type: Any) -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": slot_id(service_type.id, found.provider_id, found.location_id, found.start),
        "serviceType": [service_type_concept(service_type.code, service_type.name)],
        "schedule": reference("Schedule", found.provider_id),
        "status": "free",
        "start": instant(found.start),
        "end": instant(found.end),
        "extension": [{"url": SLOT_LOCATION_EXTENSION,
                       "valueReference": reference("Location", found.location_id)}],
    }


def bundle(resources: Iterable[dict[str, Any]], *, base: str, self_url: str,
           total: int | None, next_url: str | None = None,
           ignored: Sequence[str] = ()) -> dict[str, Any]:
    """A searchset. ``ignored``: search parameters the server did not apply (the self link
    leaves them out; an OperationOutcome entry, search mode ``outcome``, names them)."""
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    result: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        result["total"] = total
    result["link"] = links
    result["entry"] = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                        "search": {"mode": "match"}} for r in resources]
    if ignored:
        result["entry"].append({"resource": ignored_parameters(ignored),
                                "search": {"mode": "outcome"}})
    return result


def summary_count(*, self_url: str, total: int) -> dict[str, Any]:
    """The answer to ``_summary=count``: the total, no entries."""
    return {"resourceType": "Bundle", "type": "searchset", "total": total,
            "link": [{"relation": "self", "url": self_url}]}


def ignored_parameters(names: Sequence[str]) -> dict[str, Any]:
    """A warning per search parameter the server ignored (unknown, or unsupported)."""
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": "warning", "code": "not-supported",
         "diagnostics": f"The search parameter {name} is not supported here and was "
                        "ignored (send Prefer: handling=strict to be refused instead).",
         "expression": [name]} for name in names]}


def operation_outcome(status: int, code: str, title: str, detail: str | None,
                      problems_url: str,
                      errors: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """An error as an OperationOutcome; the service's stable code rides in details.coding."""
    issue_code = ISSUE_CODES.get(status, "processing" if status < 500 else "exception")
    details = {"coding": [{"system": problems_url, "code": code}], "text": title}
    issues: list[dict[str, Any]] = []
    for error in errors:
        issue: dict[str, Any] = {"severity": "error", "code": issue_code, "details": details,
                                 "diagnostics": error.get("message") or title}
        if error.get("field"):
            issue["expression"] = [str(error["field"])]
        issues.append(issue)
    if not issues:
        issue = {"severity": "error", "code": issue_code, "details": details}
        if detail:
            issue["diagnostics"] = detail
        issues.append(issue)
    return {"resourceType": "OperationOutcome", "issue": issues}
