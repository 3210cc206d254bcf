"""The unit of work: outbox rows and timers exist only if the transaction commits, and only a
commit that left work wakes the workers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.chassis.aggregate import Aggregate
from services.chassis.clock import FrozenClock
from services.chassis.db import make_session_factory
from services.chassis.uow import CommitEffects, UnitOfWorkFactory
from services.monitoring.adapters.orm import metadata
from tests.helpers import dose_reduced
from tests.runtimes import migrated_engine


@pytest.fixture
async def uows(tmp_path: Path) -> AsyncIterator[tuple[UnitOfWorkFactory, list[CommitEffects]]]:
    engine = await migrated_engine("monitoring", tmp_path)
    factory = UnitOfWorkFactory(make_session_factory(engine), FrozenClock(), metadata)
    woken: list[CommitEffects] = []
    factory.after_commit = woken.append
    yield factory, woken
    await engine.dispose()


async def _rows(factory: UnitOfWorkFactory, table: str) -> int:
    async with factory() as uow:
        return int(
            await uow.session.scalar(sa.select(sa.func.count()).select_from(uow.table(table)))
        )


async def test_only_commits_that_leave_work_wake_the_workers(
    uows: tuple[UnitOfWorkFactory, list[CommitEffects]],
) -> None:
    factory, woken = uows
    async with factory() as uow:
        await uow.commit()  # nothing published or scheduled
    async with factory() as uow:
        await uow.publish(dose_reduced())
        await uow.commit()
    async with factory() as uow:
        await uow.schedule_timer("k", "1", uow.clock.now() + timedelta(days=1))
        await uow.commit()
    assert woken == [CommitEffects(published=True), CommitEffects(scheduled=True)]


async def test_nothing_survives_a_rollback_and_a_timer_is_scheduled_once(
    uows: tuple[UnitOfWorkFactory, list[CommitEffects]],
) -> None:
    factory, woken = uows
    async with factory() as uow:
        await uow.publish(dose_reduced())
        await uow.schedule_timer("k", "same", uow.clock.now())
        # no commit: leaving the block rolls back
    assert await _rows(factory, "outbox") == 0 and await _rows(factory, "timers") == 0
    assert woken == []
    for _ in range(2):
        async with factory() as uow:
            await uow.schedule_timer("k", "same", uow.clock.now())
            await uow.commit()
    assert await _rows(factory, "timers") == 1


async def test_audit_rows_record_who_did_what_to_whom(
    uows: tuple[UnitOfWorkFactory, list[CommitEffects]],
) -> None:
    factory, _ = uows
    patient = uuid.uuid4()
    async with factory() as uow:
        await uow.audit(
            actor="c-1",
            actor_role="clinician",
            action="read",
            resource="report",
            patient_id=patient,
        )
        await uow.commit()
    async with factory() as uow:
        audit = uow.table("audit_log")
        row = (await uow.session.execute(sa.select(audit))).mappings().one()
    assert (row["actor"], row["action"], row["patient_id"], row["outcome"]) == (
        "c-1", "read", patient, "allowed",
    )  # fmt: skip


async def _outbox_ids(factory: UnitOfWorkFactory) -> list[uuid.UUID]:
    async with factory() as uow:
        outbox = uow.table("outbox")
        rows = await uow.session.execute(sa.select(outbox.c.event_id).order_by(outbox.c.seq))
        return [row.event_id for row in rows]


async def test_a_tracked_aggregates_events_reach_the_outbox_on_commit_only(
    uows: tuple[UnitOfWorkFactory, list[CommitEffects]],
) -> None:
    factory, woken = uows
    first, second = dose_reduced(), dose_reduced()

    aggregate = Aggregate()
    async with factory() as uow:
        uow.track(aggregate)
        aggregate.record(first)
        await uow.rollback()  # a rolled-back unit of work forgets what it tracked
        uow.track(aggregate)
        uow.track(aggregate)  # tracking twice publishes once
        aggregate.record(second)
        await uow.commit()

    assert await _outbox_ids(factory) == [first.event_id, second.event_id]
    assert aggregate.events == []  # pulled: a second commit cannot publish them again
    assert woken == [CommitEffects(published=True)]
