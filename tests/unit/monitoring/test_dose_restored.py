"""Monitoring consumes DoseRestored (issue 13, item 13): the restore is recorded in the dose
history, and, being an increase, it opens no "worsening after a reduction" window of its own."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import sqlalchemy as sa

from contracts import DOSE_RESTORED, DoseRestored, DrugDose, TaperStage
from services.chassis.clock import FrozenClock
from services.chassis.runtime import ServiceRuntime
from services.monitoring.adapters.orm import dose_history
from services.monitoring.entrypoints.consumers import SUBSCRIPTIONS
from tests.helpers import dose_reduced
from tests.unit.monitoring.test_api import NOW, PATIENT, Role, ciwa, headers, submit


def restored(on: date) -> DoseRestored:
    return DoseRestored.create(
        patient_id=PATIENT,
        occurred_at=datetime.combine(on, datetime.min.time(), tzinfo=UTC),
        plan_id=uuid.uuid4(),
        step_number=2,
        drug="alprazolam",
        previous_daily_dose_mg=Decimal("0.75"),
        restored_daily_dose_mg=Decimal(1),
        regimen=[DrugDose(drug="alprazolam", daily_dose_mg=Decimal(1))],
        effective_on=on,
        decision_id=uuid.uuid4(),
        half_life_class="short",
        taper_stage=TaperStage.HELD,
    )


async def deliver(runtime: ServiceRuntime, event: object) -> None:
    """Through the handler monitoring subscribes to the event's topic (no broker in unit tests)."""
    [handler] = [s.handler for s in SUBSCRIPTIONS if s.topic.event is type(event)]
    async with runtime.uow() as uow:
        await handler(event, uow)
        await uow.commit()


async def test_a_restore_is_recorded_and_opens_no_withdrawal_window(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    assert any(s.topic is DOSE_RESTORED for s in SUBSCRIPTIONS)
    clock = runtime.clock
    assert isinstance(clock, FrozenClock)
    h = headers(runtime, Role.PATIENT)
    clock.set(datetime(2026, 1, 20, 9, tzinfo=UTC))
    await submit(client, h, ciwa(4))  # the baseline, before the taper
    # A cut a month ago (its 3-day window closed long since), a report after it...
    cut = dose_reduced(
        PATIENT,
        drug="alprazolam",
        previous_daily_dose_mg=Decimal(1),
        new_daily_dose_mg=Decimal("0.75"),
        effective_on=date(2026, 2, 1),
        half_life_class="short",
    )
    clock.set(datetime(2026, 2, 1, 9, tzinfo=UTC))
    await deliver(runtime, cut)
    clock.set(datetime(2026, 2, 25, 9, tzinfo=UTC))
    await submit(client, h, ciwa(6))
    # ...and the clinician returns the patient to the prior dose yesterday.
    clock.set(datetime(2026, 3, 1, 9, tzinfo=UTC))
    await deliver(runtime, restored(date(2026, 3, 1)))

    async with runtime.uow() as uow:
        history = (
            await uow.session.execute(
                sa.select(dose_history.c.change, dose_history.c.new_daily_dose_mg)
                .where(dose_history.c.patient_id == PATIENT)
                .order_by(dose_history.c.effective_on)
            )
        ).all()
    assert [(c, Decimal(mg)) for c, mg in history] == [
        ("reduction", Decimal("0.75")),
        ("restore", Decimal(1)),
    ]

    clock.set(NOW)  # the day after the restore: +6 from the report before it
    out = await submit(client, h, ciwa(12))
    codes = {r["code"] for r in out["reasons"]}
    assert "worsening_after_reduction:ciwa-b" not in codes, codes
