"""On PostgreSQL, the keyset pages of a list (symptom reports, episodes by status) hold every row
once while rows arrive between pages, as on SQLite: timestamps with microseconds and a time
zone, and UUID tie-breakers, compare as the cursor says (issue 18, part 2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from services.chassis.clock import FrozenClock
from services.chassis.migrations import upgrade_to_head
from services.chassis.runtime import ServiceRuntime
from services.monitoring.bootstrap import bootstrap
from services.monitoring.settings import MonitoringSettings
from tests.unit.monitoring.test_paged_lists import (
    test_episodes_history_by_status_paged_for_the_patient_and_the_panel as test_episodes_on_pg,
)
from tests.unit.monitoring.test_paged_lists import (
    test_symptom_reports_every_one_once_newest_first_while_reports_arrive as test_reports_on_pg,
)

pytestmark = [pytest.mark.postgres]
__all__ = ["test_episodes_on_pg", "test_reports_on_pg"]


@pytest.fixture
async def runtime(fresh_pg_dsn: str) -> AsyncIterator[ServiceRuntime]:
    settings = MonitoringSettings(
        database_url=fresh_pg_dsn, environment="test", kafka_provision_topics=False
    )
    rt = bootstrap(settings, clock=FrozenClock(datetime(2026, 3, 2, 9, tzinfo=UTC)))
    await upgrade_to_head(rt.engine, "monitoring")
    yield rt
    await rt.engine.dispose()


@pytest.fixture
async def client(runtime: ServiceRuntime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
