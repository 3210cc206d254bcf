"""An approved plan's step over the real broker and PostgreSQL: the durable timer emits exactly one
``DoseReduced`` on the step's date, also when the service restarts between due time and emission."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from contracts.topics import DOSE_REDUCED
from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.chassis.runtime import ServiceRuntime
from services.scheduler.bootstrap import bootstrap
from services.scheduler.settings import SchedulerSettings
from tests.helpers import eventually, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)
BODY: dict[str, Any] = {
    "drug": "diazepam",
    "administrations_mg": ["5", "5"],
    "duration_weeks": 30,
    "age": 40,
    "start_on": "2026-01-12",
    "formulations": ["diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml"],
}


async def approve_plan(
    runtime: ServiceRuntime, http_client_for: Any, patient: uuid.UUID
) -> dict[str, Any]:
    token = issue_dev_token(
        runtime.settings, subject="clin-1", role=Role.CLINICIAN, panel=[patient]
    )
    headers = {"Authorization": f"Bearer {token}"}
    client = http_client_for(runtime.app)
    base = f"/api/scheduler/patients/{patient}/plans"
    r = await client.post(base, json=BODY, headers=headers)
    assert r.status_code == 201, r.text
    r = await client.post(f"{base}/{r.json()['id']}/approve", json={}, headers=headers)
    assert r.status_code == 200, r.text
    plan: dict[str, Any] = r.json()
    return plan


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
