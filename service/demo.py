"""The fictional demo clinic that ``make run`` loads into an empty database.

Every name, number and key here is made up. The demo keys are documented in the README and
work only against a database this module seeded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from service.domain.access import services as keys
from service.domain.access.actor import SYSTEM, Role
from service.domain.availability import search
from service.domain.availability import slots as engine
from service.domain.availability.models import WeeklyHours
from service.domain.bookings.history import BookingEvent, BookingEventKind
from service.domain.bookings.models import Booking, BookingStatus
from service.domain.bookings.services import BookingRequest, create_booking
from service.domain.clinic.models import (
    CancellationOutcome,
    Location,
    LocationKind,
    ServiceType,
)
from service.domain.consultations import scoring
from service.domain.consultations import services as consultations
from service.domain.consultations.models import (
    Alert,
    AlertKind,
    Assessment,
    ClearanceDecision,
    ClearanceStatus,
    DecisionSource,
    Screening,
    Severity,
    SideEffect,
    SideEffectKind,
    Task,
    TaskKind,
    TelehealthVisit,
    VitalSign,
)
from service.domain.consultations.screening import HARD_FOR_ESKETAMINE, Contraindication
from service.domain.consultations.vitals import Phase
from service.domain.oncall.models import OnCallContact
from service.domain.patients.models import Patient
from service.domain.providers.licensing import Modality
from service.domain.providers.models import (
    Credential,
    License,
    LicenseKind,
    LicenseStatus,
    Provider,
)
from service.domain.waitlist import services as waitlist
from service.uow import UnitOfWork

# What rules each kind of treatment out, as the demo clinic declares it (screening answers).
IV_CONTRAINDICATIONS = [c.value for c in (
    Contraindication.UNCONTROLLED_HYPERTENSION, Contraindication.ANEURYSMAL_VASCULAR_DISEASE,
    Contraindication.ARTERIOVENOUS_MALFORMATION, Contraindication.INTRACEREBRAL_HEMORRHAGE_HISTORY,
    Contraindication.HYPERSENSITIVITY, Contraindication.PREGNANCY)]
ESKETAMINE_CONTRAINDICATIONS = [c.value for c in sorted(HARD_FOR_ESKETAMINE)]
# Treatments: patients change their own visits up to a day ahead; a late cancellation (48 h)
# or a no-show of a chair costs a fee.
TREATMENT_CANCELLATION = {"patient_notice_hours": 24,
                          "late_cancel_outcome": CancellationOutcome.FEE,
                          "late_cancel_fee_cents": 7500,
                          "no_show_outcome": CancellationOutcome.FEE,
                          "no_show_fee_cents": 15000}

DEMO_KEYS: dict[str, str] = {
    role.value: f"ck_{role.value}_demo{role.value[:4]}0000_LOCAL-DEMO-KEY-{role.value.upper()}"
    for role in Role
}


def _provider(name: str, credential: Credential, npi: str, *, rems: bool,
              prescriber: bool = True) -> Provider:
    return Provider(name=name, credential=credential, npi=npi, timezone="America/Phoenix",
                    is_prescriber=prescriber, is_rems_prescriber=rems, active=True)


def _license(jurisdiction: str, kind: LicenseKind, board: str, number: str, issued: date,
             expires: date) -> License:
    return License(jurisdiction=jurisdiction, kind=kind, board=board, number=number,
                   issued_on=issued, expires_on=expires, status=LicenseStatus.ACTIVE)


def seed_demo(unit_of_work: Callable[[], UnitOfWork], *, today: date) -> bool:
    """Load the demo clinic if the database is empty; returns whether it did."""
    uow = unit_of_work()
    with uow:
        if uow.session.scalar(select(Provider.id).limit(1)) is not None:
            return False
        session = uow.session

        whitfield = _provider("Dr. Elena Whitfield", Credential.MD, "1482017351", rems=True)
        whitfield.licenses.append(_license(
            "US-AZ", LicenseKind.LICENSE, "Arizona Medical Board", "MD-70412",
            today - timedelta(days=900), today + timedelta(days=700)))
        lee = _provider("Marcus Lee, PA-C", Credential.PA, "1659032217", rems=False)
        lee.licenses.append(_license(
            "US-AZ", LicenseKind.LICENSE, "Arizona Regulatory Board of Physician Assistants",
            "PA-18233", today - timedelta(days=400), today + timedelta(days=500)))
        natarajan = _provider("Priya Natarajan, NP", Credential.NP, "1204788537", rems=True)
        natarajan.licenses.append(_license(
            "US-AZ", LicenseKind.LICENSE, "Arizona State Board of Nursing", "RN-NP-55190",
            today - timedelta(days=700), today + timedelta(days=40)))
        ortiz = _provider("Dr. Samuel Ortiz", Credential.MD, "1930426618", rems=False)
        ortiz.licenses.append(_license(
            "US-CA", LicenseKind.LICENSE, "Medical Board of California", "A-190442",
            today - timedelta(days=1200), today + timedelta(days=600)))
        ortiz.licenses.append(_license(
            "US-AZ", LicenseKind.TELEHEALTH_REGISTRATION, "Arizona Medical Board",
            "TH-36-3606-0042", today - timedelta(days=200), today + timedelta(days=530)))
        session.add_all([whitfield, lee, natarajan, ortiz])

        session.add_all([
            Location(name="Phoenix - Camelback", kind=LocationKind.CLINIC,
                     timezone="America/Phoenix", address_line1="2400 E Camelback Rd",
                     address_line2="Suite 310", city="Phoenix", state="AZ",
                     postal_code="85016", chairs=4, rems_certified=True),
            Location(name="Telehealth (video)", kind=LocationKind.VIRTUAL,
                     timezone="America/Phoenix", chairs=0),
        ])
        plan = {"confirmation": True, "hours_before": [72, 24, 2], "next_day_check_in": False}
        treatment_plan = {**plan, "next_day_check_in": True}
        session.add_all([
            ServiceType(code="consultation", name="Telehealth consultation",
                        modality=Modality.TELEHEALTH, duration_minutes=60,
                        buffer_after_minutes=10, min_notice_minutes=120, horizon_days=60,
                        slot_interval_minutes=30, late_cancel_hours=24, reminder_plan=plan,
                        patient_notice_hours=24),
            ServiceType(code="iv-infusion", name="IV infusion", modality=Modality.IN_PERSON,
                        duration_minutes=45, recovery_minutes=60, buffer_before_minutes=15,
                        buffer_after_minutes=15, min_notice_minutes=24 * 60, horizon_days=90,
                        slot_interval_minutes=15, late_cancel_hours=48, needs_chair=True,
                        needs_clearance=True, reminder_plan=treatment_plan,
                        contraindications=IV_CONTRAINDICATIONS, **TREATMENT_CANCELLATION),
            ServiceType(code="esketamine", name="Esketamine (Spravato) session",
                        modality=Modality.IN_PERSON, duration_minutes=15, recovery_minutes=120,
                        buffer_before_minutes=15, buffer_after_minutes=0,
                        min_notice_minutes=24 * 60, horizon_days=90, slot_interval_minutes=15,
                        late_cancel_hours=48, needs_chair=True, needs_clearance=True,
                        requires_rems=True, reminder_plan=treatment_plan,
                        contraindications=ESKETAMINE_CONTRAINDICATIONS,
                        **TREATMENT_CANCELLATION),
            ServiceType(code="follow-up", name="Follow-up check-in",
                        modality=Modality.TELEHEALTH, duration_minutes=20,
                        buffer_after_minutes=5, min_notice_minutes=60, horizon_days=60,
                        slot_interval_minutes=20, late_cancel_hours=12, reminder_plan=plan),
        ])
        rivera = Patient(first_name="Jordan", last_name="Rivera", birth_date=date(1986, 3, 14),
                         email="jordan.rivera@example.com", phone="+16025550111",
                         timezone="America/Phoenix", home_state="AZ", sms_consent=True,
                         email_consent=True)
        begay = Patient(first_name="Ava", last_name="Begay", birth_date=date(1979, 11, 2),
                        email="ava.begay@example.org", phone="+19285550122",
                        timezone="America/Denver", home_state="AZ", sms_consent=True,
                        email_consent=False)
        nguyen = Patient(first_name="Chris", last_name="Nguyen", birth_date=date(1991, 7, 23),
                         email="chris.nguyen@example.net", phone="+14805550133",
                         timezone="America/Phoenix", home_state="AZ", sms_consent=False,
                         email_consent=True, rems_enrolled=True)
        session.add_all([rivera, begay, nguyen])
        session.flush()
        # The on-call rota: Dr. Whitfield first, Marcus Lee when she does not acknowledge.
        session.add_all([
            OnCallContact(name="Dr. Elena Whitfield (on call)", tier=1,
                          provider_id=whitfield.id, email="oncall.whitfield@desertbloom.example",
                          phone="+16025550190"),
            OnCallContact(name="Marcus Lee, PA-C (backup)", tier=2, provider_id=lee.id,
                          email="oncall.lee@desertbloom.example", phone="+16025550191"),
        ])
        clinic, virtual = session.scalars(select(Location).order_by(Location.kind)).all()
        weekdays, hours = range(5), WeeklyHours
        session.add_all(
            [hours(provider_id=whitfield.id, location_id=clinic.id, weekday=d,
                   start_time=time(8), end_time=time(12)) for d in weekdays]
            + [hours(provider_id=whitfield.id, location_id=virtual.id, weekday=d,
                     start_time=time(13), end_time=time(17)) for d in weekdays]
            + [hours(provider_id=lee.id, location_id=clinic.id, weekday=d,
                     start_time=time(9), end_time=time(17)) for d in weekdays]
            + [hours(provider_id=natarajan.id, location_id=clinic.id, weekday=d,
                     start_time=time(8), end_time=time(16)) for d in (1, 3)]
            + [hours(provider_id=natarajan.id, location_id=virtual.id, weekday=d,
                     start_time=time(9), end_time=time(15)) for d in (0, 2, 4)]
            + [hours(provider_id=ortiz.id, location_id=virtual.id, weekday=d,
                     start_time=time(10), end_time=time(18)) for d in range(4)])
        uow.commit()
        provider_id, patient_id = whitfield.id, rivera.id
        ids = {"whitfield": whitfield.id, "lee": lee.id, "clinic": clinic.id,
               "virtual": virtual.id, "rivera": rivera.id, "nguyen": nguyen.id,
               "begay": begay.id}

    _demo_history(unit_of_work, ids, today)
    _demo_bookings(unit_of_work, ids, today)
    _demo_waitlist(unit_of_work, ids, today)

    for role, key in DEMO_KEYS.items():
        keys.issue_key(unit_of_work(), role=role, label=f"demo {role} (local only)", key=key,
                       provider_id=provider_id if role == Role.PROVIDER else None,
                       patient_id=patient_id if role == Role.PATIENT else None)
    return True


def _last_weekday(day: date) -> date:
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _past_visit(service_type: ServiceType, *, patient_id: uuid.UUID, provider_id: uuid.UUID,
                location_id: uuid.UUID, start: datetime, chair: int | None) -> Booking:
    """A fulfilled visit, with the blocks the booking rules give it."""
    rules = search.rules_of(service_type)
    block = engine.provider_block(start, rules)
    return Booking(
        patient_id=patient_id, provider_id=provider_id, service_type_id=service_type.id,
        location_id=location_id, status=BookingStatus.FULFILLED, starts_at=start,
        ends_at=start + rules.duration, provider_starts_at=block.start,
        provider_ends_at=block.end, hold_ends_at=engine.chair_block(start, rules).end,
        chair_number=chair, patient_state="AZ", checked_in_at=start - timedelta(minutes=10),
        ride_home_confirmed=service_type.needs_clearance)


def _demo_history(unit_of_work: Callable[[], UnitOfWork], ids: dict[str, uuid.UUID],
                  today: date) -> None:
    """Chris Nguyen's history: a consultation three weeks ago that cleared him, and an
    esketamine session a few days ago with its vital signs, a side effect, PHQ-9 scores and
    the REMS monitoring form now due.

    The booking rules refuse starts in the past, so this history is written through the
    models directly, as the use cases would have recorded it at the time: the visits fall in
    Dr. Whitfield's working hours (video 13-17, clinic 8-12, Monday to Friday) with her
    Arizona license and REMS certification, the consultation had consent and an Arizona
    attestation, the screening shows no contraindication, she cleared him, and the session
    has the REMS readings (before dosing, 40 minutes after, at discharge with the ride home)
    that completing it requires. No reminders are planned for visits already held.
    """
    phoenix = ZoneInfo("America/Phoenix")
    with unit_of_work() as uow:
        session = uow.session
        types = {t.code: t for t in session.scalars(select(ServiceType))}
        patient, whitfield = ids["nguyen"], ids["whitfield"]
        consulted = datetime.combine(_last_weekday(today - timedelta(days=21)), time(14),
                                     tzinfo=phoenix)
        dosed = datetime.combine(_last_weekday(today - timedelta(days=3)), time(9),
                                 tzinfo=phoenix)
        consultation = _past_visit(types["consultation"], patient_id=patient,
                                   provider_id=whitfield, location_id=ids["virtual"],
                                   start=consulted, chair=None)
        esketamine = _past_visit(types["esketamine"], patient_id=patient,
                                 provider_id=whitfield, location_id=ids["clinic"],
                                 start=dosed, chair=1)
        session.add_all([consultation, esketamine])
        session.flush()
        for booking in (consultation, esketamine):
            session.add_all([
                BookingEvent(booking_id=booking.id, kind=kind, occurred_at=at)
                for kind, at in ((BookingEventKind.CREATED, booking.starts_at
                                  - timedelta(days=7)),
                                 (BookingEventKind.CHECKED_IN, booking.checked_in_at),
                                 (BookingEventKind.COMPLETED, booking.hold_ends_at))])
        session.add(TelehealthVisit(booking_id=consultation.id,
                                    consent_at=consulted - timedelta(minutes=30),
                                    attested_state="AZ",
                                    attested_at=consultation.checked_in_at))
        session.add(Screening(booking_id=consultation.id, patient_id=patient,
                              medical_history="Major depressive disorder, two adequate "
                                              "antidepressant trials; no cardiovascular or "
                                              "neurological history."))
        session.add(ClearanceDecision(
            patient_id=patient, consultation_id=consultation.id,
            decision=ClearanceStatus.CLEARED, source=DecisionSource.CLINICIAN,
            reason="No contraindication; treatment-resistant depression.",
            decided_at=consulted + timedelta(minutes=55), decided_by_provider_id=whitfield))
        session.get(Patient, patient).cleared_for_treatment = True
        # (phase, minutes after the dose it was taken, systolic, diastolic, heart rate)
        for phase, offset, systolic, diastolic, pulse in (
                (Phase.PRE, -10, 132, 84, 74), (Phase.DURING, 40, 146, 90, 80),
                (Phase.DURING, 90, 136, 86, 76), (Phase.DISCHARGE, 130, 128, 82, 72)):
            taken = dosed + timedelta(minutes=offset)
            session.add(VitalSign(
                booking_id=esketamine.id, patient_id=patient, phase=phase,
                minutes_after_dose=offset if phase is Phase.DURING else None,
                systolic=systolic, diastolic=diastolic, heart_rate=pulse, spo2=98,
                taken_at=taken, recorded_at=taken,
                ride_home_confirmed=phase is Phase.DISCHARGE))
        session.add(SideEffect(booking_id=esketamine.id, patient_id=patient,
                               kind=SideEffectKind.DISSOCIATION, severity=Severity.MILD,
                               noted_at=dosed + timedelta(minutes=20), resolved=True,
                               resolved_at=dosed + timedelta(minutes=80)))
        for taken, answers in ((consulted, [2, 2, 2, 2, 1, 2, 2, 2, 0]),
                               (dosed + timedelta(minutes=130), [1, 2, 1, 2, 1, 1, 1, 1, 0])):
            result = scoring.score(scoring.Instrument.PHQ9, answers)
            session.add(Assessment(patient_id=patient, instrument=result.instrument,
                                   answers=answers, total=result.total, band=result.band,
                                   urgent=result.urgent, taken_at=taken, recorded_at=taken))
        # Jordan Rivera's intake PHQ-9, filled in yesterday evening before his consultation:
        # item 9 above 0, an urgent alert the console shows open (seeded directly: no
        # notices go out for it).
        answers = [2, 2, 1, 2, 1, 2, 1, 1, 1]
        result = scoring.score(scoring.Instrument.PHQ9, answers)
        taken = datetime.combine(today - timedelta(days=1), time(19, 30), tzinfo=phoenix)
        intake = Assessment(patient_id=ids["rivera"], instrument=result.instrument,
                            answers=answers, total=result.total, band=result.band,
                            urgent=result.urgent, taken_at=taken, recorded_at=taken)
        session.add(intake)
        session.flush()
        session.add(Alert(patient_id=ids["rivera"], assessment_id=intake.id,
                          kind=AlertKind.PHQ9_ITEM_9, urgent=True, raised_at=taken))
        session.add(Task(kind=TaskKind.REMS_MONITORING_FORM, booking_id=esketamine.id,
                         patient_id=patient, provider_id=whitfield,
                         due_at=esketamine.hold_ends_at + consultations.REMS_FORM_DUE))
        uow.commit()


def _next_monday(today: date) -> date:
    """The Monday of the demo's "next week" (at least three days away)."""
    monday = today + timedelta(days=7 - today.weekday())
    if monday - today < timedelta(days=3):
        monday += timedelta(days=7)
    return monday


