"""Durable timers on PostgreSQL fire several at once (``concurrency``): a handler waiting on a
slow provider holds up no other timer, and each timer still fires exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider

from services.chassis.clock import FrozenClock
from services.chassis.db import make_session_factory
from services.chassis.timers import DueTimer, TimerPoller
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory
from services.notifications.adapters.orm import metadata
from tests.runtimes import migrated_engine

pytestmark = [pytest.mark.postgres]

NOW = datetime(2026, 3, 3, 14, tzinfo=UTC)


async def test_a_slow_timer_does_not_hold_up_the_others_and_each_fires_once(
    fresh_pg_dsn: str,
) -> None:
    # any service's schema has the timers table
    engine = await migrated_engine("notifications", fresh_pg_dsn)
    uow_factory = UnitOfWorkFactory(make_session_factory(engine), FrozenClock(NOW), metadata)
    async with uow_factory() as uow:
        await uow.schedule_timer("slow", "s", NOW - timedelta(seconds=2))
        for i in range(5):
            await uow.schedule_timer("fast", f"f{i}", NOW - timedelta(seconds=1))
        await uow.commit()

    fast_done = asyncio.Event()
    fired: list[str] = []

    async def slow(timer: DueTimer, uow: UnitOfWork) -> None:
        # Like a provider holding the request: it answers only once the others have fired.
        await asyncio.wait_for(fast_done.wait(), timeout=20)
        fired.append(timer.key)

    async def fast(timer: DueTimer, uow: UnitOfWork) -> None:
        fired.append(timer.key)
        if sum(k.startswith("f") for k in fired) == 5:
            fast_done.set()

    poller = TimerPoller(
        service="t",
        uow_factory=uow_factory,
        handlers={"slow": slow, "fast": fast},
        tracer_provider=TracerProvider(),
        concurrency=4,
    )
    assert await poller.fire_due() == 6
    assert fired[-1] == "s" and sorted(fired[:-1]) == [f"f{i}" for i in range(5)]
    assert await poller.fire_due() == 0  # nothing fires twice
    async with uow_factory() as uow:
        timers = uow.table("timers")
        unfired = await uow.session.scalar(
            sa.select(sa.func.count()).select_from(timers).where(timers.c.fired_at.is_(None))
        )
    assert unfired == 0
    await engine.dispose()
