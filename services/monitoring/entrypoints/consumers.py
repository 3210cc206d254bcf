"""What monitoring consumes (consumer group ``monitoring``)."""

from __future__ import annotations

from contracts import DOSE_REDUCED, DOSE_RESTORED, PAGE_ACKNOWLEDGED
from services.chassis.runtime import Subscription
from services.monitoring.service_layer import dose_changes, episodes

SUBSCRIPTIONS = (
    Subscription(DOSE_REDUCED, dose_changes.record_dose_reduced),
    Subscription(DOSE_RESTORED, dose_changes.record_dose_restored),
    Subscription(PAGE_ACKNOWLEDGED, episodes.record_acknowledgement),
)
