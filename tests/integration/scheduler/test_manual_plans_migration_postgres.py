"""Revision 0007's data migration (a pending legacy ``emit_dose_step`` timer's step becomes a
manual plan with its plan-step timer) on PostgreSQL: the unit test's scenario, another database."""

from __future__ import annotations

import pytest

from tests.unit.scheduler.test_taper_commands import legacy_step_becomes_a_manual_plan

pytestmark = [pytest.mark.postgres]


async def test_revision_0007_turns_a_pending_legacy_step_into_a_manual_plan_on_postgres(
    fresh_pg_dsn: str,
) -> None:
    await legacy_step_becomes_a_manual_plan(fresh_pg_dsn)
