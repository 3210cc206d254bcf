"""The dose-step timer: a plan step's day has come, so the taper takes it unless it is held.

The one door to ``DoseReduced``: ``emit_plan_step`` takes an approved plan's due step
(``take_step``) and arms the next one (``arm_step``) in the same transaction. A reduction a
clinician scheduled by hand is a one-step plan of kind manual (``plans.start_manual_plan``): its
step was taken onto the taper, checked, when the clinician decided, so here the taper applies it
and the plan closes COMPLETED. Either way the taper records ``DoseReduced`` (and
``TaperCompleted`` at zero), which the unit of work writes to the outbox on commit. Firing a
timer again changes nothing: only a ``scheduled`` step is taken. A held taper blocks the due step;
a clinician's resume arms it again (``replanning.after_resume``).
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
from services.scheduler.domain.plan import Plan
from services.scheduler.domain.plan_states import PlanStatus, PlanStepStatus
from services.scheduler.domain.planning import final_step_threshold_mg, planning_defaults_v1
from services.scheduler.service_layer.errors import InconsistentStep

EMIT_PLAN_STEP = "emit_plan_step"
# The single-step timer kind of older versions: revision 0007 turned each pending one into a
# manual plan's ``emit_plan_step`` timer; nothing arms or handles it any more.
EMIT_DOSE_STEP = "emit_dose_step"


async def followed_plan(
    uow: UnitOfWork, taper: model.PatientTaper
) -> tuple[uuid.UUID, bool] | None:
    """The active plan the taper's next step comes from, and whether it is a manual one: the
    taper's approved plan, else a reduction scheduled by hand (None: neither)."""
    plans = PlanRepository(uow)
    if await plans.is_active(taper.plan_id):
        return taper.plan_id, False
    manual = await plans.active_manual(taper.patient_id)
    return (manual, True) if manual is not None else None


async def drop_manual_plan(uow: UnitOfWork, patient_id: uuid.UUID) -> None:
    """The taper's step scheduled by hand was cancelled (a return to the prior dose, an end at
    maintenance): its manual plan closes, its timer is cancelled."""
    plans = PlanRepository(uow)
    manual = await plans.active_manual(patient_id)
    if manual is not None:
        plan = await plans.load(manual)
        assert plan is not None
        plan.close(PlanStatus.CANCELLED)
        await plans.save(plan)
        await uow.cancel_timer(EMIT_PLAN_STEP, f"{manual}:1")


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
    """An approved plan's step is due: take it and arm the next (or end the plan). A manual
    plan's one step was taken onto the taper when the clinician scheduled it: it is applied and
    the plan closes COMPLETED."""
    plan_id, number = _parse_key(timer.key)
    repository = PlanRepository(uow)
    plan = await repository.load(plan_id)
    step = plan.step(number) if plan is not None else None
    if plan is None or step is None:
        raise InconsistentStep("plan step not found")
    if step.status is not PlanStepStatus.SCHEDULED:
        return  # already emitted, blocked or cancelled: firing again changes nothing
    if not plan.active:
        return
    tapers = TaperRepository.of(uow)
    taper = await tapers.get(plan.patient_id)
    # A manual plan is not the taper's plan (``taper.plan_id``, which its events name, stays).
    if taper is None or (taper.plan_id != plan_id and not plan.manual):
        raise InconsistentStep("plan step has no matching taper")
    if taper.held:  # the chain stops here until a clinician resumes
        plan.block(number)
        await repository.save(plan)
        if plan.manual:  # the taper shows its scheduled step blocked
            try:
                taper.block(step.dose_step_id)  # type: ignore[arg-type]
            except model.TaperError as exc:
                raise InconsistentStep(str(exc)) from None
            await tapers.save_steps(taper)
        return
    assert plan.approved_by_decision_id is not None  # an active plan was approved
    approval = await DecisionLog(uow).get(plan.approved_by_decision_id)
    if plan.manual:
        # The step the clinician scheduled by hand, checked by the taper's rules then.
        assert step.dose_step_id is not None
        step_id: uuid.UUID = step.dose_step_id
    else:
        try:
            step_id = take_step(
                taper,
                step.as_row(),
                approval,
                plan.summary,
                # Validated against the clock at approval; a timer fired late (downtime) still
                # gives the step its planned date.
                today=min(uow.clock.now().date(), step.effective_on),
            ).step_id
        except model.TaperError as exc:
            raise InconsistentStep(str(exc)) from None
    _apply(taper, step_id, uow)
    await tapers.save(taper)
    plan.emitted(number, step_id)
    if plan.manual:  # its one step is taken: the next reduction may be scheduled
        plan.close(PlanStatus.COMPLETED)
    elif (following := plan.next_live_step(after=number)) is not None:
        await arm_plan_step(uow, taper, plan, following.number, following.effective_on)
    # The last step: stopped, at the maintenance target, or (a product missing) still active.
    elif taper.completed:
        plan.close(PlanStatus.COMPLETED)
    elif plan.summary.get("maintenance_mg", plan.input.get("maintenance_mg")):
        # The approval authorised ending at the plan's maintenance target.
        taper.end_at_maintenance(approval, at=uow.clock.now())
        await tapers.save(taper)
        plan.close(PlanStatus.MAINTENANCE)
    await repository.save(plan)


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
    uow: UnitOfWork,
    taper: model.PatientTaper,
    number: int,
    on: date,
    *,
    rearm: bool = False,
    plan_id: uuid.UUID | None = None,
) -> None:
    """The plan's step ``number`` is next: scheduled, its timer due at the patient's first dose
    of ``on``. A re-armed step gets a fresh timer key (its first timer has fired). The plan is
    the taper's unless ``plan_id`` names another (a manual plan)."""
    plans = PlanRepository(uow)
    plan = await plans.load(plan_id or taper.plan_id)
    if plan is None:
        raise InconsistentStep("plan not found")
    await arm_plan_step(uow, taper, plan, number, on, rearm=rearm)
    await plans.save(plan)


async def arm_plan_step(
    uow: UnitOfWork,
    taper: model.PatientTaper,
    plan: Plan,
    number: int,
    on: date,
    *,
    rearm: bool = False,
) -> None:
    """``arm_step`` on a loaded plan (the caller saves it)."""
    plan.arm(number)
    key = f"{plan.plan_id}:{number}"
    await uow.schedule_timer(
        EMIT_PLAN_STEP,
        key=f"{key}:{uuid.uuid4().hex[:12]}" if rearm else key,
        due_at=taper.step_due_at(on),
        payload={"patient_id": str(taper.patient_id)},
    )
