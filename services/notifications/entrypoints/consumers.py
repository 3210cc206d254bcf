"""What notifications consumes (consumer group ``notifications``)."""

from __future__ import annotations

from contracts import THRESHOLD_EXCEEDED
from services.chassis.runtime import Subscription
from services.notifications.service_layer import handlers

SUBSCRIPTIONS = (Subscription(THRESHOLD_EXCEEDED, handlers.on_threshold_exceeded),)
