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
  later steps by the length of the hold and arms the blocked step again (``after_resume``).
* A crossover plan's stages are taper steps too (``model.ChangeKind.CROSSOVER``): the taper holds
  the whole day's doses and the equivalence the plan used, so the rate bound compares
  diazepam-equivalents across the switch.
* ``adjust_plan`` re-plans the rest of an active plan from the dose the patient takes now (slower
  pace, new products on file, another maintenance target): the remaining steps are cancelled and
  the new ones appended, every one checked against the taper's real history first.
* After a return to the prior dose, a resume re-plans the rest from that dose as PROPOSED steps:
  nothing is armed until a clinician approves them (``approve_plan`` on the active plan).
* ``cancel_plan`` discards a draft (an active plan is adjusted or ended, never silently dropped).
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.chassis.pagination import PageParams
from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.codecs import regimen_from, regimen_json
from services.scheduler.adapters.plan_repository import PlanRecord, PlanRepository
from services.scheduler.adapters.repository import DecisionLog, TaperRepository
from services.scheduler.adapters.stored_plan import (
    summary_equivalence,
    summary_interval_weeks,
    summary_json,
)
from services.scheduler.domain import model, plan_view
from services.scheduler.domain.plan_states import (
    LIVE_STEP,
    PlanStatus,
    PlanStepStatus,
    check_plan_move,
)
from services.scheduler.domain.planning import (
    BoundOverride,
    EquivalenceOverride,
    History,
    PacePreference,
    PlanningError,
    PlanningInput,
    Strategy,
    TaperPlan,
    equivalence_v1,
    plan,
)
from services.scheduler.service_layer.errors import (
    PlanNotFound,
    RuleRefused,
    TaperConflict,
    TaperNotFound,
    translate,
)
from services.scheduler.service_layer.step_timer import arm_step, take_step

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


async def locked_version(uow: UnitOfWork, patient_id: uuid.UUID, plan_id: uuid.UUID) -> int | None:
    """The plan's version, its row locked until commit (PostgreSQL): the If-Match check and the
    write that follows see the same version. None: no such plan (the write answers 404)."""
    return await PlanRepository(uow).locked_version(patient_id, plan_id)


async def get_plan(uow: UnitOfWork, patient_id: uuid.UUID, plan_id: uuid.UUID) -> PlanRecord:
    record = await PlanRepository(uow).get(patient_id, plan_id)
    if record is None:
        raise PlanNotFound()
    return record


async def _require_taper(uow: UnitOfWork, patient_id: uuid.UUID) -> model.PatientTaper:
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
        _dry_run(taper, record.steps, summary, today)
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

    approved = await PlanRepository(uow).update(
        cmd.plan_id,
        row["version"],
        status=PlanStatus.ACTIVE.value,
        approved_by_decision_id=decision.decision_id,
        approved_at=uow.clock.now(),
    )
    if not approved:
        raise TaperConflict("the plan changed concurrently")
    await arm_step(uow, taper, first["number"], first["effective_on"])
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
    taper = await _require_taper(uow, cmd.patient_id)
    if taper.plan_id != cmd.plan_id:
        raise TaperConflict("the plan is not the taper's")  # pragma: no cover - one active plan
    decision = model.ClinicianDecision.new(
        model.DecisionKind.APPROVE, cmd.clinician, cmd.reason_code
    )
    try:
        decision.check(model.DecisionKind.APPROVE)
        live = [{**s, "status": PlanStepStatus.PLANNED} for s in proposed]
        _dry_run(taper, live, record.row["summary"], today)
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
    plans = PlanRepository(uow)
    approved = await plans.update(
        cmd.plan_id,
        record.row["version"],
        approved_by_decision_id=decision.decision_id,
        approved_at=uow.clock.now(),
    )
    if not approved:
        raise TaperConflict("the plan changed concurrently")
    await plans.set_steps(cmd.plan_id, PlanStepStatus.PLANNED, having=(PlanStepStatus.PROPOSED,))
    first = proposed[0]
    await arm_step(uow, taper, first["number"], first["effective_on"])
    return await get_plan(uow, cmd.patient_id, cmd.plan_id)


def patient_day(
    stored_input: dict[str, Any], taper: model.PatientTaper
) -> tuple[str | None, time | None]:
    """The patient's time zone and first-dose time the plan was made with; a plan without them
    (made before they were asked for) keeps what the taper has."""
    if stored_input.get("timezone") is None and stored_input.get("first_dose_time") is None:
        return taper.timezone, taper.first_dose_time
    at = stored_input.get("first_dose_time")
    return stored_input.get("timezone"), time.fromisoformat(at) if at else None


