"""An approved plan's step over the real broker and PostgreSQL: the durable timer emits exactly one
``DoseReduced`` on the step's date, also when the service restarts between due time and emission."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from contracts.topics import DOSE_REDUCED, DOSE_RESTORED, TAPER_HELD
from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.chassis.runtime import ServiceRuntime
from services.scheduler.bootstrap import bootstrap
from services.scheduler.settings import SchedulerSettings
from tests import plans
from tests.helpers import eventually, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)
BODY = plans.PLAN_BODY


async def approve_plan(
    runtime: ServiceRuntime, http_client_for: Any, patient: uuid.UUID
) -> dict[str, Any]:
    token = issue_dev_token(
        runtime.settings, subject="clin-1", role=Role.CLINICIAN, panel=[patient]
    )
    headers = {"Authorization": f"Bearer {token}"}
    client = http_client_for(runtime.app)
    draft = await plans.draft_plan(client, headers, patient=patient)
    return await plans.approve_plan(client, headers, draft["id"], patient=patient)


def day_after(plan: dict[str, Any], step: int) -> datetime:
    on = datetime.fromisoformat(plan["steps"][step - 1]["effective_on"]).replace(tzinfo=UTC)
    return on.replace(hour=6)


async def published_dose_reduced(runtime: ServiceRuntime) -> int:
    async with runtime.uow() as uow:
        outbox = uow.table("outbox")
        count = await uow.session.scalar(
            sa.select(sa.func.count())
            .select_from(outbox)
            .where(outbox.c.event_type == "DoseReduced", outbox.c.published_at.is_not(None))
        )
    return int(count or 0)


async def on_topic(runtime: ServiceRuntime, patient: uuid.UUID) -> list[Any]:
    records = await read_topic(
        runtime.settings.kafka_bootstrap_servers, DOSE_REDUCED.name, expect=10**6, timeout=4
    )
    return [r for r in records if r.key == str(patient).encode()]


async def test_the_first_step_is_announced_once_on_its_date(
    settings_for: Any, http_client_for: Any
) -> None:
    patient = uuid.uuid4()
    clock = FrozenClock(NOW)
    async with bootstrap(settings_for(SchedulerSettings), clock=clock) as runtime:
        plan = await approve_plan(runtime, http_client_for, patient)
        assert await published_dose_reduced(runtime) == 0
        clock.set(day_after(plan, 1))
        await eventually(lambda: published_dose_reduced(runtime))
        [record] = await on_topic(runtime, patient)
        assert str(plan["id"]).encode() in record.value
        assert await published_dose_reduced(runtime) == 1  # step 2 is not due yet


async def test_a_restart_between_due_time_and_emission_still_emits_exactly_once(
    settings_for: Any, http_client_for: Any
) -> None:
    patient = uuid.uuid4()
    settings = settings_for(SchedulerSettings)
    first = bootstrap(settings, clock=FrozenClock(NOW))
    await first.start()
    try:
        plan = await approve_plan(first, http_client_for, patient)
    finally:
        await first.stop()  # down before step 1's date comes

    clock = FrozenClock(NOW)
    second = bootstrap(settings, clock=clock)  # a fresh runtime on the same database
    clock.set(day_after(plan, 1))  # the due time passes while the service is down
    async with second:
        await eventually(lambda: published_dose_reduced(second))
        [record] = await on_topic(second, patient)
        assert str(plan["id"]).encode() in record.value
        async with second.uow() as uow:
            timers = uow.table("timers")
            rows = (await uow.session.execute(sa.select(timers))).mappings().all()
        keys = {r["key"]: r["fired_at"] is not None for r in rows}
        assert keys == {f"{plan['id']}:1": True, f"{plan['id']}:2": False}
        assert await published_dose_reduced(second) == 1


CROSSOVER_BODY: dict[str, Any] = {
    "drug": "alprazolam",
    "administrations_mg": ["0.5", "0.5", "0.5"],
    "duration_weeks": 120,
    "age": 50,
    "start_on": "2026-01-12",
    "crossover_wanted": True,
    "formulations": [
        "alprazolam_tab_0_5mg",
        "diazepam_tab_2mg",
        "diazepam_tab_5mg",
        "diazepam_sol_1mg_ml",
    ],
}


async def _events(runtime: ServiceRuntime, topic: str, patient: uuid.UUID) -> list[Any]:
    records = await read_topic(
        runtime.settings.kafka_bootstrap_servers, topic, expect=10**6, timeout=3
    )
    return [json.loads(r.value) for r in records if r.key == str(patient).encode()]


async def test_a_crossover_plan_switches_to_diazepam_and_a_return_to_the_prior_dose_holds_it(
    settings_for: Any, http_client_for: Any
) -> None:
    """Real PostgreSQL and Kafka: each crossover stage is one DoseReduced carrying both drugs and
    diazepam-equivalents; a return to the prior dose publishes DoseRestored then TaperHeld."""
    patient = uuid.uuid4()
    clock = FrozenClock(NOW)
    async with bootstrap(settings_for(SchedulerSettings), clock=clock) as runtime:
        token = issue_dev_token(
            runtime.settings, subject="clin-1", role=Role.CLINICIAN, panel=[patient]
        )
        headers = {"Authorization": f"Bearer {token}"}
        client = http_client_for(runtime.app)
        base = f"/api/scheduler/patients/{patient}"
        r = await client.post(f"{base}/plans", json=CROSSOVER_BODY, headers=headers)
        assert r.status_code == 201, r.text
        draft = r.json()
        crossover_steps = [s for s in draft["steps"] if s["kind"] == "crossover"]
        assert len(crossover_steps) == 3
        r = await client.post(f"{base}/plans/{draft['id']}/approve", json={}, headers=headers)
        assert r.status_code == 200, r.text
        plan = r.json()

        for number in (1, 2, 3, 4):  # three crossover stages, then the first diazepam cut
            clock.set(day_after(plan, number))
            await eventually(functools.partial(_published_at_least, runtime, number))
        events = await eventually(
            lambda: _events_when(runtime, DOSE_REDUCED.name, patient, count=4)
        )
        kinds = [e["step_kind"] for e in events]
        assert kinds == ["crossover", "crossover", "crossover", "reduction"]
        assert [e["drug"] for e in events] == ["alprazolam"] * 3 + ["diazepam"]
        assert {d["drug"] for d in events[0]["regimen"]} == {"alprazolam", "diazepam"}
        assert [d["drug"] for d in events[2]["regimen"]] == ["diazepam"]
        # Across the switch the equivalents stay comparable: the first cut lowers them.
        assert Decimal(events[3]["new_daily_diazepam_eq_mg"]) < Decimal(
            events[3]["previous_daily_diazepam_eq_mg"]
        )

        r = await client.post(
            f"{base}/taper/return-to-prior-dose",
            json={"reason_code": "withdrawal_symptoms"},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        assert r.json()["held"] is True
        restored = await eventually(
            lambda: _events_when(runtime, DOSE_RESTORED.name, patient, count=1)
        )
        held = await eventually(lambda: _events_when(runtime, TAPER_HELD.name, patient, count=1))
        restored_mg = Decimal(restored[0]["restored_daily_dose_mg"])
        assert restored_mg == Decimal(events[3]["previous_daily_dose_mg"])
        assert held[0]["causation_id"] == restored[0]["event_id"]


async def _published_at_least(runtime: ServiceRuntime, n: int) -> bool:
    return await published_dose_reduced(runtime) >= n


async def _events_when(
    runtime: ServiceRuntime, topic: str, patient: uuid.UUID, *, count: int
) -> list[Any]:
    events = await _events(runtime, topic, patient)
    return events if len(events) >= count else []  # empty: not yet (``eventually`` retries)


async def test_concurrent_approvals_for_a_new_patient_give_one_taper_and_a_409(
    settings_for: Any, http_client_for: Any
) -> None:
    """Two clinicians approve two drafts for the same new patient at once (PostgreSQL): one plan
    becomes active, the other approval is a 409, never a 500."""
    patient = uuid.uuid4()
    async with bootstrap(settings_for(SchedulerSettings), clock=FrozenClock(NOW)) as runtime:
        token = issue_dev_token(
            runtime.settings, subject="clin-1", role=Role.CLINICIAN, panel=[patient]
        )
        headers = {"Authorization": f"Bearer {token}"}
        client = http_client_for(runtime.app)
        base = f"/api/scheduler/patients/{patient}/plans"
        drafts = [(await client.post(base, json=BODY, headers=headers)).json() for _ in (1, 2)]
        results = await asyncio.gather(
            *(client.post(f"{base}/{d['id']}/approve", json={}, headers=headers) for d in drafts)
        )
        assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
        async with runtime.uow() as uow:
            plans, tapers = uow.table("plans"), uow.table("tapers")
            statuses = await uow.session.scalars(
                sa.select(plans.c.status).where(plans.c.patient_id == patient)
            )
            assert sorted(statuses) == ["active", "draft"]
            taper_plan = await uow.session.scalar(
                sa.select(tapers.c.plan_id).where(tapers.c.patient_id == patient)
            )
        winner = next(d for d, r in zip(drafts, results, strict=True) if r.status_code == 200)
        assert str(taper_plan) == winner["id"]
