"""Fixtures of the issue-17 notification tests: the real bootstrap on SQLite with recording
channels, a pinned clock and an in-memory metric reader (test_escalations.py keeps its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from services.chassis.clock import FrozenClock
from services.chassis.migrations import upgrade_to_head
from services.chassis.telemetry import make_meter_provider
from services.notifications.adapters.channels import ChannelKind, RecordingChannel
from services.notifications.bootstrap import bootstrap
from services.notifications.settings import NotificationsSettings
from tests.unit.notifications.test_escalations import NOW, Stack


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
async def stack(tmp_path: Path, reader: InMemoryMetricReader) -> AsyncIterator[Stack]:
    clock = FrozenClock(NOW)
    settings = NotificationsSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/notifications.db",
        environment="test",
        kafka_provision_topics=False,
    )
    channels = {kind: RecordingChannel(kind) for kind in ChannelKind}
    meters = make_meter_provider("notifications", reader=reader)
    runtime = bootstrap(settings, clock=clock, channels=channels, meter_provider=meters)
    await upgrade_to_head(runtime.engine, "notifications")
    s = Stack(runtime, clock)
    s.channels = channels
    yield s
    await runtime.engine.dispose()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=stack.runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