def _dry_run(
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


async def close_active_plan(uow: UnitOfWork, taper: model.PatientTaper) -> None:
    """The taper ended at maintenance: its active plan, if any, closes with it."""
    plans = PlanRepository(uow)
    if await plans.is_active(taper.plan_id):
        await plans.close(taper.plan_id, PlanStatus.MAINTENANCE)


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
    if not await plans.is_active(taper.plan_id):
        return
    following = await plans.next_live_step(taper.plan_id)
    if following is None:
        return
    planned_from = regimen_from(following["planned_from"]) if following["planned_from"] else None
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
    if following["status"] != PlanStepStatus.BLOCKED_BY_HOLD:
        return  # its timer is armed and will find the taper running
    today = uow.clock.now().date()
    shift = max(today - following["effective_on"], timedelta(0))
    for number, effective_on in await plans.live_steps_from(taper.plan_id, following["number"]):
        await plans.set_step(
            taper.plan_id,
            number,
            effective_on=effective_on + shift,
            status=PlanStepStatus.PLANNED.value,
        )
    await arm_step(uow, taper, following["number"], following["effective_on"] + shift, rearm=True)


def _totals(regimen: model.Regimen) -> dict[str, Decimal]:
    return {d: model.daily_mg(regimen, d) for d in model.drugs_taken(regimen)}


async def adjust_plan(cmd: AdjustPlan, uow: UnitOfWork) -> PlanRecord:
    """Slow down, change products, or set a maintenance target: recorded as an ``adjust``
    decision; the steps not yet taken are cancelled and the re-planned ones appended."""
    record = await get_plan(uow, cmd.patient_id, cmd.plan_id)
    if record.row["status"] != PlanStatus.ACTIVE:
        raise TaperConflict("only an active plan can be adjusted")
    taper = await _require_taper(uow, cmd.patient_id)
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
        _dry_run(
            replace(taper, steps=list(taper.steps)), new_steps, summary, uow.clock.now().date()
        )
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
    await plans.set_steps(
        taper.plan_id, PlanStepStatus.CANCELLED, having=(*LIVE_STEP, PlanStepStatus.PROPOSED)
    )
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
    if not await plans.update(
        cmd.plan_id, record.row["version"], status=PlanStatus.CANCELLED.value
    ):
        raise TaperConflict("the plan changed concurrently")
    await plans.set_steps(cmd.plan_id, PlanStepStatus.CANCELLED)
    return await get_plan(uow, cmd.patient_id, cmd.plan_id)


async def decision_history(
    uow: UnitOfWork,
    patient_id: uuid.UUID,
    page: PageParams,
    *,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, one page of decisions (of ``kind`` if given) taken in [since, until)."""
    return await DecisionLog(uow).page(patient_id, page, kind=kind, since=since, until=until)


# --- views: a patient's plans, a plan's schedule in force, the taper's next step ----------------
@dataclass(frozen=True)
class PlanDigest:
    """One row of a patient's plan list: the plan and its schedule in force (numbered 1..n)."""

    row: dict[str, Any]
    schedule: list[tuple[int, dict[str, Any]]]


async def list_plans(
    uow: UnitOfWork, patient_id: uuid.UUID, page: PageParams, status: str | None = None
) -> tuple[list[PlanDigest], str | None]:
    """The patient's plans, newest first, one page (chassis keyset pagination)."""
    rows, steps, cursor = await PlanRepository(uow).page(patient_id, page, status)
    return [
        PlanDigest(r, [(n, dict(s)) for n, s in plan_view.schedule(steps[r["id"]])[0]])
        for r in rows
    ], cursor


async def next_step_of(uow: UnitOfWork, taper: model.PatientTaper) -> plan_view.NextStep:
    """The taper's next step and what stands in its way (``domain.plan_view.next_step``)."""
    plans = PlanRepository(uow)
    plan_status = await plans.status_of(taper.plan_id)
    in_force: list[tuple[int, Any, model.Regimen]] = []
    if plan_status == PlanStatus.ACTIVE:
        kept, _ = plan_view.schedule(await plans.steps(taper.plan_id))
        in_force = [(n, s, regimen_from(s["administrations"])) for n, s in kept]
    return plan_view.next_step(taper, plan_status, in_force)
