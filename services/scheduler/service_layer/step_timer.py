"""The dose-step timers: a step's day has come, so the taper takes it unless it is held.

``emit_plan_step`` takes an approved plan's due step (``take_step``) and arms the next one
(``arm_step``) in the same transaction; ``emit_dose_step`` takes a single scheduled step. Either
way the taper applies the step and records ``DoseReduced`` (and ``TaperCompleted`` at zero),
which the unit of work writes to the outbox on commit. Firing a timer again changes nothing: only
a ``scheduled`` step is taken. A held taper blocks the due step; for a plan, a clinician's resume
arms it again (``replanning.after_resume``).
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from services.chassis.timers import DueTimer
from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.codecs import regimen_from
from services.scheduler.adapters.plan_repository import PlanRepository
from services.scheduler.adapters.repository import DecisionLog, TaperRepository
from services.scheduler.adapters.stored_plan import summary_bounds
from services.scheduler.domain import model
from services.scheduler.domain.plan_states import PlanStatus, PlanStepStatus
from services.scheduler.domain.planning import final_step_threshold_mg, planning_defaults_v1
from services.scheduler.service_layer.errors import InconsistentStep

EMIT_DOSE_STEP = "emit_dose_step"
EMIT_PLAN_STEP = "emit_plan_step"


async def emit_dose_step(timer: DueTimer, uow: UnitOfWork) -> None:
    """A single step's day has come (``taper_commands.schedule_reduction`` armed it).

    A held taper's step is marked ``blocked_by_hold`` and not emitted; no resume re-arms it (the
    clinician schedules the next step, ASAM: "if paused, resume more slowly").
    """
    try:
        step_id = uuid.UUID(timer.key)
    except ValueError:
        raise InconsistentStep("timer key is not a step id") from None
    tapers = TaperRepository.of(uow)
    patient_id = await tapers.patient_of_step(step_id)
    if patient_id is None:
        raise InconsistentStep("dose step not found")
    taper = await tapers.get(patient_id)
    step = next((s for s in taper.steps if s.step_id == step_id), None) if taper else None
    if taper is None or step is None:
        raise InconsistentStep("dose step has no matching taper")
    if step.status is not model.StepStatus.SCHEDULED:
        return  # already emitted, blocked or cancelled: firing again changes nothing
    if taper.held:
        taper.block(step_id)
        await tapers.save_steps(taper)
        return
    _apply(taper, step_id, uow)
    await tapers.save(taper)


def _apply(taper: model.PatientTaper, step_id: uuid.UUID, uow: UnitOfWork) -> model.DoseStep:
    try:
        return taper.apply(step_id, at=uow.clock.now())
    except model.TaperError as exc:
        raise InconsistentStep(str(exc)) from None


def _parse_key(key: str) -> tuple[uuid.UUID, int]:
    parts = key.split(":")  # "<plan_id>:<number>" or, re-armed after a resume, ":<suffix>"
    try:
        return uuid.UUID(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        raise InconsistentStep("timer key is not a plan step") from None


async def emit_plan_step(timer: DueTimer, uow: UnitOfWork) -> None:
    """An approved plan's step is due: take it and arm the next (or end the plan)."""
    plan_id, number = _parse_key(timer.key)
    repository = PlanRepository(uow)
    step_row = await repository.step(plan_id, number)
    if step_row is None:
        raise InconsistentStep("plan step not found")
    if step_row["status"] != PlanStepStatus.SCHEDULED:
        return  # already emitted, blocked or cancelled: firing again changes nothing
    plan_row = await repository.row(plan_id)
    if plan_row["status"] != PlanStatus.ACTIVE:
        return
    tapers = TaperRepository.of(uow)
    taper = await tapers.get(plan_row["patient_id"])
    if taper is None or taper.plan_id != plan_id:
        raise InconsistentStep("plan step has no matching taper")
    if taper.held:  # the chain stops here until a clinician resumes
        await repository.set_step(plan_id, number, status=PlanStepStatus.BLOCKED_BY_HOLD.value)
        return
    approval = await DecisionLog(uow).get(plan_row["approved_by_decision_id"])
    try:
        step = take_step(
            taper,
            dict(step_row),
            approval,
            plan_row["summary"],
            # Validated against the clock at approval; a timer fired late (downtime) still gives
            # the step its planned date.
            today=min(uow.clock.now().date(), step_row["effective_on"]),
        )
    except model.TaperError as exc:
        raise InconsistentStep(str(exc)) from None
    _apply(taper, step.step_id, uow)
    await tapers.save(taper)
    await repository.set_step(
        plan_id, number, status=PlanStepStatus.EMITTED.value, dose_step_id=step.step_id
    )
    following = await repository.next_live_step(plan_id, after=number)
    if following is not None:
        await arm_step(uow, taper, following["number"], following["effective_on"])
        return
    # The last step: stopped, at the maintenance target, or (a product missing) still active.
    if taper.completed:
        await repository.close(plan_id, PlanStatus.COMPLETED)
    elif plan_row["summary"].get("maintenance_mg", plan_row["input"].get("maintenance_mg")):
        # The approval authorised ending at the plan's maintenance target.
        taper.end_at_maintenance(approval, at=uow.clock.now())
        await tapers.save(taper)
        await repository.close(plan_id, PlanStatus.MAINTENANCE)


def take_step(
    taper: model.PatientTaper,
    step_row: dict[str, Any],
    decision: model.ClinicianDecision,
    summary: dict[str, Any],
    *,
    today: date,
) -> model.DoseStep:
    """Schedule a plan step on the taper, checked by the taper's rules with the plan's bound."""
    drug = taper.drug
    equivalence = summary["equivalence"]
    return taper.change(
        regimen_from(step_row["administrations"]),
        model.ChangeKind(step_row["kind"]),
        step_row["effective_on"],
        decision,
        today=today,
        bounds=summary_bounds(summary),
        final_step_at_or_below_mg=final_step_threshold_mg(
            drug, Decimal(equivalence[drug]) if drug in equivalence else None
        ),
        crossover_max_rise_fraction=planning_defaults_v1().crossover_max_rounding_up_fraction,
    )


async def arm_step(
    uow: UnitOfWork, taper: model.PatientTaper, number: int, on: date, *, rearm: bool = False
) -> None:
    """The plan's step ``number`` is next: scheduled, its timer due at the patient's first dose
    of ``on``. A re-armed step gets a fresh timer key (its first timer has fired)."""
    await PlanRepository(uow).set_step(taper.plan_id, number, status=PlanStepStatus.SCHEDULED.value)
    key = f"{taper.plan_id}:{number}"
    await uow.schedule_timer(
        EMIT_PLAN_STEP,
        key=f"{key}:{uuid.uuid4().hex[:12]}" if rearm else key,
        due_at=taper.step_due_at(on),
        payload={"patient_id": str(taper.patient_id)},
    )
