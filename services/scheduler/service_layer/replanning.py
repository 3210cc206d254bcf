"""Re-planning the rest of an active plan from the dose the patient takes now.

* ``adjust_plan``: a clinician's adjustment (slower pace, new products on file, another
  maintenance target): the remaining steps are cancelled, the new ones appended, every one checked
  against the taper's real history first, and the first one armed.
* ``after_resume``: the taper was resumed. The blocked step and later ones move by the length of
  the hold and the blocked one is armed again; after a return to the prior dose the rest is
  re-planned from that dose as PROPOSED steps: nothing is armed until a clinician approves them
  (``plans.approve_plan`` on the active plan).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.codecs import regimen_from, regimen_json
from services.scheduler.adapters.plan_repository import PlanRecord, PlanRepository
from services.scheduler.adapters.repository import DecisionLog, TaperRepository
from services.scheduler.adapters.stored_plan import summary_interval_weeks, summary_json
from services.scheduler.domain import model
from services.scheduler.domain.plan import Plan
from services.scheduler.domain.plan_states import PlanStatus, PlanStepStatus
from services.scheduler.domain.planning import (
    BoundOverride,
    EquivalenceOverride,
    History,
    PacePreference,
    PlanningError,
    PlanningInput,
    Strategy,
    plan,
)
from services.scheduler.service_layer.errors import RuleRefused, TaperConflict, translate
from services.scheduler.service_layer.plans import dry_run, get_plan, require_taper
from services.scheduler.service_layer.step_timer import arm_plan_step, arm_step, followed_plan


@dataclass(frozen=True)
class AdjustPlan:
    """Re-plan the rest of an active plan; each field left None keeps the plan's value."""

    patient_id: uuid.UUID
    plan_id: uuid.UUID
    clinician: str
    reason_code: str
    pace: PacePreference | None = None
    strategy: Strategy | None = None
    maintenance_mg: Decimal | None = None
    formulations: tuple[str, ...] | None = None
    start_on: date | None = None


async def after_resume(uow: UnitOfWork, taper: model.PatientTaper) -> None:
    """The taper was resumed: an active plan goes on.

    If the patient still takes the day the plan's next step was planned from, the blocked step
    and every later one move by the time the hold lasted (the first now falls on the resume date,
    the spacing is kept). After a return to the prior dose they no longer do: the rest of the plan
    is re-planned from the current dose at the slower pace, its first step one (former) pace
    interval after the resume, and only proposed: a clinician approves it (or adjusts the plan)
    before any of it is armed.
    """
    plans = PlanRepository(uow)
    followed = await followed_plan(uow, taper)
    if followed is None:
        return
    plan_id, manual = followed
    plan = await plans.load(plan_id)
    following = plan.next_live_step() if plan is not None else None
    if plan is None or following is None:
        return
    if manual:
        await _resume_manual(uow, taper, plan)
        return
    planned_from = regimen_from(following.planned_from) if following.planned_from else None
    if planned_from is not None and _totals(planned_from) != _totals(taper.current_regimen):
        record = await get_plan(uow, taper.patient_id, taper.plan_id)
        interval = summary_interval_weeks(record.row["summary"])
        start_on = uow.clock.now().date() + timedelta(weeks=interval)
        # ASAM 2025: "if paused, resume more slowly" (clinical-reference §2, going back up).
        # Only PROPOSED: nobody approved these doses yet (the resume decision lifts the hold, it
        # does not see the new steps). Nothing is armed until a clinician approves them
        # (``approve_plan`` on the active plan), so no dose changes without a recorded decision.
        await _replan(uow, taper, record, {"pace": "slower"}, start_on, None)
        return
    if following.status is not PlanStepStatus.BLOCKED_BY_HOLD:
        return  # its timer is armed and will find the taper running
    today = uow.clock.now().date()
    shift = max(today - following.effective_on, timedelta(0))
    plan.resume_from(following.number, shift)
    await arm_plan_step(uow, taper, plan, following.number, following.effective_on, rearm=True)
    await plans.save(plan)


