"""The reliability core over a real broker and a real PostgreSQL: outbox, inbox, dead letters."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from contracts import DOSE_REDUCED, SYMPTOM_REPORTED, SymptomReported
from services.chassis.runtime import ServiceRuntime
from services.monitoring.adapters.orm import dose_history
from services.monitoring.bootstrap import bootstrap
from services.monitoring.settings import MonitoringSettings
from tests.helpers import dose_reduced, eventually, produce_raw, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture
async def monitoring(settings_for: Any) -> AsyncIterator[ServiceRuntime]:
    runtime = bootstrap(settings_for(MonitoringSettings))
    async with runtime:
        yield runtime


async def _count(runtime: ServiceRuntime, table: sa.Table, **where: Any) -> int:
    async with runtime.uow() as uow:
        query = sa.select(sa.func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        return int(await uow.session.scalar(query) or 0)


def _symptom_reported(patient_id: uuid.UUID, now: Any) -> SymptomReported:
    return SymptomReported.create(
        patient_id=patient_id,
        occurred_at=now,
        report_id=uuid.uuid4(),
        instrument="ciwa-b",
        instrument_version="1",
        method="self-report-modified",
        total_score=3,
        band="mild",
    )


async def test_rolled_back_transaction_publishes_nothing(monitoring: ServiceRuntime) -> None:
    patient = uuid.uuid4()
    outbox = monitoring.metadata.tables["outbox"]
    async with monitoring.uow() as uow:
        await uow.publish(_symptom_reported(patient, uow.clock.now()))
        await uow.rollback()
    async with monitoring.uow() as uow:
        await uow.publish(_symptom_reported(patient, uow.clock.now()))
        # leaving the block without commit rolls back too
    assert await _count(monitoring, outbox) == 0
    assert await monitoring.relay.publish_pending() == 0

    committed = _symptom_reported(patient, monitoring.clock.now())
    async with monitoring.uow() as uow:
        await uow.publish(committed)
        await uow.commit()

    async def published() -> int:
        return await _count(monitoring, outbox) - await _count(
            monitoring, outbox, published_at=None
        )

    assert await eventually(published) == 1
    records = await read_topic(
        monitoring.settings.kafka_bootstrap_servers, SYMPTOM_REPORTED.name, expect=100, timeout=5
    )
    mine = [r for r in records if r.key == str(patient).encode()]
    assert [SymptomReported.model_validate_json(r.value).event_id for r in mine] == [
        committed.event_id
    ]
    headers = dict(mine[0].headers)
    assert headers["event_type"] == b"SymptomReported"
    assert headers["event_id"] == str(committed.event_id).encode()


async def test_same_event_delivered_twice_has_one_effect(monitoring: ServiceRuntime) -> None:
    event = dose_reduced()
    key = str(event.patient_id).encode()
    await produce_raw(
        monitoring.settings.kafka_bootstrap_servers,
        DOSE_REDUCED.name,
        [(key, event.to_bytes(), []), (key, event.to_bytes(), [])],
    )
    # A second, different event after the duplicate proves the duplicate was consumed (skipped).
    follower = dose_reduced(event.patient_id, step_number=2)
    await produce_raw(
        monitoring.settings.kafka_bootstrap_servers,
        DOSE_REDUCED.name,
        [(key, follower.to_bytes(), [])],
    )

    async def both_seen() -> bool:
        return await _count(monitoring, dose_history, patient_id=event.patient_id) >= 2

    await eventually(both_seen)
    assert await _count(monitoring, dose_history, event_id=event.event_id) == 1
    inbox = monitoring.metadata.tables["inbox"]
    assert await _count(monitoring, inbox, event_id=event.event_id) == 1


async def test_malformed_message_goes_to_dlq_and_the_next_is_processed(
    monitoring: ServiceRuntime,
) -> None:
    bootstrap_servers = monitoring.settings.kafka_bootstrap_servers
    patient = uuid.uuid4()
    key = str(patient).encode()
    good = dose_reduced(patient)
    not_json = b"\x00not json at all"
    wrong_shape = good.model_dump(mode="json")
    wrong_shape["new_daily_dose_mg"] = "a lot"
    await produce_raw(
        bootstrap_servers,
        DOSE_REDUCED.name,
        [
            (key, not_json, [("x-origin", b"test")]),
            (key, json.dumps(wrong_shape).encode(), []),
            (key, good.to_bytes(), []),
        ],
    )

    async def good_processed() -> bool:
        return await _count(monitoring, dose_history, event_id=good.event_id) == 1

    await eventually(good_processed)
    dead = await read_topic(bootstrap_servers, DOSE_REDUCED.dlq, expect=200, timeout=5)
    mine = [r for r in dead if r.key == key]
    assert [r.value for r in mine] == [not_json, json.dumps(wrong_shape).encode()]
    first, second = (dict(r.headers) for r in mine)
    reason_1 = first["dlq.reason"].decode()
    reason_2 = second["dlq.reason"].decode()
    assert reason_1.startswith("MalformedEvent")
    assert "new_daily_dose_mg" in reason_2 and "a lot" not in reason_2  # field named, value not
    assert first["dlq.original_topic"].decode() == DOSE_REDUCED.name
    assert first["dlq.consumer"] == b"monitoring"
    assert first["x-origin"] == b"test"  # original headers are kept
    assert int(first["dlq.original_offset"]) < int(second["dlq.original_offset"])


async def test_a_database_outage_redelivers_the_message_in_order_instead_of_dropping_it(
    settings_for: Any,
) -> None:
    from sqlalchemy.exc import OperationalError

    from services.chassis.runtime import Subscription
    from services.chassis.uow import UnitOfWork
    from services.monitoring.adapters.orm import metadata
    from services.monitoring.service_layer.dose_changes import record_dose_reduced

    first = dose_reduced()
    second = dose_reduced(first.patient_id, step_number=2)
    outage_calls = 0
    seen: list[uuid.UUID] = []

    async def during_outage(event: Any, uow: UnitOfWork) -> None:
        nonlocal outage_calls
        if event.event_id == first.event_id and outage_calls < 4:  # > max_attempts (3)
            outage_calls += 1
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError())
        seen.append(event.event_id)
        await record_dose_reduced(event, uow)

    runtime = ServiceRuntime(
        settings_for(MonitoringSettings),
        metadata=metadata,
        subscriptions=[Subscription(DOSE_REDUCED, during_outage)],
    )
    async with runtime:
        key = str(first.patient_id).encode()
        await produce_raw(
            runtime.settings.kafka_bootstrap_servers,
            DOSE_REDUCED.name,
            [(key, first.to_bytes(), []), (key, second.to_bytes(), [])],
        )

        async def both() -> bool:
            return await _count(runtime, dose_history, patient_id=first.patient_id) == 2

        await eventually(both)
    assert outage_calls == 4
    mine = [e for e in seen if e in (first.event_id, second.event_id)]
    assert mine == [first.event_id, second.event_id]  # redelivered, and still first
    dead = await read_topic(
        runtime.settings.kafka_bootstrap_servers, DOSE_REDUCED.dlq, expect=10**6, timeout=3
    )
    assert not [r for r in dead if r.key == key]  # an outage is not the message's fault
