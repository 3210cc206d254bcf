"""Group matching's composition root: the entrypoint and the tests build the service here."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from services.chassis.clock import Clock
from services.chassis.runtime import ServiceRuntime
from services.group_matching.adapters.orm import metadata
from services.group_matching.entrypoints import api, consumers, reference_api
from services.group_matching.service_layer import cohorts
from services.group_matching.settings import GroupMatchingSettings


def bootstrap(
    settings: GroupMatchingSettings | None = None,
    *,
    clock: Clock | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> ServiceRuntime:
    return ServiceRuntime(
        settings or GroupMatchingSettings(),
        metadata=metadata,
        subscriptions=consumers.SUBSCRIPTIONS,
        timer_handlers={cohorts.MATCH: cohorts.on_match_due},
        routers=lambda rt: [*api.routers(rt), reference_api.router()],
        clock=clock,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
