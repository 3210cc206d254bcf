"""The notification tests' one stack: the real bootstrap on migrated SQLite with recording
channels, a clock pinned at ``test_escalations.NOW`` and an in-memory metric reader, with an HTTP
client on its app. A module that needs other settings overrides ``stack_settings``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from services.chassis.clock import FrozenClock
from services.chassis.telemetry import make_meter_provider
from services.notifications.adapters.channels import ChannelKind, RecordingChannel
from tests.runtimes import asgi_client, service_runtime
from tests.unit.notifications.test_escalations import NOW, Stack


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def stack_settings() -> dict[str, Any]:
    """More ``NotificationsSettings`` fields for the ``stack`` (none here)."""
    return {}


@pytest.fixture
async def stack(
    tmp_path: Path, reader: InMemoryMetricReader, stack_settings: dict[str, Any]
) -> AsyncIterator[Stack]:
    clock = FrozenClock(NOW)
    channels = {kind: RecordingChannel(kind) for kind in ChannelKind}
    meters = make_meter_provider("notifications", reader=reader)
    async with service_runtime(
        "notifications",
        tmp_path,
        settings=stack_settings,
        clock=clock,
        channels=channels,
        meter_provider=meters,
    ) as runtime:
        s = Stack(runtime, clock)
        s.channels = channels
        yield s


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(stack.runtime.app) as c:
        yield c
