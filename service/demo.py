"""The fictional demo clinic that ``make run`` loads into an empty database.

Every name, number and key here is made up. The demo keys are documented in the README and
work only against a database this module seeded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

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
    Route,
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
from service.domain.oncall.models import (
    AlertNotice,
    NoticeChannel,
    NoticeStatus,
    OnCallContact,
    notice_key,
)
from service.domain.patients.models import Patient
from service.domain.providers.licensing import Modality
from service.domain.providers.models import (
    Credential,
    License,
    LicenseKind,
    LicenseStatus,
    Provider,
)
from service.domain.series import services as series
from service.domain.waitlist import services as waitlist
from service.uow import UnitOfWork

# What rules each kind of treatment out, as the demo clinic declares it (screening answers).
IV_CONTRAINDICATIONS = [c.value for c in (
    Contraindication.UNCONTROLLED_HYPERTENSION, Contraindication.ANEURYSMAL_VASCULAR_DISEASE,
    Contraindication.ARTERIOVENOUS_MALFORMATION, Contraindication.INTRACEREBRAL_HEMORRHAGE_HISTORY,
    Contraindication.HYPERSENSITIVITY, Contraindication.PREGNANCY)]
ESKETAMINE_CONTRAINDICATIONS = [c.value for c in sorted(HARD_FOR_ESKETAMINE)]
# The pill (oral or sublingual ketamine) declares the same as IV ketamine.
PILL_CONTRAINDICATIONS = IV_CONTRAINDICATIONS

# ALERT_ESCALATION_MINUTES' default: how far apart the demo alert's tiers were told.
DEMO_ESCALATION = timedelta(minutes=10)


def _say(text: str, reminder: str | None = None) -> dict[str, str | None]:
    """An instruction: the patient's text, and its PHI-free wording for reminders (or None)."""
    return {"text": text, "reminder": reminder}


# How to prepare and what to do after, per kind of visit, in the demo clinic's words.
DRIVER = _say("Arrive with a driver who will take you home: you may not drive after "
              "ketamine.", "Arrive with a driver.")
NO_DRIVING = _say("No driving, cycling or operating machinery until the next day, after a "
                  "night's sleep.", "No driving until the next day.")
