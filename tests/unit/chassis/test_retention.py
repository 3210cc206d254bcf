"""Expired reliability rows are pruned; pending work and recent rows never are."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from services.chassis.clock import FrozenClock
from services.chassis.db import make_session_factory
from services.chassis.retention import RetentionPolicy, RetentionPruner
from services.chassis.uow import UnitOfWorkFactory
from services.monitoring.adapters.orm import metadata
from tests.helpers import dose_reduced
from tests.runtimes import migrated_engine


async def test_only_expired_published_processed_or_finished_rows_go(tmp_path: Path) -> None:
    await check_pruning(f"sqlite+aiosqlite:///{tmp_path}/m.db")


async def check_pruning(database_url: str) -> None:
    """Shared with the PostgreSQL integration test: the same rows, the same verdicts."""
    engine = await migrated_engine("monitoring", database_url)
    clock = FrozenClock()
    uows = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    old, recent = clock.now() - timedelta(days=40), clock.now() - timedelta(days=1)
    async with uows() as uow:
        outbox, inbox, timers = (uow.table(n) for n in ("outbox", "inbox", "timers"))
        for _ in range(3):  # seq 1: published long ago, 2: recently, 3: not yet (must stay)
            await uow.publish(dose_reduced())
        await uow.session.execute(
            sa.update(outbox).where(outbox.c.seq == 1).values(published_at=old)
        )
        await uow.session.execute(
            sa.update(outbox).where(outbox.c.seq == 2).values(published_at=recent)
        )
        for processed_at in (old, recent):
            await uow.session.execute(
                sa.insert(inbox).values(
                    consumer="c", event_id=uuid.uuid4(), topic="t", processed_at=processed_at
                )
            )
        await uow.schedule_timer("k", "fired-long-ago", old)
        await uow.schedule_timer("k", "pending-long-ago", old)  # overdue but not fired: stays
        await uow.schedule_timer("k", "parked-long-ago", old)  # parked for ops: stays (issue 14)
        await uow.session.execute(
            sa.update(timers).where(timers.c.key == "fired-long-ago").values(fired_at=old)
        )
        await uow.session.execute(
            sa.update(timers).where(timers.c.key == "parked-long-ago").values(failed_at=old)
        )
        await uow.commit()

    pruner = RetentionPruner(service="monitoring", uow_factory=uows, policy=RetentionPolicy())
    gone = {"outbox": 1, "inbox": 1, "timers": 1, "idempotency_keys": 0}
    assert await pruner.prune() == gone
    assert await pruner.prune() == dict.fromkeys(gone, 0)
    async with uows() as uow:
        left = {
            name: int(
                await uow.session.scalar(sa.select(sa.func.count()).select_from(uow.table(name)))
                or 0
            )
            for name in ("outbox", "inbox", "timers")
        }
    assert left == {"outbox": 2, "inbox": 1, "timers": 2}
    await engine.dispose()


async def test_on_a_scaled_clock_rows_are_kept_for_real_time_not_clock_time(
    tmp_path: Path,
) -> None:
    """At 1,440x, 40 clock days are 40 real minutes: an inbox row that young must stay, or a
    redelivery Kafka still holds would be handled a second time."""
    engine = await migrated_engine("monitoring", tmp_path)
    clock = FrozenClock(scale=1440)
    uows = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    async with uows() as uow:
        inbox = uow.table("inbox")
        for age in (timedelta(days=40), timedelta(days=30 * 1440 + 1)):
            await uow.session.execute(
                sa.insert(inbox).values(
                    consumer="c",
                    event_id=uuid.uuid4(),
                    topic="t",
                    processed_at=clock.now() - age,
                )
            )
        await uow.commit()
    pruner = RetentionPruner(service="monitoring", uow_factory=uows, policy=RetentionPolicy())
    assert (await pruner.prune())["inbox"] == 1  # only the one older than 30 real days
    await engine.dispose()
