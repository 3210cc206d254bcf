"""What group matching consumes (consumer group ``group_matching``)."""

from __future__ import annotations

from contracts import DOSE_REDUCED, TAPER_COMPLETED, TAPER_HELD, TAPER_RESUMED
from services.chassis.runtime import Subscription
from services.group_matching.service_layer import handlers

SUBSCRIPTIONS = (
    Subscription(DOSE_REDUCED, handlers.on_dose_reduced),
    Subscription(TAPER_HELD, handlers.on_taper_held),
    Subscription(TAPER_RESUMED, handlers.on_taper_resumed),
    Subscription(TAPER_COMPLETED, handlers.on_taper_completed),
)