def _demo_waitlist(unit_of_work: Callable[[], UnitOfWork], ids: dict[str, uuid.UUID],
                   today: date) -> None:
    """Ava Begay waits for a video consultation with Dr. Whitfield next week, in the
    afternoon: when Jordan Rivera's Monday consultation is cancelled (the README's
    walk-through), the scheduler offers her that slot."""
    with unit_of_work() as uow:
        consultation = uow.session.scalar(select(ServiceType.id).where(
            ServiceType.code == "consultation"))
    monday = _next_monday(today)
    waitlist.join_waitlist(unit_of_work(), SYSTEM, waitlist.EntryRequest(
        patient_id=ids["begay"], service_type_id=consultation,
        provider_ids=[ids["whitfield"]], earliest_date=monday,
        latest_date=monday + timedelta(days=4), times_of_day=["afternoon"],
        patient_state="AZ"), today=today)


def _demo_bookings(unit_of_work: Callable[[], UnitOfWork], ids: dict[str, uuid.UUID],
                   today: date) -> None:
    """Two visits next week, booked through the real use case so they obey every rule."""
    with unit_of_work() as uow:
        types = {t.code: t.id for t in uow.session.scalars(select(ServiceType))}
    monday = _next_monday(today)
    phoenix = ZoneInfo("America/Phoenix")
    visits = [
        BookingRequest(patient_id=ids["rivera"], provider_id=ids["whitfield"],
                       service_type_id=types["consultation"], location_id=ids["virtual"],
                       start=datetime.combine(monday, time(14), tzinfo=phoenix),
                       patient_state="AZ"),
        BookingRequest(patient_id=ids["nguyen"], provider_id=ids["lee"],
                       service_type_id=types["iv-infusion"], location_id=ids["clinic"],
                       start=datetime.combine(monday + timedelta(days=1), time(10),
                                              tzinfo=phoenix),
                       ride_home_confirmed=True),
    ]
    booked = [create_booking(unit_of_work(), SYSTEM, visit, now=datetime.now(phoenix))
              for visit in visits]
    # Jordan Rivera's intake form, ahead of the consultation: a history of psychosis puts
    # him in front of a clinician ("needs review") before any treatment can be booked.
    consultations.record_screening(
        unit_of_work(), SYSTEM, booked[0].id, answers={"psychosis_history": True},
        medical_history="Generalized anxiety and depression; one brief psychotic episode "
                        "in 2015, none since.", now=datetime.now(phoenix))
