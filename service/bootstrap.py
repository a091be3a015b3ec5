"""Who reacts to what: every domain event and its handlers, in one place.

A use case records what happened (``uow.record(BookingCreated(...))``) and knows nothing of
the areas that react. When its unit of work commits, the message bus built here runs these
handlers, in this order, inside the same transaction (``service/messagebus.py``): so a
booking, its reminders, its change-feed row and its webhook deliveries commit together or
not at all, and the scheduler (``python -m service.scheduler``) later sends what the outbox
rows say.

Every event type is listed, with ``[]`` when nothing reacts yet: the bus refuses an event it
does not know, so a new event is a decision taken here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import timedelta

from service.config import Settings
from service.domain.availability.events import ScheduleOpened
from service.domain.bookings import attention
from service.domain.bookings import events as booking
from service.domain.calendar import sync
from service.domain.connections import writeback as connected_calendars
from service.domain.connections.events import CalendarStaleEnded, CalendarWentStale
from service.domain.consultations import services as consultations
from service.domain.consultations.events import (
    AlertAcknowledged,
    AlertRaised,
    ClearanceChanged,
    ScreeningChanged,
)
from service.domain.events import Event
from service.domain.oncall import services as oncall
from service.domain.patients import services as patients
from service.domain.patients.events import RemsEnrolmentChanged
from service.domain.providers.events import LicenseChanged
from service.domain.reminders import services as reminders
from service.domain.series.events import SeriesCreated
from service.domain.waitlist import services as waitlist
from service.domain.waitlist.events import WaitlistFilled, WaitlistOffered
from service.domain.webhooks import services as webhooks
from service.messagebus import FinalHandler, Handler, MessageBus


def handlers(settings: Settings) -> dict[type[Event], Sequence[Handler]]:
    """Every event type and its handlers, in order; ``settings`` configure the handlers that
    need them (reminder planning: the quiet hours), so nothing reads the environment."""
    quiet = reminders.quiet_hours(settings)

    def planning(handler: Handler) -> Handler:
        return functools.partial(handler, quiet=quiet)

    def escalating(handler: Handler) -> Handler:
        return functools.partial(
            handler, escalation=timedelta(minutes=settings.alert_escalation_minutes))

    return {
        booking.BookingCreated: [planning(reminders.plan_new_booking),
                                 webhooks.enqueue_booking_change,
                                 connected_calendars.enqueue_writes],
        booking.BookingRescheduled: [planning(reminders.replan_rescheduled),
                                     webhooks.enqueue_booking_change,
                                     waitlist.open_on_reschedule,
                                     connected_calendars.enqueue_writes],
        booking.BookingConfirmed: [planning(reminders.plan_confirmation),
                                   waitlist.fill_on_confirmation,
                                   connected_calendars.enqueue_writes],
        booking.BookingCheckedIn: [reminders.cancel_before_visit],
        booking.BookingCompleted: [consultations.open_rems_monitoring_task],
        booking.BookingCancelled: [reminders.cancel_on_cancellation,
                                   webhooks.enqueue_booking_change,
                                   waitlist.open_on_cancellation,
                                   connected_calendars.enqueue_writes],
        booking.BookingNoShow: [reminders.cancel_on_no_show, webhooks.enqueue_booking_change],
        SeriesCreated: [webhooks.enqueue_series_created],
        ClearanceChanged: [patients.follow_clearance, attention.recheck_patient],
        # Gates re-checked when their inputs change: future bookings that no longer pass are
        # flagged (bookings/attention.py), with an alert and a webhook.
        ScreeningChanged: [attention.recheck_patient],
        RemsEnrolmentChanged: [attention.recheck_patient],
        LicenseChanged: [attention.recheck_provider],
        booking.BookingNeedsAttention: [consultations.raise_attention_alert,
                                        webhooks.enqueue_booking_attention],
        # Escalated alerts: an urgent alert tells the on-call rota at once and the next tier
        # while nobody acknowledges it (oncall/), and every alert reaches the webhooks.
        AlertRaised: [escalating(oncall.notify_on_call), webhooks.enqueue_alert_raised],
        AlertAcknowledged: [oncall.stop_escalation, webhooks.enqueue_alert_acknowledged],
        # The waitlist: freed time becomes an opening the scheduler's waitlist job offers
        # (domain/waitlist/services.py); an offer goes out as a message and a webhook.
        ScheduleOpened: [waitlist.open_on_schedule],
        WaitlistOffered: [planning(reminders.plan_waitlist_offer),
                          webhooks.enqueue_waitlist_offered],
        WaitlistFilled: [webhooks.enqueue_waitlist_filled],
        # Connected calendars: a stale source is an alert for staff and its provider (no
        # patient, not urgent), resolved when it syncs again.
        CalendarWentStale: [consultations.raise_calendar_stale_alert],
        CalendarStaleEnded: [consultations.resolve_calendar_stale_alert],
    }


# Run once per commit, after every handler above, with all the events of these kinds the
# transaction handled. The change feed numbers its changes here: its counter row stays
# locked until the commit, so it must be the last lock taken (see calendar/sync.py).
FINAL: list[tuple[tuple[type[Event], ...], FinalHandler]] = [
    (booking.BOOKING_CHANGES, sync.number_changes),
]


def bootstrap(settings: Settings) -> MessageBus:
    """The message bus every unit of work of the service commits through."""
    return MessageBus(handlers(settings), final=FINAL)
