"""Helpers for the scheduler's API tests: tokens, the frozen clock, table rows, outbox events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from contracts import Event, event_class
from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.chassis.runtime import ServiceRuntime

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)


def auth(runtime: ServiceRuntime, role: Role, **claims: Any) -> dict[str, str]:
    token = issue_dev_token(runtime.settings, subject=f"{role}-1", role=role, **claims)
    return {"Authorization": f"Bearer {token}"}


def clock(runtime: ServiceRuntime) -> FrozenClock:
    assert isinstance(runtime.clock, FrozenClock)
    return runtime.clock


async def rows(runtime: ServiceRuntime, table: str) -> list[dict[str, Any]]:
    async with runtime.uow() as uow:
        t = uow.table(table)
        return [dict(r) for r in (await uow.session.execute(sa.select(t))).mappings()]


async def live_timers(runtime: ServiceRuntime) -> list[dict[str, Any]]:
    return [
        t
        for t in await rows(runtime, "timers")
        if t["fired_at"] is None and t["cancelled_at"] is None and t["failed_at"] is None
    ]


async def events(runtime: ServiceRuntime) -> list[Event]:
    """Every event in the outbox, in publication order, parsed by its contract."""
    ordered = sorted(await rows(runtime, "outbox"), key=lambda r: r["seq"])
    return [event_class(r["event_type"]).model_validate_json(r["payload"]) for r in ordered]
