"""The patient-safety dashboard's figures, read from the escalations and pages tables: open
escalations by severity, RED time to page (start to the first page a provider accepted) and RED
time to acknowledge, as nearest-rank quantiles over the last 24 hours."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from services.notifications.adapters.metrics import NotificationMetrics, quantiles
from services.notifications.adapters.orm import escalations, metadata, pages

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class _Clock:
    def now(self) -> datetime:
        return NOW


def _escalation(severity: str, started: datetime, **values: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "episode_id": uuid.uuid4(),
        "patient_id": uuid.uuid4(),
        "severity": severity,
        "reason_codes": [],
        "threshold_event_id": uuid.uuid4(),
        "policy_key": "red-default",
        "policy_version": 1,
        "policy": {},
        "status": "triggered",
        "cycle": 0,
        "loop": 0,
        "level": 0,
        "created_at": started,
        "acknowledged_at": None,
        "resolved_at": None,
        **values,
    }


def _page(
    esc: dict[str, Any], created: datetime, delivered: datetime | None, level: int = 0
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "escalation_id": esc["id"],
        "episode_id": esc["episode_id"],
        "patient_id": esc["patient_id"],
        "severity": esc["severity"],
        "level": level,
        "reason_codes": [],
        "dedup_key": str(uuid.uuid4()),
        "threshold_event_id": esc["threshold_event_id"],
        "status": "delivered" if delivered else "pending",
        "attempts": 1,
        "created_at": created,
        "delivered_at": delivered,
    }


def test_quantiles_are_nearest_rank_and_zero_without_data() -> None:
    assert quantiles([]) == {0.5: 0.0, 0.9: 0.0, 1.0: 0.0}
    assert quantiles([30.0, 10.0, 20.0]) == {0.5: 20.0, 0.9: 30.0, 1.0: 30.0}
    assert quantiles([5.0]) == {0.5: 5.0, 0.9: 5.0, 1.0: 5.0}


@pytest.mark.asyncio
async def test_open_escalations_time_to_page_and_time_to_acknowledge(tmp_path: Any) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'n.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    s = timedelta(seconds=1)
    paged_fast = _escalation("RED", NOW - 600 * s, status="acknowledged",
                             acknowledged_at=NOW - 480 * s)  # fmt: skip
    paged_slow = _escalation("RED", NOW - 300 * s)
    never_paged = _escalation("RED", NOW - 60 * s)
    old = _escalation("RED", NOW - timedelta(days=3), status="acknowledged",
                      acknowledged_at=NOW - timedelta(days=3) + 9999 * s)  # fmt: skip
    amber = _escalation("AMBER", NOW - 100 * s)
    resolved = _escalation("RED", NOW - 900 * s, status="resolved", resolved_at=NOW - 800 * s)
    superseded = _escalation("AMBER", NOW - 700 * s, status="superseded")
    rows = [paged_fast, paged_slow, never_paged, old, amber, resolved, superseded]
    async with engine.begin() as conn:
        await conn.execute(escalations.insert(), rows)
        await conn.execute(
            pages.insert(),
            [
                _page(paged_fast, NOW - 599 * s, NOW - 596 * s),  # first accepted: 4 s
                _page(paged_fast, NOW - 500 * s, NOW - 499 * s, level=1),
                _page(paged_slow, NOW - 299 * s, None),  # not accepted yet
                _page(paged_slow, NOW - 250 * s, NOW - 240 * s, level=1),  # 60 s
                _page(old, NOW - timedelta(days=3), NOW - timedelta(days=3) + s),
            ],
        )
    metrics = NotificationMetrics()
    await metrics.watch_red_pages(engine, _Clock())()
    await engine.dispose()

    assert metrics.open_by_severity == {"RED": 4, "AMBER": 1}
    assert metrics.time_to_page == {0.5: 4.0, 0.9: 60.0, 1.0: 60.0}
    assert metrics.time_to_ack == {0.5: 120.0, 0.9: 120.0, 1.0: 120.0}
