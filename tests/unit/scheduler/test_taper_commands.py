"""The taper commands, the step timer and monitoring's events over a real SQLite database
(migrated), the real unit of work and timers."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from opentelemetry.sdk.trace import TracerProvider

from contracts import (
    DoseReduced,
    EscalationResolved,
    Event,
    TaperCompleted,
    TaperHeld,
    TaperResumed,
    TaperStage,
    ThresholdExceeded,
    ThresholdReason,
)
from services.chassis.clock import FrozenClock
from services.chassis.db import make_engine, make_session_factory
from services.chassis.migrations import script_location, upgrade_to_head
from services.chassis.pagination import PageParams
from services.chassis.timers import TimerPoller
from services.chassis.uow import UnitOfWorkFactory
from services.scheduler.adapters.orm import (
    clinician_decisions,
    dose_steps,
    metadata,
    plan_steps,
    plans,
    tapers,
)
from services.scheduler.adapters.repository import DecisionLog, TaperRepository
from services.scheduler.domain import model
from services.scheduler.service_layer import (
    errors,
    monitoring_events,
    plan_queries,
    replanning,
    step_timer,
    taper_commands,
)
from services.scheduler.service_layer import plans as plans_cases
from tests.runtimes import migrated_engine

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
    engine = await migrated_engine("scheduler", tmp_path)
    clock = FrozenClock(START)
    factory = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    poller = TimerPoller(
        service="scheduler",
        uow_factory=factory,
        handlers={step_timer.EMIT_PLAN_STEP: step_timer.emit_plan_step},
        tracer_provider=TracerProvider(),
    )
    yield Env(factory, clock, poller)
    await engine.dispose()


async def start(env: Env, patient: uuid.UUID, dose: str = "10") -> None:
    async with env.uow() as uow:
        await taper_commands.start_taper(
            taper_commands.StartTaper(
                patient, "clin-1", "diazepam", "long", D(dose), "taper_initiated"
            ),
            uow,
        )
        await uow.commit()


async def reduce(env: Env, patient: uuid.UUID, new: str, on: date, **kw: Any) -> model.DoseStep:
    async with env.uow() as uow:
        step = await taper_commands.schedule_reduction(
            taper_commands.ScheduleReduction(patient, "clin-1", D(new), on, "planned_step", **kw),
            uow,
        )
        await uow.commit()
    return step


async def threshold(env: Env, patient: uuid.UUID, severity: str) -> ThresholdExceeded:
    event = ThresholdExceeded.create(
        patient_id=patient,
        occurred_at=env.clock.now(),
        report_id=uuid.uuid4(),
        episode_id=uuid.uuid4(),
        severity=severity,
        reasons=(ThresholdReason(code="band:ciwa-b", instrument="ciwa-b", value=45, threshold=41),),
    )
    async with env.uow() as uow:
        await monitoring_events.on_threshold_exceeded(event, uow)
        await uow.commit()
    return event


async def clinician(env: Env, action: str, patient: uuid.UUID, reason: str) -> uuid.UUID:
    """Hold or resume as clin-1; returns the recorded decision's id."""
    command = taper_commands.hold_taper if action == "hold" else taper_commands.resume_taper
    async with env.uow() as uow:
        await command(taper_commands.ClinicianAction(patient, "clin-1", reason), uow)
        await uow.commit()
    decisions = await env.rows(clinician_decisions, patient_id=patient, kind=action)
    return uuid.UUID(str(max(decisions, key=lambda d: d["decided_at"])["id"]))