INSTRUCTIONS: dict[str, dict[str, list[dict[str, str | None]]]] = {
    "consultation": {
        "preparation": [_say("Join the video call from a quiet, private place a few minutes "
                             "early, with a list of the medicines you take.",
                             "Join from a quiet, private place.")],
        "after_care": []},
    "iv-infusion": {
        "preparation": [
            _say("Eat lightly on the day of your infusion and nothing for 2 hours before it; "
                 "clear fluids are fine until then.", "Eat lightly; nothing 2 h before."),
            _say("Drink water the day before and the morning of your visit.", "Stay hydrated."),
            DRIVER],
        "after_care": [NO_DRIVING]},
    "esketamine": {
        "preparation": [
            _say("Nothing to eat for 2 hours and nothing to drink for 30 minutes before your "
                 "Spravato session.", "Nothing to eat 2 h before."),
            _say("Use a nasal corticosteroid or decongestant, if you need one, at least 1 hour "
                 "before the session."),
            _say("Bring your Spravato REMS patient card; plan to stay at least 2 hours."),
            DRIVER],
        "after_care": [NO_DRIVING]},
    "oral-in-clinic": {
        "preparation": [
            _say("Nothing to eat for 2 hours before your oral ketamine dose; clear fluids are "
                 "fine.", "Nothing to eat 2 h before."),
            _say("Bring the medicines you take and wear comfortable clothes."),
            DRIVER],
        "after_care": [NO_DRIVING]},
    "sublingual-in-clinic": {
        "preparation": [
            _say("Nothing to eat for 2 hours before your sublingual ketamine dose; clear "
                 "fluids are fine.", "Nothing to eat 2 h before."),
            _say("You will hold the lozenge under your tongue for about 15 minutes, then spit "
                 "out what is left: do not swallow it."),
            DRIVER],
        "after_care": [NO_DRIVING]},
    "sublingual-home": {
        "preparation": [
            _say("Take your prescribed sublingual dose at home only as prescribed, seated, "
                 "with a sober adult in the home; keep the rest locked away.",
                 "Have a support person at home."),
            _say("Join the video check-in from a quiet, private place.",
                 "Join from a quiet, private place.")],
        "after_care": [_say("No driving until the next day after a home dose.",
                            "No driving until the next day.")]},
    "follow-up": {"preparation": [], "after_care": []},
}
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
                        contraindications=IV_CONTRAINDICATIONS, route=Route.IV,
                        arrive_early_minutes=15, **TREATMENT_CANCELLATION),
            ServiceType(code="esketamine", name="Esketamine (Spravato) session",
                        modality=Modality.IN_PERSON, duration_minutes=15, recovery_minutes=120,
                        buffer_before_minutes=15, buffer_after_minutes=0,
                        min_notice_minutes=24 * 60, horizon_days=90, slot_interval_minutes=15,
                        late_cancel_hours=48, needs_chair=True, needs_clearance=True,
                        requires_rems=True, reminder_plan=treatment_plan,
                        contraindications=ESKETAMINE_CONTRAINDICATIONS,
                        route=Route.INTRANASAL, arrive_early_minutes=15,
                        **TREATMENT_CANCELLATION),
            # The pill: in the clinic (a dose, monitoring in a chair, vitals), and at home
            # (a prescribed protocol whose telehealth check-ins are booked as a series).
            ServiceType(code="oral-in-clinic", name="Oral dose in clinic (monitored)",
                        modality=Modality.IN_PERSON, duration_minutes=30, recovery_minutes=90,
                        buffer_before_minutes=15, buffer_after_minutes=0,
                        min_notice_minutes=24 * 60, horizon_days=90, slot_interval_minutes=15,
                        late_cancel_hours=48, needs_chair=True, needs_clearance=True,
                        reminder_plan=treatment_plan, contraindications=PILL_CONTRAINDICATIONS,
                        route=Route.ORAL, arrive_early_minutes=15,
                        **TREATMENT_CANCELLATION),
            ServiceType(code="sublingual-in-clinic", name="Sublingual dose in clinic "
                        "(monitored)", modality=Modality.IN_PERSON, duration_minutes=30,
                        recovery_minutes=90, buffer_before_minutes=15, buffer_after_minutes=0,
                        min_notice_minutes=24 * 60, horizon_days=90, slot_interval_minutes=15,
                        late_cancel_hours=48, needs_chair=True, needs_clearance=True,
                        reminder_plan=treatment_plan, contraindications=PILL_CONTRAINDICATIONS,
                        route=Route.SUBLINGUAL, arrive_early_minutes=15,
                        **TREATMENT_CANCELLATION),
            ServiceType(code="sublingual-home", name="Home sublingual protocol: video "
                        "check-in", modality=Modality.TELEHEALTH, duration_minutes=20,
                        buffer_after_minutes=5, min_notice_minutes=60, horizon_days=60,
                        slot_interval_minutes=20, late_cancel_hours=12, needs_clearance=True,
                        reminder_plan=plan, contraindications=PILL_CONTRAINDICATIONS,
                        route=Route.SUBLINGUAL, at_home=True),
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
        okafor = Patient(first_name="Lena", last_name="Okafor", birth_date=date(1988, 5, 9),
                         email="lena.okafor@example.com", phone="+14805550144",
                         timezone="America/Phoenix", home_state="AZ", sms_consent=True,
                         email_consent=True)
        session.add_all([rivera, begay, nguyen, okafor])
        for service_type in session.new:
            if isinstance(service_type, ServiceType):
                service_type.preparation = INSTRUCTIONS[service_type.code]["preparation"]
                service_type.after_care = INSTRUCTIONS[service_type.code]["after_care"]
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
               "natarajan": natarajan.id, "begay": begay.id, "okafor": okafor.id}

    _demo_history(unit_of_work, ids, today)
    _demo_pill_history(unit_of_work, ids, today)
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


@dataclass(frozen=True)
class _History:
    """A patient's consultation that cleared them and a treatment session after it."""

    patient: uuid.UUID
    consulted: datetime
    dosed: datetime
    treatment: str  # the service type's code
    chair: int
    medical_history: str
    reason: str
    # (phase, minutes after the dose it was taken, systolic, diastolic, heart rate)
    readings: tuple[tuple[Phase, int, int, int, int], ...]


