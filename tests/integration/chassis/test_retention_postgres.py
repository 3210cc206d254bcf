"""Retention pruning on PostgreSQL (row-value IN and subquery deletes behave as on SQLite)."""

from __future__ import annotations

import pytest

from tests.unit.chassis.test_retention import check_pruning

pytestmark = [pytest.mark.postgres]


async def test_pruning_on_postgres(fresh_pg_dsn: str) -> None:
    await check_pruning(fresh_pg_dsn)
