"""Monitoring's repositories on a real SQLite database: what they save is what they load, a
stale save never overwrites another transaction's change, and only what was written publishes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.chassis.clock import FrozenClock
from services.chassis.db import make_engine, make_session_factory
from services.chassis.migrations import upgrade_to_head
from services.chassis.uow import UnitOfWorkFactory
from services.monitoring.adapters.checkin_repository import CheckInRepository
from services.monitoring.adapters.episode_repository import (
    EpisodeChangedConcurrently,
    EpisodeRepository,
)
from services.monitoring.adapters.orm import metadata
from services.monitoring.domain.checkin import CheckIn
from services.monitoring.domain.checkins import CheckInStatus, PlannedCheckIn
from services.monitoring.domain.episodes import Episode
from services.monitoring.domain.model import Reason, Severity
from services.monitoring.domain.rules import WITHDRAWAL, Finding

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
PATIENT = uuid.uuid4()


@pytest.fixture
async def uows(tmp_path: Path) -> AsyncIterator[UnitOfWorkFactory]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/monitoring.db")
    await upgrade_to_head(engine, "monitoring")
    yield UnitOfWorkFactory(make_session_factory(engine), FrozenClock(NOW), metadata)
    await engine.dispose()


async def outbox(uows: UnitOfWorkFactory) -> list[str]:
    async with uows() as uow:
        t = uow.table("outbox")
        return list(await uow.session.scalars(sa.select(t.c.event_type).order_by(t.c.seq)))


def found(severity: Severity) -> list[Finding]:
    return [Finding(WITHDRAWAL, severity, Reason("band:ciwa-b", "ciwa-b", 30, 25))]


async def test_an_episode_round_trips_and_a_stale_save_is_refused(uows: UnitOfWorkFactory) -> None:
    episode = Episode.open(PATIENT, found(Severity.AMBER), uuid.uuid4(), NOW)
    async with uows() as uow:
        await EpisodeRepository(uow).add(episode)
        await uow.commit()
    async with uows() as uow:
        loaded = await EpisodeRepository(uow).get(PATIENT, episode.id)
    assert loaded == episode  # every field, version included
    assert await outbox(uows) == ["ThresholdExceeded"]

    async with uows() as first, uows() as second:
        mine = await EpisodeRepository(first).open_one(PATIENT, WITHDRAWAL)
        theirs = await EpisodeRepository(second).open_one(PATIENT, WITHDRAWAL)
        assert mine is not None and theirs is not None
        mine.resolve("dr-1", "keep_held", NOW, note="seen")
        await EpisodeRepository(first).save(mine)
        await first.commit()
        theirs.absorb(found(Severity.RED), uuid.uuid4(), NOW)
        with pytest.raises(EpisodeChangedConcurrently):
            await EpisodeRepository(second).save(theirs)
    assert await outbox(uows) == ["ThresholdExceeded", "EscalationResolved"]
    async with uows() as uow:
        assert await EpisodeRepository(uow).list_open([PATIENT]) == []
        resolved = await EpisodeRepository(uow).get(PATIENT, episode.id)
    assert resolved is not None and resolved.resolution_note == "seen"


async def test_a_checkin_changed_since_it_was_read_is_left_as_written(
    uows: UnitOfWorkFactory,
) -> None:
    planned = PlannedCheckIn(NOW, NOW + timedelta(hours=24))
    checkin = CheckIn.plan(PATIENT, uuid.uuid4(), planned, ("ciwa-b",))
    async with uows() as uow:
        await CheckInRepository(uow).add(checkin)
        await uow.commit()
    report = uuid.uuid4()
    async with uows() as timer, uows() as reporting:
        due = await CheckInRepository(timer).get(checkin.id)
        [open_one] = await CheckInRepository(reporting).open_at(PATIENT, NOW)
        open_one.complete(report)
        assert await CheckInRepository(reporting).save(open_one)
        await reporting.commit()
        assert due is not None
        due.fall_due(NOW, None)
        assert not await CheckInRepository(timer).save(due)
        await timer.commit()
    async with uows() as uow:
        stored = await CheckInRepository(uow).get(checkin.id)
    assert stored is not None
    assert (stored.status, stored.completed_by_report_id) == (CheckInStatus.COMPLETED, report)
    assert await outbox(uows) == []  # the reminder of a check-in not written is not published
