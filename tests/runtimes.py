"""One way for tests to make a service: its composition root on a database, migrated, disposed of
after. SQLite for unit tests and PostgreSQL for integration tests take the same call; only the
``database`` differs (a folder such as ``tmp_path``, or a URL such as ``fresh_pg_dsn``).

* :func:`runtime_on` — the runtime, nothing done to its database (nothing started either);
* :func:`service_runtime` — the same, migrated to head, its engine disposed of on exit
  (:func:`migrated_runtime`: migrated, disposed of by the caller);
* :func:`migrated_engine` — an engine only, with a service's schema (for a unit of work
  factory of one's own);
* :func:`runtime_fixture` / :func:`client_fixture` — the ``runtime`` and ``client`` fixtures of a
  test module in one line each: ``runtime = runtime_fixture("monitoring", at=NOW)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.chassis.clock import FrozenClock
from services.chassis.db import make_engine
from services.chassis.migrations import upgrade_to_head
from services.chassis.runtime import ServiceRuntime
from services.group_matching.bootstrap import bootstrap as group_matching
from services.group_matching.settings import GroupMatchingSettings
from services.monitoring.bootstrap import bootstrap as monitoring
from services.monitoring.settings import MonitoringSettings
from services.notifications.bootstrap import bootstrap as notifications
from services.notifications.settings import NotificationsSettings
from services.scheduler.bootstrap import bootstrap as scheduler
from services.scheduler.settings import SchedulerSettings

SERVICES: dict[str, tuple[Callable[..., ServiceRuntime], type[Any]]] = {
    "scheduler": (scheduler, SchedulerSettings),
    "monitoring": (monitoring, MonitoringSettings),
    "notifications": (notifications, NotificationsSettings),
    "group_matching": (group_matching, GroupMatchingSettings),
}


def database_url(name: str, database: Path | str) -> str:
    """A folder: a SQLite file ``<name>.db`` in it; a string: that URL as it is."""
    if isinstance(database, Path):
        return f"sqlite+aiosqlite:///{database}/{name}.db"
    return database


def runtime_on(
    name: str,
    database: Path | str,
    *,
    settings: Mapping[str, Any] | None = None,
    **bootstrap: Any,
) -> ServiceRuntime:
    """``name``'s runtime on ``database`` (see :func:`database_url`), not migrated, no broker
    provisioned; ``settings``: more settings fields; ``bootstrap``: extra arguments for its
    bootstrap (``clock=``, notifications' ``channels=``, ``meter_provider=``)."""
    make, settings_cls = SERVICES[name]
    values: dict[str, Any] = {
        "database_url": database_url(name, database),
        "environment": "test",
        "kafka_provision_topics": False,
        **(settings or {}),
    }
    return make(settings_cls(**values), **bootstrap)


async def migrated_runtime(
    name: str,
    database: Path | str,
    *,
    settings: Mapping[str, Any] | None = None,
    **bootstrap: Any,
) -> ServiceRuntime:
    """:func:`runtime_on`, migrated to head; the caller disposes of its engine (for a runtime
    that outlives one block, e.g. on an event loop of its own)."""
    runtime = runtime_on(name, database, settings=settings, **bootstrap)
    await upgrade_to_head(runtime.engine, name)
    return runtime


@asynccontextmanager
async def service_runtime(
    name: str,
    database: Path | str,
    *,
    migrate: bool = True,
    settings: Mapping[str, Any] | None = None,
    **bootstrap: Any,
) -> AsyncIterator[ServiceRuntime]:
    """:func:`runtime_on`, migrated to head (unless ``migrate=False``), its engine disposed of
    when the block ends."""
    runtime = runtime_on(name, database, settings=settings, **bootstrap)
    try:
        if migrate:
            await upgrade_to_head(runtime.engine, name)
        yield runtime
    finally:
        await runtime.engine.dispose()


async def migrated_engine(service: str, database: Path | str) -> AsyncEngine:
    """An engine on ``database`` (see :func:`database_url`) with ``service``'s schema at head;
    the caller disposes of it."""
    engine = make_engine(database_url(service, database))
    await upgrade_to_head(engine, service)
    return engine


@asynccontextmanager
async def asgi_client(app: Any, base_url: str = "http://test") -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling ``app`` in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


def runtime_fixture(
    name: str,
    *,
    at: datetime | None = None,
    frozen: bool = True,
    on: Literal["sqlite", "postgres"] = "sqlite",
    migrate: bool = True,
    settings: Mapping[str, Any] | None = None,
) -> Any:
    """A ``runtime`` fixture: ``name``'s runtime with a :class:`FrozenClock` at ``at`` (a new one
    per test; ``frozen=False``: the service's own clock), on a SQLite file in ``tmp_path`` or
    (``on="postgres"``) a fresh PostgreSQL database (``fresh_pg_dsn``, which also marks the test
    ``postgres``)."""

    def clock() -> dict[str, Any]:
        return {"clock": FrozenClock(at)} if frozen else {}

    if on == "postgres":

        async def runtime(fresh_pg_dsn: str) -> AsyncIterator[ServiceRuntime]:
            async with service_runtime(
                name, fresh_pg_dsn, migrate=migrate, settings=settings, **clock()
            ) as rt:
                yield rt

    else:

        async def runtime(tmp_path: Path) -> AsyncIterator[ServiceRuntime]:  # type: ignore[misc]
            async with service_runtime(
                name, tmp_path, migrate=migrate, settings=settings, **clock()
            ) as rt:
                yield rt

    return pytest.fixture(name="runtime")(runtime)


def client_fixture() -> Any:
    """A ``client`` fixture: an HTTP client on the module's ``runtime`` fixture's app."""

    async def client(runtime: ServiceRuntime) -> AsyncIterator[httpx.AsyncClient]:
        async with asgi_client(runtime.app) as c:
            yield c

    return pytest.fixture(name="client")(client)
