"""On PostgreSQL, the keyset pages of a list (symptom reports, episodes by status) hold every row
once while rows arrive between pages, as on SQLite: timestamps with microseconds and a time
zone, and UUID tie-breakers, compare as the cursor says (issue 18, part 2)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.runtimes import client_fixture, runtime_fixture
from tests.unit.monitoring.test_paged_lists import (
    test_episodes_history_by_status_paged_for_the_patient_and_the_panel as test_episodes_on_pg,
)
from tests.unit.monitoring.test_paged_lists import (
    test_symptom_reports_every_one_once_newest_first_while_reports_arrive as test_reports_on_pg,
)

pytestmark = [pytest.mark.postgres]
__all__ = ["test_episodes_on_pg", "test_reports_on_pg"]


runtime = runtime_fixture("monitoring", at=datetime(2026, 3, 2, 9, tzinfo=UTC), on="postgres")
client = client_fixture()
