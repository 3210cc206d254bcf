"""``GET /api/<service>/clock`` (issue 18 part 8): every service tells its (possibly scaled) time,
its scale and the wall time, without a token and never cached; one chassis implementation with
an operationId per service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.chassis.clock import FrozenClock, ScaledClock, SystemClock
from services.chassis.openapi import camel
from services.chassis.runtime import ServiceRuntime
from tests.all_services import SERVICES, sqlite_runtime

AT = datetime(2026, 3, 16, 9, tzinfo=UTC)


async def get_clock(runtime: ServiceRuntime) -> httpx.Response:
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(f"{runtime.settings.url_prefix}/clock")  # no token


@pytest.mark.parametrize("service", list(SERVICES))
async def test_every_service_serves_its_clock_without_a_token(service: str, tmp_path: Path) -> None:
    runtime = sqlite_runtime(service, tmp_path, clock=FrozenClock(AT, scale=1440))
    before = datetime.now(UTC)
    r = await get_clock(runtime)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert datetime.fromisoformat(body["now"]) == AT
    assert body["scale"] == 1440
    assert body["scaled"] is True
    assert body["anchor"] is None  # a frozen clock has no anchor
    assert before <= datetime.fromisoformat(body["wall_time"]) <= datetime.now(UTC)
    operation = runtime.app.openapi()["paths"][f"{runtime.settings.url_prefix}/clock"]["get"]
    assert operation["operationId"] == f"get{camel(service)}Clock"
    assert "security" not in operation  # documented as public
    await runtime.engine.dispose()


async def test_a_scaled_clock_tells_its_anchor_and_runs_ahead_of_the_wall(
    tmp_path: Path,
) -> None:
    anchor = datetime.now(UTC) - timedelta(seconds=10)
    runtime = sqlite_runtime("monitoring", tmp_path, clock=ScaledClock(60, anchor))
    body = (await get_clock(runtime)).json()
    assert body["scale"] == 60 and body["scaled"] is True
    assert datetime.fromisoformat(body["anchor"]) == anchor
    now, wall = (datetime.fromisoformat(body[k]) for k in ("now", "wall_time"))
    # ten wall seconds since the anchor are ten minutes of service time
    assert now - anchor >= timedelta(minutes=10)
    assert now - wall > timedelta(minutes=9)
    await runtime.engine.dispose()


async def test_a_real_time_clock_says_so(tmp_path: Path) -> None:
    runtime = sqlite_runtime("scheduler", tmp_path, clock=SystemClock())
    body = (await get_clock(runtime)).json()
    assert body["scale"] == 1 and body["scaled"] is False and body["anchor"] is None
    now, wall = (datetime.fromisoformat(body[k]) for k in ("now", "wall_time"))
    assert abs(now - wall) < timedelta(seconds=5)
    assert now.utcoffset() == timedelta(0)
    await runtime.engine.dispose()