async def outbox(env: Env) -> list[tuple[str, Event]]:
    """Every outbox row in order, as (topic, parsed event); checks the row's key and type."""
    by_type: dict[str, type[Event]] = {
        cls.EVENT_TYPE: cls for cls in (DoseReduced, TaperHeld, TaperResumed, TaperCompleted)
    }
    found = []
    for row in sorted(await env.rows("outbox"), key=lambda r: r["seq"]):
        event = by_type[row["event_type"]].model_validate_json(row["payload"])
        assert row["message_key"] == str(event.patient_id)
        assert row["event_id"] == event.event_id
        found.append((row["topic"], event))
    return found


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

    # A one-step plan of kind manual, its step armed like any plan step (one door).
    [plan] = await env.rows(plans, patient_id=patient)
    [timer] = await env.rows("timers", kind=step_timer.EMIT_PLAN_STEP)
    assert timer["key"] == f"{plan['id']}:1"
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
    assert taper["held"] and taper["held_reason"] == monitoring_events.RED_HOLD_REASON
    assert taper["stage"] == "held"

    env.clock.set(datetime(2026, 1, 19, 1, tzinfo=UTC))
    assert await env.timers.fire_due() == 1
    assert [type(e) for _, e in await outbox(env)] == [TaperHeld]  # no DoseReduced
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
    with pytest.raises(errors.TaperConflict):
        await reduce(env, patient, "9", date(2026, 1, 10))
    async with env.uow() as uow:
        await taper_commands.resume_taper(
            taper_commands.ClinicianAction(patient, "clin-1", "symptoms_settled"), uow
        )
        await uow.commit()
    await reduce(env, patient, "9", date(2026, 1, 10))
    kinds = [d["kind"] for d in await env.rows(clinician_decisions, patient_id=patient)]
    assert sorted(kinds) == ["reduce", "resume", "start"]


async def test_amber_holds_before_the_next_step_and_unknown_patients_change_nothing(
    env: Env,
) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    await threshold(env, patient, "AMBER")
    await threshold(env, uuid.uuid4(), "RED")
    [taper] = await env.rows(tapers, patient_id=patient)
    assert taper["held"] and taper["held_reason"] == "amber_threshold_exceeded"
    assert len(await env.rows(tapers)) == 1
    await threshold(env, patient, "RED")  # already held: the first reason stands
    [taper] = await env.rows(tapers, patient_id=patient)
    assert taper["held_reason"] == "amber_threshold_exceeded" and taper["version"] == 2


async def test_refusals_leave_no_trace(env: Env) -> None:
    patient = uuid.uuid4()
    with pytest.raises(errors.TaperNotFound):
        await reduce(env, patient, "8", date(2026, 1, 19))
    await start(env, patient)
    with pytest.raises(errors.RuleRefused) as exc:
        await reduce(env, patient, "7.4", date(2026, 1, 19))
    assert exc.value.field == "new_daily_dose_mg"
    with pytest.raises(errors.RuleRefused):
        await reduce(env, patient, "9", START.date() - timedelta(days=1))
    with pytest.raises(errors.TaperConflict):
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
        taper = await taper_commands.get_taper(first, patient)
        await threshold(env, patient, "RED")  # another transaction bumps the version
        taper.hold("clinician_hold")
        with pytest.raises(errors.StaleTaper):
            await TaperRepository.of(first).save(taper)


# --- lifecycle events (issue 3) ---------------------------------------------------------------


