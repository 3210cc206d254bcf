"""What notifications consumes (consumer group ``notifications``).

Clinicians are paged from monitoring's episodes; patients are told about their own taper.
"""

from __future__ import annotations

from contracts import (
    CHECK_IN_DUE,
    COHORT_ASSIGNED,
    COHORT_CHANGED,
    COHORT_LEFT,
    DOSE_REDUCED,
    DOSE_RESTORED,
    ESCALATION_RESOLVED,
    THRESHOLD_EXCEEDED,
    ThresholdExceeded,
)
from services.chassis.runtime import Subscription
from services.chassis.uow import UnitOfWork
from services.notifications.service_layer import escalations, patient_messages


async def on_threshold_exceeded(event: ThresholdExceeded, uow: UnitOfWork) -> None:
    """Page the clinicians; on RED, also tell the patient help is coming and where to call now.

    The patient's notice is only scheduled here (a durable step of its own): nothing
    patient-facing can fail this transaction, so the page never waits on it."""
    await escalations.on_threshold_exceeded(event, uow)
    await patient_messages.schedule_safety_notice(event, uow)


SUBSCRIPTIONS = (
    Subscription(THRESHOLD_EXCEEDED, on_threshold_exceeded),
    Subscription(ESCALATION_RESOLVED, escalations.on_escalation_resolved),
    Subscription(DOSE_REDUCED, patient_messages.on_dose_reduced),
    Subscription(DOSE_RESTORED, patient_messages.on_dose_restored),
    Subscription(CHECK_IN_DUE, patient_messages.on_check_in_due),
    Subscription(COHORT_ASSIGNED, patient_messages.on_cohort_assigned),
    Subscription(COHORT_CHANGED, patient_messages.on_cohort_changed),
    Subscription(COHORT_LEFT, patient_messages.on_cohort_left),
)
