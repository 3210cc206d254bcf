"""What group matching consumes (consumer group ``group_matching``): the scheduler's events for
each patient's stage, monitoring's RED episodes (no new cohort until resolved)."""

from __future__ import annotations

from contracts import (
    DOSE_REDUCED,
    ESCALATION_RESOLVED,
    TAPER_COMPLETED,
    TAPER_HELD,
    TAPER_RESUMED,
    THRESHOLD_EXCEEDED,
)
from services.chassis.runtime import Subscription
from services.group_matching.service_layer import cohorts, stages

SUBSCRIPTIONS = (
    Subscription(DOSE_REDUCED, stages.on_dose_reduced),
    Subscription(TAPER_HELD, stages.on_taper_held),
    Subscription(TAPER_RESUMED, stages.on_taper_resumed),
    Subscription(TAPER_COMPLETED, stages.on_taper_completed),
    Subscription(THRESHOLD_EXCEEDED, cohorts.on_threshold_exceeded),
    Subscription(ESCALATION_RESOLVED, cohorts.on_escalation_resolved),
)
