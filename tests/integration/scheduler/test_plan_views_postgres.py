"""The plan views of issue 18 (tests/unit/scheduler/test_plan_views.py) on PostgreSQL: keyset
pages over its timestamps, NUMERIC doses (stored as ``9.0000``) sent in the one decimal format,
the schedule renumbered after an adjustment. The same tests, another database."""

from __future__ import annotations

import pytest

from tests.runtimes import client_fixture, runtime_fixture
from tests.unit.scheduler.support import NOW
from tests.unit.scheduler.test_plan_views import (  # noqa: F401 - fixtures and tests, collected here
    clinician,
    patient,
    test_a_patients_plans_are_listed_newest_first_paged_and_filtered,
    test_after_an_adjustment_the_plan_reads_1_to_n_with_the_superseded_apart,
    test_every_decimal_a_plan_and_a_taper_send_is_canonical,
    test_the_taper_shows_its_next_step_and_why_it_is_blocked,
)

pytestmark = [pytest.mark.postgres]


runtime = runtime_fixture("scheduler", at=NOW, on="postgres")
client = client_fixture()
