"""Monitoring's composition root: the entrypoint and the tests build the service here."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from services.chassis.clock import Clock
from services.chassis.runtime import ServiceRuntime
from services.monitoring.adapters.orm import metadata
from services.monitoring.entrypoints import api, checkins_api, consumers, reference_api
from services.monitoring.service_layer import checkins
from services.monitoring.settings import MonitoringSettings


def bootstrap(
    settings: MonitoringSettings | None = None,
    *,
    clock: Clock | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> ServiceRuntime:
    return ServiceRuntime(
        settings or MonitoringSettings(),
        metadata=metadata,
        subscriptions=consumers.SUBSCRIPTIONS,
        timer_handlers={
            checkins.CHECKIN_DUE: checkins.on_checkin_due,
            checkins.CHECKIN_MISSED: checkins.on_checkin_missed,
        },
        routers=lambda rt: [
            *api.routers(rt),
            checkins_api.router(rt),
            reference_api.router(),
        ],
        clock=clock,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
