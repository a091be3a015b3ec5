"""Every models module, imported once so the metadata (Alembic, tests) is complete."""

from service.db import Base
from service.domain.access.models import ApiKey
from service.domain.audit.models import AuditEvent
from service.domain.availability.models import DateOverride, TimeOff, WeeklyHours
from service.domain.bookings.history import BookingEvent
from service.domain.bookings.models import Booking
from service.domain.calendar.models import (
    BookingChange,
    CalendarFeedToken,
    SyncCounter,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from service.domain.clinic.models import Location, ServiceType
from service.domain.connections.models import CalendarConnection, CalendarWrite, ExternalBusy
from service.domain.consultations.models import (
    Alert,
    Assessment,
    ClearanceDecision,
    InPersonEvaluation,
    Screening,
    SessionHold,
    SideEffect,
    Task,
    TelehealthVisit,
    VitalSign,
)
from service.domain.idempotency.models import IdempotencyRecord
from service.domain.oncall.models import AlertNotice, OnCallContact
from service.domain.patients.models import Patient
from service.domain.providers.models import License, Provider
from service.domain.reminders.models import Reminder
from service.domain.series.models import TreatmentSeries
from service.domain.waitlist.models import WaitlistEntry, WaitlistOffer, WaitlistOpening

__all__ = [
    "ApiKey", "Base", "Booking", "BookingEvent", "DateOverride", "IdempotencyRecord",
    "License", "Location", "Patient", "Provider", "Reminder", "ServiceType", "TimeOff",
    "WeeklyHours",
    "TreatmentSeries",
    "BookingChange", "CalendarFeedToken", "SyncCounter", "WebhookAttempt", "WebhookDelivery",
    "WebhookSubscription",
    "Alert", "Assessment", "AuditEvent", "ClearanceDecision", "InPersonEvaluation",
    "Screening", "SessionHold", "SideEffect", "Task", "TelehealthVisit", "VitalSign",
    "AlertNotice", "OnCallContact",
    "WaitlistEntry", "WaitlistOffer", "WaitlistOpening",
    "CalendarConnection", "CalendarWrite", "ExternalBusy",
]
