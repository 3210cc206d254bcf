"""Persisted taper plans (issue 3): draft → clinician approval → active → completed/maintenance.

* ``create_plan`` stores the planner's result as a DRAFT with all its steps: nothing is scheduled
  and nothing is announced.
* ``approve_plan`` records the clinician's ``approve`` decision, creates the patient's taper at the
  plan's starting dose (or takes over a started taper with no step yet at that dose), marks the
  plan ``active`` and arms the FIRST step's durable timer (``step_timer.arm_step``).
* The step timer (``step_timer.emit_plan_step``) turns the due step into a taper step authorised
  by the approval (``step_timer.take_step``), applies it (the taper records ``DoseReduced``, and
  ``TaperCompleted`` at zero) and arms the NEXT step's timer in the same transaction. A held
  taper blocks the due step and the chain stops there; a clinician's resume moves the blocked and
  later steps by the length of the hold and arms the blocked step again
  (``replanning.after_resume``).
* A crossover plan's stages are taper steps too (``model.ChangeKind.CROSSOVER``): the taper holds
  the whole day's doses and the equivalence the plan used, so the rate bound compares
  diazepam-equivalents across the switch.
* ``replanning.adjust_plan`` re-plans the rest of an active plan; ``replanning.after_resume``
  moves it past a hold (or, after a return to the prior dose, proposes the rest anew, approved
  here like a draft).
* ``cancel_plan`` discards a draft (an active plan is adjusted or ended, never silently dropped).
* ``start_manual_plan``: a reduction a clinician scheduled by hand is a one-step plan of kind
  manual, so every dose step goes through the same timer (one door to ``DoseReduced``).
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import date, time
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.codecs import regimen_from
from services.scheduler.adapters.plan_repository import PlanRecord, PlanRepository
from services.scheduler.adapters.repository import DecisionLog, TaperRepository
from services.scheduler.adapters.stored_plan import (
    summary_equivalence,
)
from services.scheduler.domain import model
from services.scheduler.domain.plan_states import (
    LIVE_STEP,
    PlanStatus,
    PlanStepStatus,
    check_plan_move,
)
from services.scheduler.domain.planning import (
    TaperPlan,
    equivalence_v1,
)
from services.scheduler.service_layer.errors import (
    PlanNotFound,
    RuleRefused,
    TaperConflict,
    TaperNotFound,
    translate,
)
from services.scheduler.service_layer.step_timer import arm_plan_step, arm_step, take_step

__all__ = ["PlanRecord"]  # re-exported: the entrypoints read plans as records


@dataclass(frozen=True)
class CreatePlan:
    patient_id: uuid.UUID
    clinician: str
    input: dict[str, Any]  # the preview body as JSON (stored as given)
    result: TaperPlan


@dataclass(frozen=True)
class ApprovePlan:
    patient_id: uuid.UUID
    plan_id: uuid.UUID
    clinician: str
    reason_code: str
    version: int | None = None  # the version the clinician reviewed; None: not checked


@dataclass(frozen=True)
class CancelPlan:
    patient_id: uuid.UUID
    plan_id: uuid.UUID
    clinician: str
    reason_code: str


async def create_plan(cmd: CreatePlan, uow: UnitOfWork) -> PlanRecord:
    """Store the plan as a draft with all its steps (nothing scheduled, nothing announced)."""
    plan_id = await PlanRepository(uow).add_draft(
        cmd.patient_id, cmd.clinician, cmd.input, cmd.result
    )
    return await get_plan(uow, cmd.patient_id, plan_id)


async def get_plan(uow: UnitOfWork, patient_id: uuid.UUID, plan_id: uuid.UUID) -> PlanRecord:
    record = await PlanRepository(uow).get(patient_id, plan_id)
    if record is None:
        raise PlanNotFound()
    return record


async def require_taper(uow: UnitOfWork, patient_id: uuid.UUID) -> model.PatientTaper:
    taper = await TaperRepository.of(uow).get(patient_id)
    if taper is None:
        raise TaperNotFound()
    return taper


async def approve_plan(cmd: ApprovePlan, uow: UnitOfWork) -> PlanRecord:
    record = await get_plan(uow, cmd.patient_id, cmd.plan_id)
    row = record.row
    if cmd.version is not None and cmd.version != row["version"]:
        raise TaperConflict("the plan changed since it was read: review it again")
    if row["status"] == PlanStatus.ACTIVE and any(
        s["status"] == PlanStepStatus.PROPOSED for s in record.steps
    ):
        return await _approve_proposal(cmd, record, uow)
    if row["status"] != PlanStatus.DRAFT:
        raise TaperConflict(
            "only a draft plan, or an active plan's proposed steps, can be approved"
        )
    if not record.steps:
        raise TaperConflict("the plan has no step to schedule")
    summary = row["summary"]
    drug = summary["drug"]
    today = uow.clock.now().date()
    first = record.steps[0]
    if first["effective_on"] < today:
        raise RuleRefused("start_on", "the plan starts in the past: plan again")
    baseline = regimen_from(summary["baseline"])
    start_dose = model.daily_mg(baseline, drug)
    known = equivalence_v1().get(drug)
    if known is None:  # validated when planned; the table changed since
        raise RuleRefused("drug", "not in the equivalence table")

    decision = model.ClinicianDecision.new(
        model.DecisionKind.APPROVE, cmd.clinician, cmd.reason_code
    )
    try:
        decision.check(model.DecisionKind.APPROVE)
    except model.TaperError as exc:
        raise translate(exc) from None
    await DecisionLog(uow).record(
        cmd.patient_id,
        decision,
        {
            "plan_id": str(cmd.plan_id),
            "strategy": row["strategy"],
            "steps": len(record.steps),
            "start_daily_dose_mg": str(start_dose),
            "reference_versions": row["reference_versions"],
            "bound_version": summary["bound"]["version"],
            "bound_override": row["input"].get("bound_override"),
            "equivalence_override": row["input"].get("equivalence_override"),
        },
    )
    tapers = TaperRepository.of(uow)
    existing = await tapers.get(cmd.patient_id)
    try:
        if existing is None:
            taper = model.PatientTaper.start(
                patient_id=cmd.patient_id,
                drug=drug,
                half_life_class=known.half_life_class,
                current_daily_dose_mg=start_dose,
                decision=decision,
                plan_id=cmd.plan_id,
                regimen=baseline,
                equivalence=summary_equivalence(summary),
            )
        else:
            # Before the first step, or after the taper ended at a maintenance dose.
            taper = existing
            taper.adopt_plan(cmd.plan_id, decision, baseline)
            taper.equivalence = summary_equivalence(summary)
        dry_run(taper, record.steps, summary, today)
        check_plan_move(row["status"], PlanStatus.ACTIVE)
    except model.TaperError as exc:
        raise translate(exc) from None
    taper.timezone, taper.first_dose_time = patient_day(row["input"], taper)
    if existing is None:
        try:
            await tapers.add(taper)
        except IntegrityError:  # another plan for this new patient was approved concurrently
            raise TaperConflict("another plan was approved for this patient") from None
    else:
        await tapers.save(taper)

    await _approved(uow, taper, cmd.plan_id, row["version"], decision, proposal=False)
    return await get_plan(uow, cmd.patient_id, cmd.plan_id)


async def _approve_proposal(cmd: ApprovePlan, record: PlanRecord, uow: UnitOfWork) -> PlanRecord:
    """Approve the steps the scheduler proposed for an active plan: the decision records them
    (number, day, doses), they become the plan's live steps and the first one is armed. The steps
    emitted from now on name this approval (the plan row's ``approved_by_decision_id``); the earlier
    approval stays in the decision history and in the steps it authorised."""
    proposed = [s for s in record.steps if s["status"] == PlanStepStatus.PROPOSED]
    today = uow.clock.now().date()
    if proposed[0]["effective_on"] < today:
        raise RuleRefused("start_on", "the proposed steps start in the past: adjust the plan")
    taper = await require_taper(uow, cmd.patient_id)
    if taper.plan_id != cmd.plan_id:
        raise TaperConflict("the plan is not the taper's")  # pragma: no cover - one active plan
    decision = model.ClinicianDecision.new(
        model.DecisionKind.APPROVE, cmd.clinician, cmd.reason_code
    )
    try:
        decision.check(model.DecisionKind.APPROVE)
        live = [{**s, "status": PlanStepStatus.PLANNED} for s in proposed]
        dry_run(taper, live, record.row["summary"], today)
    except model.TaperError as exc:
        raise translate(exc) from None
    await DecisionLog(uow).record(
        cmd.patient_id,
        decision,
        {
            "plan_id": str(cmd.plan_id),
            "approves": "proposed_steps",
            "steps": [
                {
                    "number": s["number"],
                    "effective_on": s["effective_on"].isoformat(),
                    "kind": s["kind"],
                    "administrations": s["administrations"],
                }
                for s in proposed
            ],
        },
    )
    await _approved(uow, taper, cmd.plan_id, record.row["version"], decision, proposal=True)
    return await get_plan(uow, cmd.patient_id, cmd.plan_id)


async def _approved(
    uow: UnitOfWork,
    taper: model.PatientTaper,
    plan_id: uuid.UUID,
    read_version: int,
    decision: model.ClinicianDecision,
    *,
    proposal: bool,
) -> None:
    """The plan (a draft, or an active plan's proposed steps) is approved by ``decision`` if it
    is still at ``read_version``; its first live step is armed."""
    plans = PlanRepository(uow)
    plan = await plans.load(plan_id)
    if plan is None:
        raise PlanNotFound()  # pragma: no cover - read in this transaction
    try:
        if proposal:
            first = plan.approve_proposal(decision.decision_id, uow.clock.now())[0]
        else:
            plan.approve(decision.decision_id, uow.clock.now())
            first = plan.steps[0]  # a draft has steps (checked before)
    except model.TaperError as exc:
        raise translate(exc) from None
    if not await plans.save(plan, read_version=read_version):
        raise TaperConflict("the plan changed concurrently")
    await arm_plan_step(uow, taper, plan, first.number, first.effective_on)
    await plans.save(plan)


def patient_day(
    stored_input: dict[str, Any], taper: model.PatientTaper
) -> tuple[str | None, time | None]:
    """The patient's time zone and first-dose time the plan was made with; a plan without them
    (made before they were asked for) keeps what the taper has."""
    if stored_input.get("timezone") is None and stored_input.get("first_dose_time") is None:
        return taper.timezone, taper.first_dose_time
    at = stored_input.get("first_dose_time")
    return stored_input.get("timezone"), time.fromisoformat(at) if at else None


def dry_run(
    taper: model.PatientTaper,
    steps: list[dict[str, Any]],
    summary: dict[str, Any],
    today: date,
) -> None:
    """Take every step on a copy of the taper, with its real history: the domain's rules refuse
    a plan (``TaperError``) before anything is scheduled, never when a step comes due."""
    trial = copy.deepcopy(taper)
    trial.held = False
    approval = model.ClinicianDecision(
        uuid.uuid4(), "dry-run", model.DecisionKind.APPROVE, "dry_run"
    )
    for s in steps:
        if s["status"] not in LIVE_STEP:
            continue
        step = take_step(trial, s, approval, summary, today=today)
        trial.apply(step.step_id)  # no moment given: the trial announces nothing


async def start_manual_plan(
    uow: UnitOfWork,
    taper: model.PatientTaper,
    step: model.DoseStep,
    decision: model.ClinicianDecision,
    reference_versions: dict[str, str],
) -> uuid.UUID:
    """A reduction a clinician scheduled by hand (``taper_commands.schedule_reduction``) is a
    one-step plan of kind manual, active and approved by their ``reduce`` decision: its step is
    armed like any plan's (``step_timer.arm_step``), taken by ``step_timer.emit_plan_step``, and
    re-armed after a hold (``replanning.after_resume``). It is never listed or read as a plan,
    and the taper's ``plan_id`` (which its events name) does not change."""
    plan_id = await PlanRepository(uow).add_manual(taper, step, decision, reference_versions)
    await arm_step(uow, taper, 1, step.effective_on, plan_id=plan_id)
    return plan_id


async def close_active_plan(uow: UnitOfWork, taper: model.PatientTaper) -> None:
    """The taper ended at maintenance: its active plan, if any, closes with it."""
    plans = PlanRepository(uow)
    plan = await plans.load(taper.plan_id)
    if plan is not None and plan.active:
        plan.close(PlanStatus.MAINTENANCE)
        await plans.save(plan)


async def cancel_plan(cmd: CancelPlan, uow: UnitOfWork) -> PlanRecord:
    """Discard a draft (recorded). An active plan is adjusted or ended at maintenance instead:
    cancelling it would leave the patient's taper without a plan or a recorded end."""
    record = await get_plan(uow, cmd.patient_id, cmd.plan_id)
    if record.row["status"] != PlanStatus.DRAFT:
        raise TaperConflict("only a draft plan can be cancelled: adjust or end an active plan")
    decision = model.ClinicianDecision.new(
        model.DecisionKind.CANCEL, cmd.clinician, cmd.reason_code
    )
    try:
        decision.check(model.DecisionKind.CANCEL)
        check_plan_move(record.row["status"], PlanStatus.CANCELLED)
    except model.TaperError as exc:
        raise translate(exc) from None
    await DecisionLog(uow).record(cmd.patient_id, decision, {"plan_id": str(cmd.plan_id)})
    plans = PlanRepository(uow)
    plan = await plans.load(cmd.plan_id)
    assert plan is not None  # read in this transaction
    try:
        plan.close(PlanStatus.CANCELLED)
    except model.TaperError as exc:
        raise translate(exc) from None
    if not await plans.save(plan, read_version=record.row["version"]):
        raise TaperConflict("the plan changed concurrently")
    return await get_plan(uow, cmd.patient_id, cmd.plan_id)
