"""What the scheduler consumes (consumer group ``scheduler``)."""

from __future__ import annotations

from contracts import ESCALATION_RESOLVED, THRESHOLD_EXCEEDED
from services.chassis.runtime import Subscription
from services.scheduler.service_layer import monitoring_events

SUBSCRIPTIONS = (
    Subscription(THRESHOLD_EXCEEDED, monitoring_events.on_threshold_exceeded),
    Subscription(ESCALATION_RESOLVED, monitoring_events.on_escalation_resolved),
)
