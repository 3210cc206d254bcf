"""Parked timers on PostgreSQL: counted, logged, listed and retried by ops, never pruned while
parked (issue 14, defect 3) — the same checks as the SQLite unit test."""

from __future__ import annotations

import pytest

from tests.unit.chassis.test_parked_timers import check_parking

pytestmark = [pytest.mark.postgres]


async def test_a_failing_timer_is_parked_visibly_kept_and_retried_on_postgres(
    fresh_pg_dsn: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    await check_parking(fresh_pg_dsn, caplog, capsys)