async def test_a_clinician_hold_announces_taper_held_with_its_decision(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    decision_id = await clinician(env, "hold", patient, "patient_request")

    [(topic, event)] = await outbox(env)
    [taper] = await env.rows(tapers, patient_id=patient)
    assert topic == "taper.scheduler.taper-held.v1"
    assert isinstance(event, TaperHeld)
    assert event.patient_id == patient and event.plan_id == taper["plan_id"]
    assert event.reason_code == "patient_request" and event.held_by == "clinician"
    assert event.decision_id == decision_id
    assert event.correlation_id == decision_id and event.causation_id is None
    assert event.taper_stage is TaperStage.HELD
    assert event.occurred_at == START

    with pytest.raises(errors.TaperConflict):  # already held: refused, nothing announced
        await clinician(env, "hold", patient, "patient_request")
    assert len(await outbox(env)) == 1


async def test_a_red_threshold_hold_is_caused_by_the_threshold_event(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    red = await threshold(env, patient, "RED")
    await threshold(env, patient, "RED")  # already held: the first hold stands, no new event
    await threshold(env, patient, "AMBER")

    [(topic, event)] = await outbox(env)
    [taper] = await env.rows(tapers, patient_id=patient)
    assert topic == "taper.scheduler.taper-held.v1"
    assert isinstance(event, TaperHeld)
    assert event.patient_id == patient and event.plan_id == taper["plan_id"]
    assert event.reason_code == monitoring_events.RED_HOLD_REASON and event.held_by == "monitoring"
    assert event.decision_id is None
    assert event.causation_id == red.event_id
    assert event.correlation_id == red.correlation_id
    assert event.taper_stage is TaperStage.HELD


async def test_a_resume_announces_taper_resumed_with_the_stage_the_dose_implies(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    await reduce(env, patient, "8", date(2026, 1, 5))
    assert await env.timers.fire_due() == 1  # due today: 10 -> 8
    await threshold(env, patient, "RED")
    env.clock.set(START + timedelta(days=2))
    decision_id = await clinician(env, "resume", patient, "symptoms_settled")

    events = await outbox(env)
    assert [type(e) for _, e in events] == [DoseReduced, TaperHeld, TaperResumed]
    topic, event = events[-1]
    assert topic == "taper.scheduler.taper-resumed.v1"
    assert isinstance(event, TaperResumed)
    [taper] = await env.rows(tapers, patient_id=patient)
    assert event.patient_id == patient and event.plan_id == taper["plan_id"]
    assert event.decision_id == decision_id
    assert event.correlation_id == decision_id and event.causation_id is None
    assert event.taper_stage is TaperStage.ACTIVE and taper["stage"] == "active"
    assert event.occurred_at == START + timedelta(days=2)

    with pytest.raises(errors.TaperConflict):  # not held any more: refused, nothing announced
        await clinician(env, "resume", patient, "symptoms_settled")
    assert len(await outbox(env)) == 3


async def test_the_step_to_zero_announces_dose_reduced_and_taper_completed_together(
    env: Env,
) -> None:
    patient = uuid.uuid4()
    await start(env, patient, dose="0.5")
    step = await reduce(
        env, patient, "0", date(2026, 1, 19), override=True, override_reason_code="final_step"
    )
    env.clock.set(datetime(2026, 1, 19, 0, 0, 1, tzinfo=UTC))
    assert await env.timers.fire_due() == 1

    [(t1, reduced), (t2, completed)] = await outbox(env)
    assert (t1, t2) == ("taper.scheduler.dose-reduced.v1", "taper.scheduler.taper-completed.v1")
    assert isinstance(reduced, DoseReduced) and isinstance(completed, TaperCompleted)
    assert reduced.new_daily_dose_mg == D("0") and reduced.taper_stage is TaperStage.COMPLETED
    assert completed.patient_id == patient and completed.plan_id == reduced.plan_id
    assert completed.final_daily_dose_mg == D("0") and completed.outcome == "stopped"
    assert completed.decision_id == step.decision_id
    assert completed.causation_id == reduced.event_id
    assert completed.correlation_id == reduced.correlation_id == step.decision_id
    assert completed.occurred_at == reduced.occurred_at
    [taper] = await env.rows(tapers, patient_id=patient)
    assert taper["stage"] == "completed" and D(taper["current_daily_dose_mg"]) == D("0")

    assert await env.timers.fire_due() == 0  # fired once: nothing more announced
    assert len(await outbox(env)) == 2


async def test_a_step_above_zero_does_not_complete_the_taper(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    await reduce(env, patient, "9", date(2026, 1, 5))
    assert await env.timers.fire_due() == 1
    assert [type(e) for _, e in await outbox(env)] == [DoseReduced]


async def resolved(env: Env, patient: uuid.UUID, resolution: str) -> None:
    event = EscalationResolved.create(
        patient_id=patient,
        occurred_at=env.clock.now(),
        episode_id=uuid.uuid4(),
        family="withdrawal",
        severity="RED",
        resolution=resolution,
        resolved_by="clin-2",
    )
    async with env.uow() as uow:
        await monitoring_events.on_escalation_resolved(event, uow)
        await uow.commit()


@pytest.mark.parametrize("severity", ["RED", "AMBER"])
async def test_resolving_the_episode_with_resume_lifts_monitorings_hold_as_that_clinicians_decision(
    env: Env, severity: str
) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    await threshold(env, patient, severity)
    await resolved(env, patient, "keep_held")
    [taper] = await env.rows(tapers, patient_id=patient)
    assert taper["held"]
    await resolved(env, patient, "resume_taper")
    [taper] = await env.rows(tapers, patient_id=patient)
    assert not taper["held"] and taper["held_reason"] is None
    [resume] = await env.rows(clinician_decisions, patient_id=patient, kind="resume")
    assert resume["clinician"] == "clin-2" and resume["reason_code"] == "escalation_resolved"


async def test_resolving_an_episode_never_lifts_a_clinicians_hold(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    await clinician(env, "hold", patient, "patient_travelling")
    await resolved(env, patient, "resume_taper")
    [taper] = await env.rows(tapers, patient_id=patient)
    assert taper["held"] and taper["held_reason"] == "patient_travelling"
    await resolved(env, uuid.uuid4(), "resume_taper")  # not tapering with us: nothing to do


async def test_a_manual_reduction_blocked_by_a_hold_is_re_armed_when_resumed(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    step = await reduce(env, patient, "8", date(2026, 1, 19))
    await threshold(env, patient, "RED")
    env.clock.set(datetime(2026, 1, 19, 1, tzinfo=UTC))
    assert await env.timers.fire_due() == 1  # blocked by the hold
    env.clock.set(datetime(2026, 1, 26, 9, tzinfo=UTC))
    await clinician(env, "resume", patient, "symptoms_settled")
    env.clock.set(datetime(2026, 1, 27, 9, tzinfo=UTC))
    await env.timers.fire_due()
    reduced = [e for _, e in await outbox(env) if isinstance(e, DoseReduced)]
    assert len(reduced) == 1 and reduced[0].effective_on == date(2026, 1, 26)
    # The very step the clinician scheduled (the id the request answered), moved past the hold.
    [row] = await env.rows(dose_steps, id=step.step_id)
    assert row["status"] == "emitted" and row["event_id"] == reduced[0].event_id
    assert row["effective_on"] == date(2026, 1, 26)
    [plan] = await env.rows(plans, patient_id=patient)
    assert plan["kind"] == "manual" and plan["status"] == "completed"


async def test_a_manual_reduction_is_a_one_step_plan_closed_completed_after_its_step(
    env: Env,
) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    [before] = await env.rows(tapers, patient_id=patient)
    step = await reduce(env, patient, "8", date(2026, 1, 19))

    [plan] = await env.rows(plans, patient_id=patient)
    assert (plan["kind"], plan["status"]) == ("manual", "active")
    assert plan["approved_by_decision_id"] == step.decision_id  # the clinician's reduce decision
    [plan_step] = await env.rows(plan_steps, plan_id=plan["id"])
    assert plan_step["dose_step_id"] == step.step_id and plan_step["status"] == "scheduled"
    assert plan_step["effective_on"] == date(2026, 1, 19)
    # Not a plan a clinician reads or lists; the taper's plan (its events name it) is unchanged.
    async with env.uow() as uow:
        listed, _ = await plan_queries.list_plans(uow, patient, PageParams(limit=10))
        assert listed == []
        with pytest.raises(errors.PlanNotFound):
            await plans_cases.get_plan(uow, patient, plan["id"])
        # ... nor adjusted, approved or written to (no planning input: as an unknown plan)
        with pytest.raises(errors.PlanNotFound):
            await replanning.adjust_plan(
                replanning.AdjustPlan(patient, plan["id"], "clin-1", "slower_pace"), uow
            )
        with pytest.raises(errors.PlanNotFound):
            await plans_cases.approve_plan(
                plans_cases.ApprovePlan(patient, plan["id"], "clin-1", "approved"), uow
            )
        assert await plan_queries.locked_version(uow, patient, plan["id"]) is None
    [after] = await env.rows(tapers, patient_id=patient)
    assert after["plan_id"] == before["plan_id"]

    env.clock.set(datetime(2026, 1, 19, 1, tzinfo=UTC))
    assert await env.timers.fire_due() == 1
    [(_, reduced)] = await outbox(env)
    assert isinstance(reduced, DoseReduced) and reduced.plan_id == before["plan_id"]
    [plan] = await env.rows(plans, patient_id=patient)
    assert plan["status"] == "completed"
    [plan_step] = await env.rows(plan_steps, plan_id=plan["id"])
    assert plan_step["status"] == "emitted"
    [row] = await env.rows(dose_steps, id=step.step_id)
    assert row["status"] == "emitted" and row["event_id"] == reduced.event_id


async def test_a_second_manual_reduction_is_allowed_once_the_first_is_taken(env: Env) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    await reduce(env, patient, "8", date(2026, 1, 19))
    with pytest.raises(errors.TaperConflict):  # one step at a time, as before
        await reduce(env, patient, "7", date(2026, 2, 2))
    env.clock.set(datetime(2026, 1, 19, 1, tzinfo=UTC))
    assert await env.timers.fire_due() == 1

    second = await reduce(env, patient, "7", date(2026, 2, 2))
    env.clock.set(datetime(2026, 2, 2, 1, tzinfo=UTC))
    assert await env.timers.fire_due() == 1
    reduced = [e for _, e in await outbox(env) if isinstance(e, DoseReduced)]
    assert [(e.step_number, e.new_daily_dose_mg) for e in reduced] == [(1, D("8")), (2, D("7"))]
    assert sorted((p["kind"], p["status"]) for p in await env.rows(plans, patient_id=patient)) == [
        ("manual", "completed"),
        ("manual", "completed"),
    ]
    [row] = await env.rows(dose_steps, id=second.step_id)
    assert row["status"] == "emitted"


async def test_a_return_to_the_prior_dose_cancels_a_pending_manual_step_and_its_plan(
    env: Env,
) -> None:
    patient = uuid.uuid4()
    await start(env, patient)
    await reduce(env, patient, "8", date(2026, 1, 19))
    env.clock.set(datetime(2026, 1, 19, 1, tzinfo=UTC))
    await env.timers.fire_due()
    step = await reduce(env, patient, "7", date(2026, 2, 9))
    async with env.uow() as uow:
        await taper_commands.return_to_prior_dose(
            taper_commands.ClinicianAction(patient, "clin-1", "withdrawal_symptoms"), uow
        )
        await uow.commit()
    await clinician(env, "resume", patient, "symptoms_settled")
    env.clock.set(datetime(2026, 2, 10, 1, tzinfo=UTC))
    assert await env.timers.fire_due() == 0  # its timer was cancelled with its plan
    [row] = await env.rows(dose_steps, id=step.step_id)
    assert row["status"] == "cancelled"
    statuses = sorted(p["status"] for p in await env.rows(plans, patient_id=patient))
    assert statuses == ["cancelled", "completed"]


async def test_revision_0007_turns_a_pending_legacy_step_into_a_manual_plan(tmp_path: Path) -> None:
    await legacy_step_becomes_a_manual_plan(f"sqlite+aiosqlite:///{tmp_path}/legacy.db")


async def legacy_step_becomes_a_manual_plan(url: str) -> None:
    """A database an older version left with a pending ``emit_dose_step`` timer (armed by the
    old ``schedule_reduction``): after the upgrade the step is a manual plan's, taken by the
    plan-step timer on its day; a legacy timer that already fired is left alone."""
    engine = make_engine(url)

    def to_0006(conn: sa.Connection, *, down: bool = False) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(script_location("scheduler")))
        cfg.set_main_option("service", "scheduler")
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, "0006")

    async with engine.begin() as conn:
        await conn.run_sync(to_0006)
    clock = FrozenClock(START)
    factory = UnitOfWorkFactory(make_session_factory(engine), clock, metadata)
    env = Env(
        factory,
        clock,
        TimerPoller(
            service="scheduler",
            uow_factory=factory,
            handlers={step_timer.EMIT_PLAN_STEP: step_timer.emit_plan_step},
            tracer_provider=TracerProvider(),
        ),
    )
    patient, other = uuid.uuid4(), uuid.uuid4()
    await start(env, patient)
    await start(env, other)
    legacy: dict[uuid.UUID, model.DoseStep] = {}
    for who, status in ((patient, None), (other, model.StepStatus.EMITTED)):
        async with env.uow() as uow:  # what the old schedule_reduction wrote
            taper = await TaperRepository.of(uow).get(who)
            assert taper is not None
            decision = model.ClinicianDecision.new(model.DecisionKind.REDUCE, "clin-1", "planned")
            step = taper.reduce(D("8"), date(2026, 1, 19), decision, today=START.date())
            await DecisionLog(uow).record(who, decision, {"step_id": str(step.step_id)})
            if status is not None:  # taken already: its timer fired
                taper.apply(step.step_id)
            await TaperRepository.of(uow).save(taper)
            await uow.schedule_timer(
                step_timer.EMIT_DOSE_STEP,
                key=str(step.step_id),
                due_at=taper.step_due_at(step.effective_on),
                payload={"patient_id": str(who)},
            )
            if status is not None:
                await uow.session.execute(
                    sa.update(uow.table("timers"))
                    .where(uow.table("timers").c.key == str(step.step_id))
                    .values(fired_at=START)
                )
            await uow.commit()
            legacy[who] = step

    await upgrade_to_head(engine, "scheduler")

    [plan] = await env.rows(plans, kind="manual")
    assert plan["patient_id"] == patient and plan["status"] == "active"
    assert plan["approved_by_decision_id"] == legacy[patient].decision_id
    [plan_step] = await env.rows(plan_steps, plan_id=plan["id"])
    assert plan_step["dose_step_id"] == legacy[patient].step_id
    assert plan_step["status"] == "scheduled" and plan_step["effective_on"] == date(2026, 1, 19)
    [old] = await env.rows("timers", key=str(legacy[patient].step_id))
    assert old["cancelled_at"] is not None
    [new] = await env.rows("timers", kind=step_timer.EMIT_PLAN_STEP)
    assert new["key"] == f"{plan['id']}:1" and new["due_at"] == old["due_at"]

    # Down again: the single-step timer is armed again and the manual plan goes; then up again.
    async with engine.begin() as conn:
        await conn.run_sync(functools.partial(to_0006, down=True))
        assert await conn.scalar(sa.text("SELECT count(*) FROM plans")) == 0
    [old] = await env.rows("timers", key=str(legacy[patient].step_id))
    assert old["cancelled_at"] is None and old["fired_at"] is None
    [new] = await env.rows("timers", kind=step_timer.EMIT_PLAN_STEP)
    assert new["cancelled_at"] is not None
    await upgrade_to_head(engine, "scheduler")
    [plan] = await env.rows(plans, kind="manual")
    assert plan["status"] == "active"

    env.clock.set(datetime(2026, 1, 19, 1, tzinfo=UTC))
    assert await env.timers.fire_due() == 1
    [reduced] = [e for _, e in await outbox(env) if isinstance(e, DoseReduced)]
    assert reduced.patient_id == patient and reduced.new_daily_dose_mg == D("8")
    [row] = await env.rows(dose_steps, id=legacy[patient].step_id)
    assert row["status"] == "emitted"
    [plan] = await env.rows(plans, kind="manual")
    assert plan["status"] == "completed"
    await engine.dispose()