def _held(session: Session, ids: dict[str, uuid.UUID], history: _History
          ) -> tuple[Booking, Booking]:
    """Write a history as the use cases would have recorded it at the time (the booking rules
    refuse starts in the past): both visits with Dr. Whitfield in her working hours (video
    13-17, clinic 8-12, Monday to Friday) under her Arizona license, created a week ahead,
    checked in and completed; the consultation with consent and an Arizona attestation and a
    screening without contraindication; her decision clearing the patient; the session's
    readings (before the dose, during monitoring, at discharge with the ride home) that
    completing it requires. No reminders are planned for visits already held."""
    types = {t.code: t for t in session.scalars(select(ServiceType))}
    patient, whitfield = history.patient, ids["whitfield"]
    consultation = _past_visit(types["consultation"], patient_id=patient,
                               provider_id=whitfield, location_id=ids["virtual"],
                               start=history.consulted, chair=None)
    treatment = _past_visit(types[history.treatment], patient_id=patient,
                            provider_id=whitfield, location_id=ids["clinic"],
                            start=history.dosed, chair=history.chair)
    session.add_all([consultation, treatment])
    session.flush()
    for booking in (consultation, treatment):
        session.add_all([
            BookingEvent(booking_id=booking.id, kind=kind, occurred_at=at)
            for kind, at in ((BookingEventKind.CREATED, booking.starts_at - timedelta(days=7)),
                             (BookingEventKind.CHECKED_IN, booking.checked_in_at),
                             (BookingEventKind.COMPLETED, booking.hold_ends_at))])
    session.add(TelehealthVisit(booking_id=consultation.id,
                                consent_at=history.consulted - timedelta(minutes=30),
                                attested_state="AZ", attested_at=consultation.checked_in_at))
    session.add(Screening(booking_id=consultation.id, patient_id=patient,
                          medical_history=history.medical_history))
    session.add(ClearanceDecision(
        patient_id=patient, consultation_id=consultation.id,
        decision=ClearanceStatus.CLEARED, source=DecisionSource.CLINICIAN,
        reason=history.reason, decided_at=history.consulted + timedelta(minutes=55),
        decided_by_provider_id=whitfield))
    session.get(Patient, patient).cleared_for_treatment = True
    for phase, offset, systolic, diastolic, pulse in history.readings:
        taken = history.dosed + timedelta(minutes=offset)
        session.add(VitalSign(
            booking_id=treatment.id, patient_id=patient, phase=phase,
            minutes_after_dose=offset if phase is Phase.DURING else None,
            systolic=systolic, diastolic=diastolic, heart_rate=pulse, spo2=98,
            taken_at=taken, recorded_at=taken, ride_home_confirmed=phase is Phase.DISCHARGE))
    return consultation, treatment


