"""What the benchmarks send and query: events, report items, the timer claim."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from contracts import DoseReduced, TaperStage
from services.monitoring.domain.reference import ciwa_b_v1

CIWA_ITEMS = ciwa_b_v1().patient_items  # the 17 patient-rated items (no clinician items)

#: the chassis timer poller's claim of one due timer, as the scheduler runs it
CLAIM_SQL = (
    "SELECT id, kind, key, due_at, payload, trace_headers, attempts, fired_at, cancelled_at,"
    " failed_at, last_error FROM timers WHERE due_at <= $1 AND fired_at IS NULL"
    " AND cancelled_at IS NULL AND failed_at IS NULL AND kind IN ($2)"
    " ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED"
)


def dose_reduced() -> DoseReduced:
    """A real DoseReduced for a fresh patient (the same facts as the tests' helper)."""
    return DoseReduced.create(
        patient_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        plan_id=uuid.uuid4(),
        step_number=3,
        drug="diazepam",
        previous_daily_dose_mg=Decimal("10"),
        new_daily_dose_mg=Decimal("9.5"),
        effective_on=date(2026, 1, 5),
        taper_stage=TaperStage.ACTIVE,
        approved_by_decision_id=uuid.uuid4(),
        half_life_class="long",
    )