async def _resume_manual(uow: UnitOfWork, taper: model.PatientTaper, plan: Plan) -> None:
    """A reduction scheduled by hand, blocked by the hold, is due again: moved by the time the
    hold lasted and armed again like a plan's step. It has no planning input, so nothing is
    re-planned: planned from a dose the patient no longer takes (a return to the prior dose) or
    otherwise not takeable, its plan closes and the step stays blocked, as a taper without a
    plan has it (the clinician schedules the next step)."""
    following = plan.next_live_step()
    assert following is not None
    if following.status is not PlanStepStatus.BLOCKED_BY_HOLD:
        return  # its timer is armed and will find the taper running
    on = max(uow.clock.now().date(), following.effective_on)
    plans = PlanRepository(uow)
    try:
        taper.reschedule(following.dose_step_id, on)  # type: ignore[arg-type]
    except model.TaperError:
        plan.close(PlanStatus.CANCELLED)
        await plans.save(plan)
        return
    await TaperRepository.of(uow).save_steps(taper)
    plan.reschedule(following.number, on)
    await arm_plan_step(uow, taper, plan, following.number, on, rearm=True)
    await plans.save(plan)


def _totals(regimen: model.Regimen) -> dict[str, Decimal]:
    return {d: model.daily_mg(regimen, d) for d in model.drugs_taken(regimen)}


async def adjust_plan(cmd: AdjustPlan, uow: UnitOfWork) -> PlanRecord:
    """Slow down, change products, or set a maintenance target: recorded as an ``adjust``
    decision; the steps not yet taken are cancelled and the re-planned ones appended."""
    record = await get_plan(uow, cmd.patient_id, cmd.plan_id)
    if record.row["status"] != PlanStatus.ACTIVE:
        raise TaperConflict("only an active plan can be adjusted")
    taper = await require_taper(uow, cmd.patient_id)
    if taper.plan_id != cmd.plan_id:
        raise TaperConflict("the active plan is not the taper's")  # pragma: no cover
    if cmd.strategy is Strategy.CROSSOVER_THEN_PROPORTIONAL and not taper.drug_is_original:
        raise RuleRefused("strategy", "the crossover has already begun")
    today = uow.clock.now().date()
    start_on = cmd.start_on or _earliest_next_step(taper, record, today)
    if start_on < today:
        raise RuleRefused("start_on", "must be today or later")
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "pace": cmd.pace.value if cmd.pace else None,
            "strategy": cmd.strategy.value if cmd.strategy else None,
            "maintenance_mg": str(cmd.maintenance_mg) if cmd.maintenance_mg is not None else None,
            "formulations": list(cmd.formulations) if cmd.formulations else None,
        }.items()
        if v is not None
    }
    decision = model.ClinicianDecision.new(
        model.DecisionKind.ADJUST, cmd.clinician, cmd.reason_code
    )
    try:
        decision.check(model.DecisionKind.ADJUST)
        taper.cancel_pending(decision)
    except model.TaperError as exc:
        raise translate(exc) from None
    await _replan(uow, taper, record, changes, start_on, decision)
    return await get_plan(uow, cmd.patient_id, cmd.plan_id)


def _earliest_next_step(taper: model.PatientTaper, record: PlanRecord, today: date) -> date:
    """One pace interval after the last step taken, not before today."""
    last = taper.last_applied
    weeks = summary_interval_weeks(record.row["summary"])
    return max(today, last.effective_on + timedelta(weeks=weeks)) if last else today


