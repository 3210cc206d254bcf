"""The production shape rehearsed locally: what ``make run-cluster`` starts and what the Helm
chart's defaults describe. One place, so the two cannot drift (a test compares both with it)."""

from __future__ import annotations

from typing import Final

BROKERS: Final = 3  # a KRaft cluster that survives one broker down with writes still accepted
REPLICATION_FACTOR: Final = 3  # services.chassis.settings.PRODUCTION_MIN_REPLICATION_FACTOR
MIN_INSYNC_REPLICAS: Final = 2  # services.chassis.settings.PRODUCTION_MIN_INSYNC_REPLICAS
REPLICAS_PER_SERVICE: Final = 2  # one consumer group per service; partitions spread over both
SERVICES: Final = ("scheduler", "monitoring", "notifications", "group_matching")
