"""Small helpers shared by integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import DoseReduced, Severity, ThresholdExceeded, ThresholdReason

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 30.0, interval: float = 0.1
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail with the last value after ``timeout``.

    A bound on waiting for asynchronous delivery, not a performance assertion.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    last: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


def dose_reduced(
    patient_id: uuid.UUID | None = None, *, occurred_at: datetime | None = None, **overrides: Any
) -> DoseReduced:
    facts: dict[str, Any] = {
        "plan_id": uuid.uuid4(),
        "step_number": 1,
        "drug": "diazepam",
        "previous_daily_dose_mg": Decimal("10"),
        "new_daily_dose_mg": Decimal("9"),
        "effective_on": date(2026, 1, 5),
        "taper_stage": "active",
        "approved_by_decision_id": uuid.uuid4(),
        "half_life_class": "long",
    }
    facts.update(overrides)
    return DoseReduced.create(
        patient_id=patient_id or uuid.uuid4(),
        occurred_at=occurred_at or datetime.now(UTC),
        **facts,
    )


def red_flag_threshold(
    patient_id: uuid.UUID | None = None,
    *,
    severity: Severity | str = Severity.RED,
    occurred_at: datetime | None = None,
    episode_id: uuid.UUID | None = None,
) -> ThresholdExceeded:
    """Monitoring's ThresholdExceeded for a reported seizure (a red flag, family "safety")."""
    return ThresholdExceeded.create(
        patient_id=patient_id or uuid.uuid4(),
        occurred_at=occurred_at or datetime.now(UTC),
        report_id=uuid.uuid4(),
        episode_id=episode_id or uuid.uuid4(),
        severity=Severity(severity),
        reasons=(ThresholdReason(code="red_flag:seizure"),),
        family="safety",
    )


async def produce_raw(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    """Write (key, value, headers) records straight to Kafka, bypassing every service."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str, topic: str, *, expect: int, timeout: float = 30.0
) -> list[Any]:
    """Read up to ``expect`` records from the start of ``topic`` (no group, nothing committed)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(records) < expect and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records
