"""Shared fixtures. Real Kafka and PostgreSQL come from ``tests.plugins.infra`` (env, then
testcontainers, then the local launchers); in CI a test that cannot get them fails the run."""

from __future__ import annotations

import os

# Settings have no default environment (a process without TAPER_ENV refuses to start): the tests
# say theirs, before any settings are read. Subprocesses the tests spawn set it explicitly.
os.environ.setdefault("TAPER_ENV", "test")

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.chassis.settings import ServiceSettings

pytest_plugins = ["tests.plugins.infra"]

S = TypeVar("S", bound=ServiceSettings)


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def settings_for(
    kafka_bootstrap_servers: str, fresh_pg_dsn_factory: Callable[[], str]
) -> Callable[..., Any]:
    """Settings for a service under test: real broker, a fresh PostgreSQL database, fast polls."""

    def make(cls: type[S], **overrides: Any) -> S:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": fresh_pg_dsn_factory(),
            "kafka_bootstrap_servers": kafka_bootstrap_servers,
            "relay_poll_interval_s": 0.2,
            "timer_poll_interval_s": 0.1,
            "consumer_retry_backoff_s": 0.01,
        }
        values.update(overrides)
        return cls(**values)

    return make


@pytest.fixture
async def http_client_for() -> AsyncIterator[Callable[..., Any]]:
    import httpx

    clients: list[httpx.AsyncClient] = []

    def make(app: Any) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
