"""One scenario two tests run (ops tooling on the plain broker, and over SCRAM/TLS): a monitoring
service refuses a DoseReduced (dead-lettered), ops find the letter, the cause is fixed, ops replay
it, the service processes it exactly once, and the consumer lag is readable — every Kafka client
involved (the service's, the ops tools') configured with the runtime's security."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from contracts import DOSE_REDUCED, DoseReduced
from services.chassis.errors import PermanentError
from services.chassis.ops import DeadLetter, consumer_lag, read_dead_letters, replay
from services.chassis.runtime import ServiceRuntime, Subscription
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import dose_history, metadata
from services.monitoring.service_layer.dose_changes import record_dose_reduced
from services.monitoring.settings import MonitoringSettings
from tests.helpers import dose_reduced, eventually

Publish = Callable[[ServiceRuntime, DoseReduced], Awaitable[None]]


async def refuse_then_replay(
    settings: MonitoringSettings, publish: Publish
) -> tuple[DeadLetter, DoseReduced]:
    """Run the scenario; returns the dead letter as ops read it (before the replay) and the
    event it carried."""
    refused: set[uuid.UUID] = set()

    async def sometimes_refuses(event: DoseReduced, uow: UnitOfWork) -> None:
        if event.patient_id in refused:
            raise PermanentError("plan not known yet")
        await record_dose_reduced(event, uow)

    runtime = ServiceRuntime(
        settings, metadata=metadata, subscriptions=[Subscription(DOSE_REDUCED, sometimes_refuses)]
    )
    bootstrap, security = settings.kafka_bootstrap_servers, runtime.kafka_security
    event = dose_reduced()
    refused.add(event.patient_id)
    async with runtime:
        await publish(runtime, event)

        async def my_letter() -> list[Any]:
            letters = await asyncio.to_thread(
                lambda: list(
                    read_dead_letters(bootstrap, DOSE_REDUCED.dlq, 1000, security=security)
                )
            )
            return [x for x in letters if x.headers.get("event_id") == str(event.event_id)]

        (letter,) = await eventually(my_letter)

        refused.clear()  # the cause is fixed: replay
        replayed = await asyncio.to_thread(
            lambda: replay(
                bootstrap, DOSE_REDUCED.dlq, consumer_group="monitoring", security=security
            )
        )
        assert replayed >= 1

        async def processed() -> int:
            async with runtime.uow() as uow:
                query = sa.select(sa.func.count()).select_from(dose_history)
                query = query.where(dose_history.c.event_id == event.event_id)
                return int(await uow.session.scalar(query) or 0)

        assert await eventually(processed) == 1
        lag = await asyncio.to_thread(
            lambda: consumer_lag(bootstrap, "monitoring", security=security)
        )
        assert any(k.startswith(DOSE_REDUCED.name + "[") for k in lag)
    return letter, event
