"""Shared by the chassis unit tests: a unit of work over monitoring's tables on SQLite, and an
effect that is easy to count (a row in ``dose_history`` per handled ``DoseReduced``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from contracts import DoseReduced
from services.chassis.clock import FrozenClock
from services.chassis.db import make_session_factory
from services.chassis.uow import UnitOfWork, UnitOfWorkFactory
from services.monitoring.adapters.orm import dose_history, metadata
from tests.runtimes import migrated_engine


@pytest.fixture
async def uow_factory(tmp_path: Path) -> AsyncIterator[UnitOfWorkFactory]:
    engine = await migrated_engine("monitoring", tmp_path)
    yield UnitOfWorkFactory(make_session_factory(engine), FrozenClock(), metadata)
    await engine.dispose()


async def insert_dose(event: DoseReduced, uow: UnitOfWork) -> None:
    await uow.session.execute(
        sa.insert(dose_history).values(
            event_id=event.event_id,
            patient_id=event.patient_id,
            drug=event.drug,
            new_daily_dose_mg=event.new_daily_dose_mg,
            effective_on=event.effective_on,
            half_life_class=event.half_life_class,
        )
    )


async def count_doses(uow_factory: UnitOfWorkFactory) -> int:
    async with uow_factory() as uow:
        return int(await uow.session.scalar(sa.select(sa.func.count()).select_from(dose_history)))
