"""Dead-letter inspection and replay (kafka-python ops tooling) against a real broker."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import DOSE_REDUCED, DoseReduced
from services.chassis.runtime import ServiceRuntime
from services.monitoring.settings import MonitoringSettings
from tests.dead_letter_round_trip import refuse_then_replay
from tests.helpers import produce_raw

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_a_dead_letter_is_listed_without_its_body_and_replays_once_fixed(
    settings_for: Any,
) -> None:
    async def from_another_producer(runtime: ServiceRuntime, event: DoseReduced) -> None:
        await produce_raw(
            runtime.settings.kafka_bootstrap_servers,
            DOSE_REDUCED.name,
            [(str(event.patient_id).encode(), event.to_bytes(),
              [("event_id", str(event.event_id).encode())])],
        )  # fmt: skip

    settings = settings_for(MonitoringSettings)
    letter, event = await refuse_then_replay(settings, from_another_producer)
    summary = letter.summary()
    assert summary["dlq.reason"] == "PermanentError: plan not known yet"
    assert summary["dlq.consumer"] == "monitoring"
    assert "value" not in summary and event.drug not in str(summary)
