"""A timer that keeps failing is parked — counted, logged, listed for ops, retried by ops — and
never deleted while parked (issue 14, defect 3). ``check_parking`` is shared with the PostgreSQL
integration test (tests/integration/chassis/test_parked_timers_postgres.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.exc import OperationalError

from services.chassis import ops
from services.chassis.clock import FrozenClock
from services.chassis.db import make_session_factory
from services.chassis.errors import PermanentError
from services.chassis.metrics import ServiceMetrics
from services.chassis.retention import RetentionPolicy, RetentionPruner
from services.chassis.telemetry import make_meter_provider
from services.chassis.timers import DueTimer, TimerPoller
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory
from services.notifications.adapters.orm import metadata
from tests.runtimes import migrated_engine

NOW = datetime(2026, 3, 3, 14, tzinfo=UTC)
MARK = "Jane Q. Marker"  # synthetic PHI in the payload: never in a log line or a listing


def _points(reader: InMemoryMetricReader, name: str) -> dict[str, float]:
    found: dict[str, float] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:  # type: ignore[attr-defined]
                        found[dict(p.attributes or {})["kind"]] = p.value
    return found


async def test_a_failing_timer_is_parked_visibly_kept_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    await check_parking(f"sqlite+aiosqlite:///{tmp_path}/n.db", caplog, capsys)


async def check_parking(
    database_url: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # any service's schema has the timers table
    engine = await migrated_engine("notifications", database_url)
    clock = FrozenClock(NOW)
    uows = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    async with uows() as uow:
        await uow.schedule_timer("escalate_step", "walk-1", NOW, {"note": MARK})
        await uow.schedule_timer("escalate_step", "walk-2", NOW, {"note": MARK})
        await uow.commit()

    broken = True

    async def escalate(timer: DueTimer, uow: UnitOfWork) -> None:
        if broken:
            if timer.key == "walk-2":
                raise PermanentError("no rota for this team")
            raise RuntimeError(MARK)

    reader = InMemoryMetricReader()
    poller = TimerPoller(
        service="notifications",
        uow_factory=uows,
        handlers={"escalate_step": escalate},
        tracer_provider=TracerProvider(),
        max_attempts=3,
        metrics=ServiceMetrics(make_meter_provider("notifications", reader=reader)),
    )
    caplog.set_level(logging.INFO)
    for _ in range(3):  # walk-1: three transient failures; walk-2: permanent at once
        await poller.fire_due()
        clock.advance(timedelta(minutes=10))  # past the backoff
    assert await poller.fire_due() == 0  # both parked: nothing fires any more

    # every failed attempt counted (3 + 1), in the gauge, logged (id, kind, class: no payload)
    assert _points(reader, "taper.timers.failed") == {"escalate_step": 4}
    assert _points(reader, "taper.timers.parked") == {"escalate_step": 2}
    assert await poller.refresh_parked() == {"escalate_step": 2}
    parked_lines = [r for r in caplog.records if r.getMessage().startswith("timer parked")]
    assert {r.__dict__["error_type"] for r in parked_lines} == {"RuntimeError", "PermanentError"}
    assert MARK not in caplog.text

    # visible to ops (the CLI runs its own event loop: a thread here)
    assert await _ops("timers-parked", "--database-url", database_url) == 0
    listing = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((t["kind"], t["attempts"], t["last_error_class"]) for t in listing) == [
        ("escalate_step", 1, "PermanentError"),
        ("escalate_step", 3, "RuntimeError"),
    ]
    assert MARK not in json.dumps(listing) and "walk-" not in json.dumps(listing)

    # never deleted while parked, however old
    clock.advance(timedelta(days=400))
    pruner = RetentionPruner(service="notifications", uow_factory=uows, policy=RetentionPolicy())
    assert (await pruner.prune())["timers"] == 0
    assert len(await _parked_ids(uows)) == 2

    # ops retries one: it is due at once and fires; the other stays parked
    retried = next(t["id"] for t in listing if t["last_error_class"] == "RuntimeError")
    broken = False
    assert await _ops("timers-retry", "--database-url", database_url, retried) == 0
    assert await _ops("timers-retry", "--database-url", database_url, retried) == 1  # not parked
    assert await poller.fire_due() == 1
    assert await _parked_ids(uows) != [] and retried not in await _parked_ids(uows)
    assert await poller.refresh_parked() == {"escalate_step": 1}
    assert _points(reader, "taper.timers.parked") == {"escalate_step": 1}
    assert (
        await asyncio.to_thread(
            ops.main, ["timers-retry", "--database-url", database_url, str(uuid.uuid4())]
        )
        == 1
    )
    await engine.dispose()


async def _ops(*argv: str) -> int:
    return await asyncio.to_thread(ops.main, list(argv))


async def _parked_ids(uows: UnitOfWorkFactory) -> list[str]:
    async with uows() as uow:
        timers = uow.table("timers")
        rows = await uow.session.scalars(
            sa.select(timers.c.id).where(timers.c.failed_at.is_not(None))
        )
        return [str(i) for i in rows]


def test_a_parked_gauge_label_is_an_identifier() -> None:
    reader = InMemoryMetricReader()
    metrics = ServiceMetrics(make_meter_provider("notifications", reader=reader))
    counts: dict[str, Any] = {"kind with spaces": 2, "escalate_step": 1}
    metrics.watch_parked_timers(lambda: counts)
    metrics.timer_failed(f"{MARK}")
    assert _points(reader, "taper.timers.parked") == {"other": 2, "escalate_step": 1}
    assert _points(reader, "taper.timers.failed") == {"other": 1}


async def test_a_database_outage_defers_a_timer_without_using_up_its_attempts(
    tmp_path: Path,
) -> None:
    engine = await migrated_engine("notifications", tmp_path)
    clock = FrozenClock(NOW)
    uows = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    async with uows() as uow:
        await uow.schedule_timer("escalate_step", "walk-1", NOW)
        await uow.commit()
    outage_left = 20  # far more than max_attempts

    async def escalate(timer: DueTimer, uow: UnitOfWork) -> None:
        nonlocal outage_left
        if outage_left:
            outage_left -= 1
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError())

    poller = TimerPoller(
        service="notifications",
        uow_factory=uows,
        handlers={"escalate_step": escalate},
        tracer_provider=TracerProvider(),
        max_attempts=3,
        outage_delay_s=10,
    )
    while outage_left:
        assert await poller.fire_due() == 1
        assert await poller.fire_due() == 0  # deferred, not due again at once
        clock.advance(timedelta(seconds=10))
    assert await poller.fire_due() == 1
    async with uows() as uow:
        timers = uow.table("timers")
        [row] = (await uow.session.execute(sa.select(timers))).mappings().all()
    assert row["fired_at"] is not None and row["failed_at"] is None and row["attempts"] == 0
    await engine.dispose()


async def test_on_a_scaled_clock_a_failing_timer_waits_real_seconds_before_its_retry(
    tmp_path: Path,
) -> None:
    """Backoff waits for something in the real world to recover: at 1,440x, 2 s counted on the
    clock would be 1.4 ms, and a timer would use up its attempts and park within a second."""
    engine = await migrated_engine("notifications", tmp_path)
    clock = FrozenClock(NOW, scale=1440)
    uows = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    async with uows() as uow:
        await uow.schedule_timer("escalate_step", "walk-1", NOW, {})
        await uow.commit()

    async def failing(timer: DueTimer, uow: UnitOfWork) -> None:
        raise RuntimeError("provider down")

    poller = TimerPoller(
        service="notifications",
        uow_factory=uows,
        handlers={"escalate_step": failing},
        tracer_provider=TracerProvider(),
    )
    try:
        assert await poller.fire_due() == 1
        clock.advance(timedelta(seconds=2 * 1440) - timedelta(seconds=1))
        assert await poller.fire_due() == 0  # 2 real seconds not yet over
        clock.advance(timedelta(seconds=1))
        assert await poller.fire_due() == 1
    finally:
        await engine.dispose()
