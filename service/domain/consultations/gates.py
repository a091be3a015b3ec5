"""The clinical gates a booking passes: what the consultation's records allow.

The booking use cases ask three questions here, and nothing else of consultations:

- ``check_booking``: may this patient be booked for this kind of visit at all (the REMS
  requirements of esketamine, a contraindication named at screening, the clinician's
  clearance, a first dose in the clinic before the pill at home, the ride home after a
  treatment)?
- ``check_in``: may this telehealth visit start (consent on record, the patient's location
  attested again now, covered by the provider's licenses)? Records the attestation.
- ``check_completion``: may this session be completed (no blood pressure hold left, the
  esketamine readings taken)?
- ``check_standing``: does a booking made earlier still pass the rules it passed then (the
  booking gates above, and the provider's license on the visit's date)? Asked again when an
  input changes (a clearance decision, a screening, a REMS enrolment, a license: see
  ``bookings/attention.py``) and at check-in.

Each raises the domain error that answers "no"; the records behind them (screenings,
decisions, holds, vital signs, telehealth visits) are written by ``services.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.domain.bookings.models import Booking, BookingStatus
from service.domain.clinic.models import Location, ServiceType
from service.domain.consultations import vitals
from service.domain.consultations.models import (
    ClearanceDecision,
    ClearanceStatus,
    Screening,
    SessionHold,
    TelehealthVisit,
    VitalSign,
)
from service.domain.errors import Conflict, DomainError, InvalidInput
from service.domain.patients.models import Patient
from service.domain.providers.licensing import Credential, Modality, may_practice
from service.domain.providers.models import Provider
from service.domain.time import in_zone


def is_treatment(service_type: ServiceType) -> bool:
    return service_type.modality == Modality.IN_PERSON and service_type.needs_clearance


def latest_decision(session: Session, patient_id: uuid.UUID) -> ClearanceDecision | None:
    """The clearance decision that stands: the latest one recorded for the patient."""
    return session.scalar(select(ClearanceDecision)
                          .where(ClearanceDecision.patient_id == patient_id)
                          .order_by(ClearanceDecision.decided_at.desc()).limit(1))


def esketamine_contraindicated(session: Session, patient_id: uuid.UUID) -> bool:
    """Does any screening on record name a hard contraindication to esketamine?"""
    screenings = session.scalars(select(Screening).where(Screening.patient_id == patient_id))
    return any(s.outcome().esketamine_contraindicated for s in screenings)


def contraindications_on_record(session: Session, patient_id: uuid.UUID) -> set[str]:
    """Every contraindication any screening on record of the patient answers yes to."""
    screenings = session.scalars(select(Screening).where(Screening.patient_id == patient_id))
    return {c.value for s in screenings for c in (*s.outcome().hard, *s.outcome().review)}


def active_hold(session: Session, booking_id: uuid.UUID) -> SessionHold | None:
    """The blood pressure hold on the session that no clinician has overridden yet."""
    return session.scalar(select(SessionHold).where(SessionHold.booking_id == booking_id,
                                                    SessionHold.overridden_at.is_(None))
                          .limit(1))


def check_booking(session_of: Callable[[], Session], *, patient: Patient, provider: Provider,
                  location: Location, service_type: ServiceType,
                  ride_home_confirmed: bool) -> None:
    """May the patient be booked for this kind of visit with this provider, here?
    ``session_of``: gives the session the records on file are read in, asked for only
    when the kind of visit has a rule that reads them."""
    if service_type.requires_rems:
        missing = [name for name, ok in (
            ("rems_certified_location", location.rems_certified),
            ("rems_enrolled_patient", patient.rems_enrolled),
            ("rems_prescriber", provider.is_rems_prescriber),
            ("monitoring_120_minutes", service_type.recovery_minutes >= 120),
        ) if not ok]
        if missing:
            raise Conflict("Esketamine needs a REMS-certified site, a REMS-enrolled patient, a "
                           "REMS prescriber and at least 120 minutes of monitoring.",
                           code="rems_requirements_not_met", missing=missing)
    if service_type.requires_rems and esketamine_contraindicated(session_of(), patient.id):
        raise Conflict("A screening on record names a hard contraindication to esketamine "
                       "(see the patient's consultation).", code="esketamine_contraindicated")
    declared = set(service_type.contraindications or ())
    # Read the screenings only when the service type declares a contraindication to match.
    named = (sorted(declared & contraindications_on_record(session_of(), patient.id))
             if declared else [])
    if named:
        raise Conflict("A screening on record names a contraindication to this kind of visit "
                       "(see the patient's consultation).", code="contraindicated",
                       contraindications=named)
    if service_type.needs_clearance:
        # The clinician's decision, not a flag anyone may set, clears a patient for treatment.
        decision = latest_decision(session_of(), patient.id)
        if decision is None or decision.decision is not ClearanceStatus.CLEARED:
            raise Conflict("The patient needs a cleared consultation before treatment.",
                           code="clearance_required",
                           clearance=decision.decision.value if decision else "none")
    if service_type.at_home and not first_dose_in_clinic(session_of(), patient.id,
                                                         service_type):
        raise Conflict("The pill is taken at home only after a first dose in the clinic, "
                       "under monitoring: the patient has no completed in-clinic "
                       f"{service_type.route} dose.", code="first_dose_in_clinic_required",
                       route=service_type.route)
    if is_treatment(service_type) and not ride_home_confirmed:
        raise InvalidInput("Confirm that the patient has a ride home after treatment.",
                           code="ride_home_required")


def first_dose_in_clinic(session: Session, patient_id: uuid.UUID,
                         home: ServiceType) -> bool:
    """Has the patient completed a dose of the home protocol's route in the clinic (a
    fulfilled in-clinic visit of a service type with that route)?"""
    return session.scalar(
        select(Booking.id).join(ServiceType, ServiceType.id == Booking.service_type_id)
        .where(Booking.patient_id == patient_id, Booking.status == BookingStatus.FULFILLED,
               ServiceType.route == home.route, ServiceType.at_home.is_(False),
               ServiceType.modality == Modality.IN_PERSON).limit(1)) is not None


def check_in(session: Session, booking: Booking, service_type: ServiceType, *,
             attested_state: str | None, now: datetime) -> None:
    """Telehealth: consent on record, and the patient's location attested again now, in
    Arizona or a state where the provider holds an active license on the visit's date (the
    attestation is recorded on the visit)."""
    if service_type.modality != Modality.TELEHEALTH:
        return
    visit = session.scalar(select(TelehealthVisit)
                           .where(TelehealthVisit.booking_id == booking.id))
    if visit is None or visit.consent_at is None:
        raise Conflict("Record the patient's informed consent to telehealth before check-in.",
                       code="telehealth_consent_required")
    if not attested_state:
        raise InvalidInput("Checking in a telehealth visit re-attests the state the patient "
                           "is in: POST /api/v1/bookings/{id}/telehealth/check-in.",
                           code="location_attestation_required")
    state = attested_state.strip().upper()
    provider = session.get(Provider, booking.provider_id)
    location = session.get(Location, booking.location_id)
    credentials = [Credential(jurisdiction=c.jurisdiction, kind=c.kind.value,
                              status=c.status.value, issued_on=c.issued_on,
                              expires_on=c.expires_on) for c in provider.licenses]
    day = in_zone(booking.starts_at, location.timezone).date()
    if not may_practice(credentials, on=day, modality=Modality.TELEHEALTH,
                        patient_state=state):
        raise Conflict("The provider is not licensed in the state the patient is in now.",
                       code="patient_location_not_covered")
    visit.attested_state = state
    visit.attested_at = now


def check_completion(session: Session, booking: Booking, service_type: ServiceType, *,
                     now: datetime | None = None) -> None:
    """A held session stays held; every in-clinic treatment needs readings before dosing,
    during monitoring and at discharge (esketamine: its REMS readings)."""
    if active_hold(session, booking.id) is not None:
        raise Conflict("A pre-dose blood pressure above the clinic's threshold holds this "
                       "session until a clinician overrides the hold with a reason.",
                       code="session_on_hold")
    readings = [r.reading() for r in
                session.scalars(select(VitalSign).where(VitalSign.booking_id == booking.id))]
    if service_type.requires_rems:
        missing = vitals.missing_for_esketamine(readings)
        if missing:
            raise Conflict("An esketamine session needs vital signs before dosing, about 40 "
                           "minutes after it and at discharge (with the ride home confirmed).",
                           code="session_vitals_incomplete", missing=missing)
    elif is_treatment(service_type):
        missing = vitals.missing_for_treatment(readings)
        if missing:
            raise Conflict("An in-clinic treatment needs vital signs before dosing, during "
                           "monitoring and at discharge (with the ride home confirmed).",
                           code="session_vitals_incomplete", missing=missing)
    if is_treatment(service_type) and now is not None:
        timed = [r.timed() for r in
                 session.scalars(select(VitalSign).where(VitalSign.booking_id == booking.id))]
        over = vitals.discharge_from(timed, service_type.duration_minutes)
        if over is not None and now < over:
            raise Conflict("The dose cannot have ended yet: a session is completed after its "
                           f"{service_type.duration_minutes} minutes of dosing.",
                           code="session_not_over", earliest=over.isoformat())


def check_license(*, provider: Provider, location: Location, service_type: ServiceType,
                  start: datetime, patient_state: str | None) -> None:
    """The provider holds an active license (or telehealth registration) covering the
    visit's date, for where the patient will be."""
    credentials = [Credential(jurisdiction=c.jurisdiction, kind=c.kind.value,
                              status=c.status.value, issued_on=c.issued_on,
                              expires_on=c.expires_on) for c in provider.licenses]
    day = in_zone(start, location.timezone).date()
    if not may_practice(credentials, on=day, modality=service_type.modality,
                        patient_state=patient_state):
        raise Conflict("No active Arizona license or telehealth registration of the provider "
                       "covers that date.", code="provider_not_licensed")


def check_standing(session: Session, booking: Booking) -> None:
    """Does the booking still pass every rule about who may have it that it passed when it
    was made: the REMS requirements, contraindications, the clinician's clearance, the ride
    home, and the provider's license on the visit's date? Raises the first rule's error."""
    patient = session.get(Patient, booking.patient_id)
    provider = session.get(Provider, booking.provider_id)
    location = session.get(Location, booking.location_id)
    service_type = session.get(ServiceType, booking.service_type_id)
    check_booking(lambda: session, patient=patient, provider=provider, location=location,
                  service_type=service_type, ride_home_confirmed=booking.ride_home_confirmed)
    check_license(provider=provider, location=location, service_type=service_type,
                  start=booking.starts_at, patient_state=booking.patient_state)


def failing_rule(session: Session, booking: Booking) -> str | None:
    """The code of the first rule the booking no longer passes (None: it passes them all)."""
    try:
        check_standing(session, booking)
    except DomainError as broken:
        return broken.code
    return None