async def _replan(
    uow: UnitOfWork,
    taper: model.PatientTaper,
    record: PlanRecord,
    changes: dict[str, Any],
    start_on: date,
    decision: model.ClinicianDecision | None,
) -> None:
    """Replace the plan's steps not yet taken by a plan from the current day's doses.

    With the clinician's ``decision`` (an adjustment they asked for) the new steps are armed; with
    none (a re-plan the system made on resume) they are only ``proposed``: not live, no timer,
    until a clinician approves them (``approve_plan``)."""
    if len(model.drugs_taken(taper.current_regimen)) != 1:
        raise TaperConflict("the crossover is under way: hold the taper or let it finish")
    stored = {**record.row["input"], **changes}
    inp = _input_from(stored, taper, start_on)
    strategy = Strategy(stored.get("strategy") or record.row["strategy"])
    if strategy is Strategy.CROSSOVER_THEN_PROPORTIONAL and not taper.drug_is_original:
        strategy = Strategy.PROPORTIONAL  # the crossover is done: go on reducing diazepam
    try:
        result = plan(inp, strategy)
    except PlanningError as exc:
        raise RuleRefused(exc.field, exc.problem) from None
    summary = {**summary_json(result), "maintenance_mg": stored.get("maintenance_mg")}
    first = (max((s["number"] for s in record.steps), default=0)) + 1
    new_steps = [
        {
            "number": first + i,
            "effective_on": st.effective_on,
            "kind": st.kind.value,
            "administrations": regimen_json(st.administrations),
            # as live for the dry run; stored as proposed without a decision
            "status": PlanStepStatus.PLANNED,
        }
        for i, st in enumerate(result.steps)
    ]
    try:
        dry_run(replace(taper, steps=list(taper.steps)), new_steps, summary, uow.clock.now().date())
    except model.TaperError as exc:
        raise translate(exc) from None
    if decision is not None:
        await DecisionLog(uow).record(
            taper.patient_id,
            decision,
            {
                "plan_id": str(taper.plan_id),
                "changes": changes,
                "start_on": start_on.isoformat(),
                "replaces_from_step": first,
                "steps": len(result.steps),
                # What the clinician authorised, step by step (the steps name this decision).
                "new_steps": [
                    {
                        "number": first + i,
                        "effective_on": st.effective_on.isoformat(),
                        "kind": st.kind.value,
                        "administrations": regimen_json(st.administrations),
                    }
                    for i, st in enumerate(result.steps)
                ],
                "previous_summary": record.row["summary"],
            },
        )
    plans = PlanRepository(uow)
    stored_plan = await plans.load(taper.plan_id)
    assert stored_plan is not None  # read in this transaction
    stored_plan.cancel_live_steps()
    await plans.save(stored_plan)
    await plans.add_steps(
        taper.plan_id,
        result,
        first_number=first,
        status=PlanStepStatus.PLANNED if decision is not None else PlanStepStatus.PROPOSED,
    )
    replanned = await plans.update(
        taper.plan_id,
        record.row["version"],
        input=stored,
        strategy=strategy.value,
        summary=summary,
        reference_versions=dict(result.reference_versions),
        # The steps from now on are authorised by the clinician's adjustment (a proposal
        # keeps the approval in force until a clinician approves it).
        **(
            {"approved_by_decision_id": decision.decision_id, "approved_at": uow.clock.now()}
            if decision is not None
            else {}
        ),
    )
    if not replanned:
        raise TaperConflict("the plan changed concurrently")
    if result.steps and decision is not None:
        await arm_step(uow, taper, first, result.steps[0].effective_on)


def _input_from(stored: dict[str, Any], taper: model.PatientTaper, start_on: date) -> PlanningInput:
    """The stored planning input, from the day the patient takes now."""
    eo, bo = stored.get("equivalence_override"), stored.get("bound_override")
    maintenance = stored.get("maintenance_mg")
    regimen = taper.current_regimen
    return PlanningInput(
        drug=taper.drug,
        administrations_mg=tuple(a.dose_mg for a in regimen if a.drug == taper.drug),
        duration_weeks=int(stored["duration_weeks"]),
        age=int(stored["age"]),
        start_on=start_on,
        # start_on is already the date the next step is due (one interval after the last taken)
        first_step_on_start=True,
        formulations=tuple(stored["formulations"]),
        frail=bool(stored.get("frail", False)),
        history=History(**stored.get("history", {})),
        pace=PacePreference(stored.get("pace", PacePreference.STANDARD.value)),
        crossover_wanted=bool(stored.get("crossover_wanted", False)) and taper.drug_is_original,
        maintenance_mg=Decimal(maintenance) if maintenance is not None else None,
        # A per-patient equivalence applies to the original drug only (diazepam is the unit).
        equivalence_override=(
            EquivalenceOverride(
                Decimal(eo["mg_equal_to_10mg_diazepam"]),
                eo["reason_code"],
                outside_range_reason_code=eo.get("outside_range_reason_code"),
            )
            if eo and taper.drug_is_original
            else None
        ),
        equivalence_column=stored.get("equivalence_column"),
        bound_override=(
            BoundOverride(Decimal(bo["max_fraction_per_window"]), bo["reason_code"]) if bo else None
        ),
        # The clinician's recorded confirmations hold for the re-planned rest of the same plan.
        dose_above_maximum_reason_code=stored.get("dose_above_maximum_reason_code"),
    )
