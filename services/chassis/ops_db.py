"""Ops views of a service's database: outbox backlog, parked timers, migrations.

Which database: ``--database-url``, else the service's own ``<SERVICE>_DATABASE_URL`` (what the
service itself reads), else its development default (an SQLite file under var/). Connection
failures become one-line :class:`OpsError` messages (the URL's password never printed).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TextIO, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.chassis.clock import SystemClock
from services.chassis.db import add_chassis_tables, make_engine, make_session_factory
from services.chassis.migrations import current_revision, upgrade_sql, upgrade_to_head
from services.chassis.ops_kafka import SERVICES, OpsError
from services.chassis.timers import parked_timers, retry_parked
from services.chassis.uow import UnitOfWorkFactory

T = TypeVar("T")


def database_url(service: str, override: str | None = None) -> str:
    if service not in SERVICES:
        raise OpsError(f"no such service: {service} (one of {', '.join(SERVICES)})")
    return (
        override
        or os.environ.get(f"{service.upper()}_DATABASE_URL")
        or f"sqlite+aiosqlite:///var/{service}.db"
    )


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


@asynccontextmanager
async def engine_for(url: str) -> AsyncIterator[AsyncEngine]:
    try:
        engine = make_engine(url)
    except (ArgumentError, ValueError) as exc:
        raise OpsError(f"bad database URL {safe_url(url)}: {type(exc).__name__}") from None
    try:
        yield engine
    except OpsError:
        raise
    except Exception as exc:  # the driver's own errors too (asyncpg raises its own on connect)
        raise OpsError(
            f"cannot use the database at {safe_url(url)}: {type(exc).__name__}"
        ) from None
    finally:
        await engine.dispose()


def chassis_uow(engine: AsyncEngine) -> UnitOfWorkFactory:
    metadata = sa.MetaData()  # the chassis tables are the same in every service's database
    add_chassis_tables(metadata)
    return UnitOfWorkFactory(make_session_factory(engine), SystemClock(), metadata)


async def _with_uow(url: str, work: Callable[[UnitOfWorkFactory], Awaitable[T]]) -> T:
    async with engine_for(url) as engine:
        return await work(chassis_uow(engine))


async def outbox_backlog(url: str, now: datetime) -> dict[str, Any]:
    """Rows not yet published and the age of the oldest (seconds; None when there is none)."""

    async def work(uow_factory: UnitOfWorkFactory) -> dict[str, Any]:
        async with uow_factory() as uow:
            outbox = uow.table("outbox")
            row = (
                await uow.session.execute(
                    sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(
                        outbox.c.published_at.is_(None)
                    )
                )
            ).one()
        oldest = row[1]
        if oldest is not None and oldest.tzinfo is None:  # SQLite aggregates lose the type
            oldest = datetime.fromisoformat(str(oldest)).replace(tzinfo=now.tzinfo)
        return {
            "pending": int(row[0]),
            "oldest_age_s": round((now - oldest).total_seconds(), 1) if oldest else None,
        }

    return await _with_uow(url, work)


async def list_parked(url: str) -> list[dict[str, Any]]:
    async def work(uow_factory: UnitOfWorkFactory) -> list[dict[str, Any]]:
        return [t.summary() for t in await parked_timers(uow_factory)]

    return await _with_uow(url, work)


async def retry_timer(url: str, timer_id: uuid.UUID) -> None:
    async def work(uow_factory: UnitOfWorkFactory) -> bool:
        return await retry_parked(uow_factory, timer_id)

    if not await _with_uow(url, work):
        raise OpsError(f"no parked timer {timer_id}")


async def migrate(service: str, url: str, *, sql_to: TextIO | None = None) -> str:
    """Upgrade to head; with ``sql_to``, write the SQL instead (from the database's current
    revision when it can be read, else from empty) and change nothing."""
    async with engine_for(url) as engine:
        if sql_to is None:
            await upgrade_to_head(engine, service)
            return f"{service}: at {await current_revision(engine)}"
        try:
            since = await current_revision(engine)
        except Exception:
            since = None  # a DBA may ask before the database exists
    sync_url = make_url(url).set(drivername=make_url(url).get_backend_name())
    upgrade_sql(service, sync_url.render_as_string(hide_password=False), since, sql_to)
    return f"{service}: SQL from {since or 'an empty database'} to head"