def _demo_history(unit_of_work: Callable[[], UnitOfWork], ids: dict[str, uuid.UUID],
                  today: date) -> None:
    """Chris Nguyen's history: a consultation three weeks ago that cleared him, and an
    esketamine session a few days ago with its REMS readings (before dosing, 40 minutes
    after, at discharge with the ride home), a side effect, PHQ-9 scores and the REMS
    monitoring form now due (see ``_held``)."""
    phoenix = ZoneInfo("America/Phoenix")
    patient = ids["nguyen"]
    consulted = datetime.combine(_last_weekday(today - timedelta(days=21)), time(14),
                                 tzinfo=phoenix)
    dosed = datetime.combine(_last_weekday(today - timedelta(days=3)), time(9), tzinfo=phoenix)
    with unit_of_work() as uow:
        session = uow.session
        _, esketamine = _held(session, ids, _History(
            patient=patient, consulted=consulted, dosed=dosed, treatment="esketamine", chair=1,
            medical_history="Major depressive disorder, two adequate antidepressant trials; "
                            "no cardiovascular or neurological history.",
            reason="No contraindication; treatment-resistant depression.",
            readings=((Phase.PRE, -10, 132, 84, 74), (Phase.DURING, 40, 146, 90, 80),
                      (Phase.DURING, 90, 136, 86, 76), (Phase.DISCHARGE, 130, 128, 82, 72))))
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
        # item 9 above 0, an urgent alert the console shows open.
        answers = [2, 2, 1, 2, 1, 2, 1, 1, 1]
        result = scoring.score(scoring.Instrument.PHQ9, answers)
        taken = datetime.combine(today - timedelta(days=1), time(19, 30), tzinfo=phoenix)
        intake = Assessment(patient_id=ids["rivera"], instrument=result.instrument,
                            answers=answers, total=result.total, band=result.band,
                            urgent=result.urgent, taken_at=taken, recorded_at=taken)
        session.add(intake)
        session.flush()
        alert = Alert(patient_id=ids["rivera"], assessment_id=intake.id,
                      kind=AlertKind.PHQ9_ITEM_9, urgent=True, raised_at=taken)
        session.add(alert)
        session.flush()
        # The rota was told overnight, tier 1 at once and tier 2 ten minutes later; nobody
        # has acknowledged yet (written as sent: the demo's scheduler sends nothing again).
        for contact in session.scalars(select(OnCallContact).order_by(OnCallContact.tier)):
            told = taken + (contact.tier - 1) * DEMO_ESCALATION
            for channel in (NoticeChannel.EMAIL, NoticeChannel.SMS):
                session.add(AlertNotice(
                    alert_id=alert.id, contact_id=contact.id, tier=contact.tier,
                    escalated=contact.tier > 1, channel=channel,
                    dedupe_key=notice_key(alert.id, contact.tier, contact.id, channel.value),
                    status=NoticeStatus.SENT, due_at=told, next_attempt_at=told, attempts=1,
                    sent_at=told, created_at=taken, updated_at=told))
        session.add(Task(kind=TaskKind.REMS_MONITORING_FORM, booking_id=esketamine.id,
                         patient_id=patient, provider_id=ids["whitfield"],
                         due_at=esketamine.hold_ends_at + consultations.REMS_FORM_DUE))
        uow.commit()


def _demo_pill_history(unit_of_work: Callable[[], UnitOfWork], ids: dict[str, uuid.UUID],
                       today: date) -> None:
    """Lena Okafor and the pill: a consultation three weeks ago that cleared her, and her first
    sublingual dose in the clinic a week ago (readings before, during and at discharge, with
    her ride home), so her home protocol's check-ins can be booked (``_demo_bookings``)."""
    phoenix = ZoneInfo("America/Phoenix")
    with unit_of_work() as uow:
        _held(uow.session, ids, _History(
            patient=ids["okafor"],
            consulted=datetime.combine(_last_weekday(today - timedelta(days=21)),
                                       time(15, 30), tzinfo=phoenix),
            dosed=datetime.combine(_last_weekday(today - timedelta(days=7)), time(10),
                                   tzinfo=phoenix),
            treatment="sublingual-in-clinic", chair=2,
            medical_history="Recurrent depressive episodes; no cardiovascular history; lives "
                            "3 hours from the clinic.",
            reason="No contraindication; a first sublingual dose in clinic, then a home "
                   "protocol with video check-ins.",
            readings=((Phase.PRE, -10, 126, 80, 70), (Phase.DURING, 30, 138, 86, 76),
                      (Phase.DURING, 60, 130, 82, 72), (Phase.DISCHARGE, 95, 124, 78, 70))))
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
    """Two visits next week and a home protocol's six video check-ins, booked through the real
    use cases so they obey every rule."""
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
    # Lena Okafor's home protocol: six video check-ins with Priya Natarajan, Mondays and Fridays.
    series.create_series(unit_of_work(), SYSTEM, series.SeriesRequest(
        patient_id=ids["okafor"], service_type_id=types["sublingual-home"],
        first_start=datetime.combine(monday, time(10), tzinfo=phoenix),
        protocol="home-check-ins", provider_id=ids["natarajan"],
        location_id=ids["virtual"], preferred_weekdays=(0, 4), patient_state="AZ"),
        now=datetime.now(phoenix))
    # Jordan Rivera's intake form, ahead of the consultation: a history of psychosis puts
    # him in front of a clinician ("needs review") before any treatment can be booked.
    consultations.record_screening(
        unit_of_work(), SYSTEM, booked[0].id, answers={"psychosis_history": True},
        medical_history="Generalized anxiety and depression; one brief psychotic episode "
                        "in 2015, none since.", now=datetime.now(phoenix))
