"""What the scheduler consumes (consumer group ``scheduler``)."""

from __future__ import annotations

from contracts import THRESHOLD_EXCEEDED
from services.chassis.runtime import Subscription
from services.scheduler.service_layer import handlers

SUBSCRIPTIONS = (Subscription(THRESHOLD_EXCEEDED, handlers.on_threshold_exceeded),)
