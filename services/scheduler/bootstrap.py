"""Scheduler's composition root: the entrypoint and the tests build the service here."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from services.chassis.clock import Clock
from services.chassis.runtime import ServiceRuntime
from services.scheduler.adapters.orm import metadata
from services.scheduler.entrypoints import (
    api,
    consumers,
    dispensing_api,
    plans_api,
    reference_api,
    schedule_api,
)
from services.scheduler.service_layer import step_timer
from services.scheduler.settings import SchedulerSettings


def bootstrap(
    settings: SchedulerSettings | None = None,
    *,
    clock: Clock | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> ServiceRuntime:
    return ServiceRuntime(
        settings or SchedulerSettings(),
        metadata=metadata,
        subscriptions=consumers.SUBSCRIPTIONS,
        timer_handlers={
            step_timer.EMIT_PLAN_STEP: step_timer.emit_plan_step,
        },
        routers=lambda rt: [
            *api.routers(rt),
            *plans_api.routers(rt),
            *dispensing_api.routers(rt),
            *schedule_api.routers(rt),
            *reference_api.routers(rt),
        ],
        clock=clock,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
