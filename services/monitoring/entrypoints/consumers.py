"""What monitoring consumes (consumer group ``monitoring``)."""

from __future__ import annotations

from contracts import DOSE_REDUCED, PAGE_ACKNOWLEDGED
from services.chassis.runtime import Subscription
from services.monitoring.service_layer import episodes, handlers

SUBSCRIPTIONS = (
    Subscription(DOSE_REDUCED, handlers.record_dose_reduced),
    Subscription(PAGE_ACKNOWLEDGED, episodes.record_acknowledgement),
)
