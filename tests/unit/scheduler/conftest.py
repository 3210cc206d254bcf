"""The scheduler over SQLite with its migrations, a frozen clock and an HTTP client (no broker
started): the fixtures the plan and taper API tests share. A module that needs another runtime
(not migrated, another clock) defines its own ``runtime`` fixture, which takes precedence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.chassis.clock import FrozenClock
from services.chassis.migrations import upgrade_to_head
from services.chassis.runtime import ServiceRuntime
from services.scheduler.bootstrap import bootstrap
from services.scheduler.settings import SchedulerSettings
from tests.unit.scheduler.support import NOW


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    settings = SchedulerSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/scheduler.db",
        environment="test",
        kafka_provision_topics=False,
    )
    rt = bootstrap(settings, clock=FrozenClock(NOW))
    await upgrade_to_head(rt.engine, "scheduler")
    yield rt
    await rt.engine.dispose()


@pytest.fixture
async def client(runtime: ServiceRuntime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
