"""Scheduler use cases over a real SQLite database (migrated), the real unit of work and timers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider

from contracts import DoseReduced, TaperStage, ThresholdExceeded, ThresholdReason
from services.chassis.clock import FrozenClock
from services.chassis.db import make_engine, make_session_factory
from services.chassis.migrations import upgrade_to_head
from services.chassis.timers import TimerPoller
from services.chassis.uow import UnitOfWorkFactory
from services.scheduler.adapters.orm import clinician_decisions, dose_steps, metadata, tapers
from services.scheduler.service_layer import handlers

D = Decimal
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@dataclass
class Env:
    uow: UnitOfWorkFactory
    clock: FrozenClock
    timers: TimerPoller

    async def rows(self, table: sa.Table | str, **where: Any) -> list[dict[str, Any]]:
        async with self.uow() as uow:
            t = uow.table(table) if isinstance(table, str) else table
            query = sa.select(t)
            for column, value in where.items():
                query = query.where(t.c[column] == value)
            return [dict(r) for r in (await uow.session.execute(query)).mappings()]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/scheduler.db")
    await upgrade_to_head(engine, "scheduler")
    clock = FrozenClock(START)
    factory = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    poller = TimerPoller(
        service="scheduler",
        uow_factory=factory,
        handlers={handlers.EMIT_DOSE_STEP: handlers.emit_dose_step},
        tracer_provider=TracerProvider(),
    )
    yield Env(factory, clock, poller)
    await engine.dispose()


async def start(env: Env, patient: uuid.UUID, dose: str = "10") -> None:
    async with env.uow() as uow:
        await handlers.start_taper(
            handlers.StartTaper(patient, "clin-1", "diazepam", "long", D(dose), "taper_initiated"),
            uow,
        )
        await uow.commit()


async def reduce(
    env: Env, patient: uuid.UUID, new: str, on: date, **kw: Any
) -> handlers.model.DoseStep:
    async with env.uow() as uow:
        step = await handlers.schedule_reduction(
            handlers.ScheduleReduction(patient, "clin-1", D(new), on, "planned_step", **kw), uow
        )
        await uow.commit()
    return step


async def threshold(env: Env, patient: uuid.UUID, severity: str) -> None:
    event = ThresholdExceeded.create(
        patient_id=patient,
        occurred_at=env.clock.now(),
        report_id=uuid.uuid4(),
        episode_id=uuid.uuid4(),
        severity=severity,
        reasons=(ThresholdReason(code="band:ciwa-b", instrument="ciwa-b", value=45, threshold=41),),
    )
    async with env.uow() as uow:
        await handlers.on_threshold_exceeded(event, uow)
        await uow.commit()


async def test_scheduling_records_the_decision_the_step_and_a_timer(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    on = date(2026, 1, 19)
    step = await reduce(env, patient, "8", on)

    decisions = await env.rows(clinician_decisions, patient_id=patient)
    assert sorted(d["kind"] for d in decisions) == ["reduce", "start"]
    reduce_decision = next(d for d in decisions if d["kind"] == "reduce")
    assert reduce_decision["clinician"] == "clin-1"
    assert reduce_decision["reason_code"] == "planned_step"
    assert reduce_decision["id"] == step.decision_id

    [row] = await env.rows(dose_steps, patient_id=patient)
    assert row["status"] == "scheduled" and row["step_number"] == 1
    assert D(row["new_daily_dose_mg"]) == D("8") and row["effective_on"] == on

    [timer] = await env.rows("timers", kind=handlers.EMIT_DOSE_STEP)
    assert timer["key"] == str(step.step_id)
    assert timer["due_at"] == datetime(2026, 1, 19, tzinfo=UTC)
    assert await env.rows("outbox") == []  # nothing announced before the day comes


async def test_the_due_step_emits_exactly_one_dose_reduced(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    step = await reduce(env, patient, "8", date(2026, 1, 19))

    assert await env.timers.fire_due() == 0  # not due yet
    env.clock.set(datetime(2026, 1, 19, 0, 0, 1, tzinfo=UTC))
    assert await env.timers.fire_due() == 1
    assert await env.timers.fire_due() == 0

    [out] = await env.rows("outbox")
    event = DoseReduced.model_validate_json(out["payload"])
    assert out["topic"] == "taper.scheduler.dose-reduced.v1"
    assert out["message_key"] == str(patient)
    assert event.patient_id == patient
    assert event.previous_daily_dose_mg == D("10") and event.new_daily_dose_mg == D("8")
    assert event.approved_by_decision_id == step.decision_id
    assert event.step_number == 1 and event.effective_on == date(2026, 1, 19)
    assert event.taper_stage is TaperStage.ACTIVE
    assert event.drug == "diazepam" and event.half_life_class == "long"

    [taper] = await env.rows(tapers, patient_id=patient)
    assert D(taper["current_daily_dose_mg"]) == D("8") and taper["stage"] == "active"
    [row] = await env.rows(dose_steps, id=step.step_id)
    assert row["status"] == "emitted" and row["event_id"] == event.event_id


async def test_a_red_threshold_holds_the_taper_and_its_step_is_never_emitted(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    step = await reduce(env, patient, "8", date(2026, 1, 19))
    await threshold(env, patient, "RED")

    [taper] = await env.rows(tapers, patient_id=patient)
    assert taper["held"] and taper["held_reason"] == handlers.RED_HOLD_REASON
    assert taper["stage"] == "held"

    env.clock.set(datetime(2026, 1, 19, 1, tzinfo=UTC))
    assert await env.timers.fire_due() == 1
    assert await env.rows("outbox") == []
    [row] = await env.rows(dose_steps, id=step.step_id)
    assert row["status"] == "blocked_by_hold"
    [taper] = await env.rows(tapers, patient_id=patient)
    assert D(taper["current_daily_dose_mg"]) == D("10")
    [timer] = await env.rows("timers")
    assert timer["fired_at"] is not None and timer["failed_at"] is None


async def test_held_refuses_new_reductions_until_a_clinician_resumes(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    await threshold(env, patient, "RED")
    with pytest.raises(handlers.TaperConflict):
        await reduce(env, patient, "9", date(2026, 1, 10))
    async with env.uow() as uow:
        await handlers.resume_taper(
            handlers.ClinicianAction(patient, "clin-1", "symptoms_settled"), uow
        )
        await uow.commit()
    await reduce(env, patient, "9", date(2026, 1, 10))
    kinds = [d["kind"] for d in await env.rows(clinician_decisions, patient_id=patient)]
    assert sorted(kinds) == ["reduce", "resume", "start"]


async def test_amber_and_unknown_patients_change_nothing(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    await threshold(env, patient, "AMBER")
    await threshold(env, uuid.uuid4(), "RED")
    [taper] = await env.rows(tapers, patient_id=patient)
    assert not taper["held"] and taper["version"] == 1
    assert len(await env.rows(tapers)) == 1


async def test_refusals_leave_no_trace(env: Env) -> None:
    patient = uuid.uuid4()
    with pytest.raises(handlers.TaperNotFound):
        await reduce(env, patient, "8", date(2026, 1, 19))
    await start(env, patient)
    with pytest.raises(handlers.RuleRefused) as exc:
        await reduce(env, patient, "7.4", date(2026, 1, 19))
    assert exc.value.field == "new_daily_dose_mg"
    with pytest.raises(handlers.RuleRefused):
        await reduce(env, patient, "9", START.date() - timedelta(days=1))
    with pytest.raises(handlers.TaperConflict):
        await start(env, patient)
    assert [d["kind"] for d in await env.rows(clinician_decisions)] == ["start"]
    assert await env.rows(dose_steps) == [] and await env.rows("timers") == []


async def test_an_override_is_recorded_with_its_reason(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    step = await reduce(
        env, patient, "7", date(2026, 1, 19), override=True, override_reason_code="adverse_effects"
    )
    assert step.overridden
    [d] = await env.rows(clinician_decisions, id=step.decision_id)
    assert d["payload"]["override"] is True
    assert d["payload"]["override_reason_code"] == "adverse_effects"


async def test_a_stale_write_is_refused(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    async with env.uow() as first:
        taper = await handlers.get_taper(first, patient)
        await threshold(env, patient, "RED")  # another transaction bumps the version
        taper.hold("clinician_hold")
        with pytest.raises(handlers.StaleTaper):
            await handlers._save(first, taper)
