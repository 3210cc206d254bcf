"""Dead-letter inspection and replay (kafka-python ops tooling) against a real broker."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from contracts import DOSE_REDUCED, DoseReduced
from services.chassis.errors import PermanentError
from services.chassis.ops import consumer_lag, read_dead_letters, replay
from services.chassis.runtime import ServiceRuntime, Subscription
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import dose_history, metadata
from services.monitoring.service_layer.handlers import record_dose_reduced
from services.monitoring.settings import MonitoringSettings
from tests.helpers import dose_reduced, eventually, produce_raw

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_a_dead_letter_is_listed_without_its_body_and_replays_once_fixed(
    settings_for: Any,
) -> None:
    refused: set[uuid.UUID] = set()

    async def sometimes_refuses(event: DoseReduced, uow: UnitOfWork) -> None:
        if event.patient_id in refused:
            raise PermanentError("plan not known yet")
        await record_dose_reduced(event, uow)

    runtime = ServiceRuntime(
        settings_for(MonitoringSettings),
        metadata=metadata,
        subscriptions=[Subscription(DOSE_REDUCED, sometimes_refuses)],
    )
    event = dose_reduced()
    refused.add(event.patient_id)
    bootstrap = runtime.settings.kafka_bootstrap_servers
    async with runtime:
        await produce_raw(
            bootstrap,
            DOSE_REDUCED.name,
            [(str(event.patient_id).encode(), event.to_bytes(),
              [("event_id", str(event.event_id).encode())])],
        )  # fmt: skip

        async def my_letter() -> list[Any]:
            letters = await asyncio.to_thread(
                lambda: list(read_dead_letters(bootstrap, DOSE_REDUCED.dlq, timeout_ms=1000))
            )
            return [x for x in letters if x.headers.get("event_id") == str(event.event_id)]

        (letter,) = await eventually(my_letter)
        summary = letter.summary()
        assert summary["dlq.reason"] == "PermanentError: plan not known yet"
        assert summary["dlq.consumer"] == "monitoring"
        assert "value" not in summary and event.drug not in str(summary)

        refused.clear()  # the cause is fixed: replay
        replayed = await asyncio.to_thread(
            replay, bootstrap, DOSE_REDUCED.dlq, consumer_group="monitoring"
        )
        assert replayed >= 1

        async def processed() -> int:
            async with runtime.uow() as uow:
                query = sa.select(sa.func.count()).select_from(dose_history)
                query = query.where(dose_history.c.event_id == event.event_id)
                return int(await uow.session.scalar(query) or 0)

        assert await eventually(processed) == 1
        lag = await asyncio.to_thread(consumer_lag, bootstrap, "monitoring")
        assert any(k.startswith(DOSE_REDUCED.name + "[") for k in lag)
