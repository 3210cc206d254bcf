"""What group matching consumes (consumer group ``group_matching``)."""

from __future__ import annotations

from contracts import DOSE_REDUCED
from services.chassis.runtime import Subscription
from services.group_matching.service_layer import handlers

SUBSCRIPTIONS = (Subscription(DOSE_REDUCED, handlers.on_dose_reduced),)
