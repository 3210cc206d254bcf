"""The live-update feed on PostgreSQL (issue 18, part 9): feed ids become visible in id order.

A stream resumes "after id N". PostgreSQL hands out sequence values at insert, not at commit, so
without the feed's lock a transaction holding id 10 could commit after one holding 11, and a
reader that already sent 11 would never send 10. Here a second writer waits on the first (seen in
pg_locks, not guessed with a sleep) and gets the later id; a reader in between sees neither."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa

from services.chassis.runtime import ServiceRuntime
from services.notifications.service_layer import feed
from tests.helpers import eventually
from tests.runtimes import runtime_fixture

pytestmark = [pytest.mark.postgres]


runtime = runtime_fixture("notifications", frozen=False, on="postgres")


async def test_a_second_feed_writer_waits_for_the_first_so_ids_commit_in_order(
    runtime: ServiceRuntime,
) -> None:
    patient = uuid.uuid4()
    view = feed.PatientView(patient)
    payload = {"change": "reduced", "event_id": str(uuid.uuid4())}
    first = runtime.uow()
    await first.__aenter__()
    await feed.announce(first, "patient", "dose.changed", patient, payload)

    async def second_writer() -> None:
        async with runtime.uow() as uow:
            await feed.announce(uow, "patient", "dose.changed", patient, payload)
            await uow.commit()

    second = asyncio.create_task(second_writer())

    async def waiting_on_the_feed_lock() -> bool:
        async with runtime.engine.connect() as conn:
            waiting = await conn.scalar(
                sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            )
        return bool(waiting)

    await eventually(waiting_on_the_feed_lock, timeout=10)
    async with runtime.uow() as reader:
        assert await feed.after(reader, view, 0, 10) == []  # neither is visible yet
    await first.commit()
    await first.__aexit__(None, None, None)
    await asyncio.wait_for(second, timeout=10)
    async with runtime.uow() as reader:
        rows = await feed.after(reader, view, 0, 10)
    assert len(rows) == 2 and rows[0]["id"] < rows[1]["id"]
