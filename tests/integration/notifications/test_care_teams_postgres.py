"""Issue 17 on PostgreSQL with the real webhook channel (to a real local HTTP receiver) and the
real timer poller against a pinned clock: the install-time RED walk (nothing configured) sends
the fallback pager one page per level for the episode — 3, where main 902faa5 sent 12 — and
the escalation list pages newest first by its keyset cursor, ties on created_at included."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.chassis.runtime import ServiceRuntime
from services.notifications.service_layer import escalations
from tests.helpers import red_flag_threshold
from tests.notifications_receivers import HttpReceiver
from tests.runtimes import service_runtime

pytestmark = [pytest.mark.postgres]

NOW = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
INSTALL_RED_WALK_BEFORE = 12  # measured on main 902faa5: 3 levels x 4 passes, 12 dedup keys
INSTALL_RED_WALK_AFTER = 3  # one per level and episode


@pytest.fixture
async def service(
    fresh_pg_dsn: str,
) -> AsyncIterator[tuple[ServiceRuntime, FrozenClock, HttpReceiver]]:
    async with HttpReceiver() as http:
        clock = FrozenClock(NOW)
        settings = {"page_webhook_url": http.url("/pages"), "public_base_url": "http://test"}
        async with service_runtime(
            "notifications", fresh_pg_dsn, settings=settings, clock=clock
        ) as runtime:
            yield runtime, clock, http


async def start(runtime: ServiceRuntime, patient: uuid.UUID, at: datetime) -> None:
    async with runtime.uow() as uow:
        await escalations.on_threshold_exceeded(red_flag_threshold(patient, occurred_at=at), uow)
        await uow.commit()
    await runtime.timers.fire_due()


async def test_install_time_red_walk_sends_one_fallback_page_per_level(
    service: tuple[ServiceRuntime, FrozenClock, HttpReceiver],
) -> None:
    runtime, clock, http = service
    await start(runtime, uuid.uuid4(), NOW)
    for _ in range(30):  # past every level, loop and re-page of the shipped RED policy
        clock.advance(timedelta(minutes=5))
        await runtime.timers.fire_due()
    pages = [r for r in http.requests if r.path == "/pages"]
    print(
        f"\ninstall-time RED walk: {len(pages)} fallback pages (before: {INSTALL_RED_WALK_BEFORE})"
    )
    assert len(pages) == INSTALL_RED_WALK_AFTER
    assert len({r.json["dedup_key"] for r in pages}) == INSTALL_RED_WALK_AFTER


async def test_escalations_page_by_cursor_newest_first_with_ties(
    service: tuple[ServiceRuntime, FrozenClock, HttpReceiver],
) -> None:
    runtime, clock, _ = service
    patient = uuid.uuid4()
    for _ in range(5):  # five escalations, two of them sharing each instant
        await start(runtime, patient, clock.now())
        await start(runtime, patient, clock.now())
        clock.advance(timedelta(seconds=1))
    token = issue_dev_token(
        runtime.settings, subject="dr-ada", role=Role.CLINICIAN, panel=[patient]
    )
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=runtime.app)
    seen: list[tuple[str, str]] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        url = f"/api/notifications/patients/{patient}/escalations"
        params: dict[str, str | int] = {"limit": 3}
        for _ in range(10):
            r = await client.get(url, params=params, headers=headers)
            assert r.status_code == 200, r.text
            seen += [(e["created_at"], e["id"]) for e in r.json()]
            if "x-next-cursor" not in r.headers:
                break
            params = {"limit": 3, "cursor": r.headers["x-next-cursor"]}
    assert len(seen) == 10 and len(set(seen)) == 10
    assert seen == sorted(seen, reverse=True)
