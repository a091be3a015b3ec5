"""A service type's cancellation policy, as data, and what it means for one visit (pure).

- ``patient_notice_hours``: a patient changes or cancels their own visit up to this long
  before its start; later, only the clinic can (the patient calls);
- ``late_cancel_hours``: a cancellation closer to the start than this is late;
- ``late_cancel_outcome`` / ``no_show_outcome``: ``none`` (nothing recorded), ``flag`` (the
  booking is marked) or ``fee`` (marked, and the fee in cents recorded on the booking).

Slot and booking answers show these terms and the instants they give (``late_from``,
``patient_changes_until``), so a front end tells the patient before they act. A fee applies
to a booked visit only: releasing a pending hold (a waitlist offer, say) costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.domain.clinic.models import CancellationOutcome


@dataclass(frozen=True)
class CancellationTerms:
    patient_notice_hours: int
    late_cancel_hours: int
    late_cancel_outcome: CancellationOutcome
    late_cancel_fee_cents: int
    no_show_outcome: CancellationOutcome
    no_show_fee_cents: int

    @classmethod
    def of(cls, service_type: Any) -> CancellationTerms:
        return cls(patient_notice_hours=service_type.patient_notice_hours,
                   late_cancel_hours=service_type.late_cancel_hours,
                   late_cancel_outcome=CancellationOutcome(service_type.late_cancel_outcome),
                   late_cancel_fee_cents=service_type.late_cancel_fee_cents,
                   no_show_outcome=CancellationOutcome(service_type.no_show_outcome),
                   no_show_fee_cents=service_type.no_show_fee_cents)

    def late_from(self, start: datetime) -> datetime:
        return start - timedelta(hours=self.late_cancel_hours)

    def patient_changes_until(self, start: datetime) -> datetime:
        return start - timedelta(hours=self.patient_notice_hours)

    def patient_may_change(self, start: datetime, now: datetime) -> bool:
        return now < self.patient_changes_until(start)

    def is_late(self, start: datetime, now: datetime) -> bool:
        """A cancellation now is late (and recorded as such unless the outcome is none)."""
        return (self.late_cancel_outcome is not CancellationOutcome.NONE
                and now >= self.late_from(start))

    def late_fee_cents(self, start: datetime, now: datetime) -> int | None:
        if self.is_late(start, now) and self.late_cancel_outcome is CancellationOutcome.FEE:
            return self.late_cancel_fee_cents
        return None

    def no_show_fee(self) -> int | None:
        if self.no_show_outcome is CancellationOutcome.FEE:
            return self.no_show_fee_cents
        return None

    def for_visit(self, start: datetime, now: datetime) -> dict[str, Any]:
        """The terms and what they mean for a visit starting at ``start``, as of ``now``."""
        return {
            "patient_notice_hours": self.patient_notice_hours,
            "late_cancel_hours": self.late_cancel_hours,
            "late_cancel_outcome": self.late_cancel_outcome,
            "late_cancel_fee_cents": self.late_cancel_fee_cents,
            "no_show_outcome": self.no_show_outcome,
            "no_show_fee_cents": self.no_show_fee_cents,
            "late_from": self.late_from(start),
            "patient_changes_until": self.patient_changes_until(start),
            "late_if_cancelled_now": self.is_late(start, now),
            "fee_if_cancelled_now_cents": self.late_fee_cents(start, now),
        }
