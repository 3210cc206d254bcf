"""Persisted taper plans (issue 3): draft → clinician approval → active → completed/maintenance.

* ``create_plan`` stores the planner's result as a DRAFT with all its steps: nothing is scheduled
  and nothing is announced.
* ``approve_plan`` records the clinician's ``approve`` decision, creates the patient's taper at the
  plan's starting dose (or takes over a started taper with no step yet at that dose), marks the
  plan ``active`` and arms the FIRST step's durable timer (``emit_plan_step``).
* ``emit_plan_step`` (the timer) turns the step into a taper step authorised by the approval
  decision and emits it through the same code path as a single step (``handlers.emit_step``:
  ``DoseReduced``, and ``TaperCompleted`` at zero), then arms the NEXT step's timer in the same
  transaction. A held taper blocks the due step and the chain stops there; a clinician's resume
  moves the blocked and later steps by the length of the hold and arms the blocked step again
  (``resume_taper`` below).
* Firing a timer again changes nothing: only a ``scheduled`` plan step is emitted.
* A crossover plan's stages are taper steps too (``model.ChangeKind.CROSSOVER``): the taper holds
  the whole day's doses and the equivalence the plan used, so the rate bound compares
  diazepam-equivalents across the switch.
* ``adjust_plan`` re-plans the rest of an active plan from the dose the patient takes now (slower
  pace, new products on file, another maintenance target): the remaining steps are cancelled and
  the new ones appended, every one checked against the taper's real history first.
* ``resume_taper`` lifts a hold; the blocked step and later ones move by the length of the hold,
  or, after a return to the prior dose, the rest is re-planned from that dose as PROPOSED steps:
  nothing is armed until a clinician approves them (``approve_plan`` on the active plan).
* ``end_at_maintenance`` ends the taper at the current dose and closes the plan; ``cancel_plan``
  discards a draft (an active plan is adjusted or ended, never silently dropped).
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from contracts import EscalationResolved, TaperCompleted
from services.chassis.errors import NotFound
from services.chassis.pagination import PageParams, fetch_page, within
from services.chassis.timers import DueTimer
from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.orm import clinician_decisions, plan_steps, plans
from services.scheduler.domain import model, plan_view
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
    planning_defaults_v1,
)
from services.scheduler.domain.reference import TaperBounds
from services.scheduler.service_layer import handlers
from services.scheduler.service_layer.handlers import (
    EMIT_PLAN_STEP,
    ClinicianAction,
    InconsistentStep,
    RuleRefused,
    TaperConflict,
    regimen_from,
    regimen_json,
)

LIVE_PLAN_STEP = ("planned", "scheduled", "blocked_by_hold")
# A re-plan no clinician has approved yet (after a return to the prior dose and a resume): not
# live, never armed, until ``approve_plan`` records the approval of exactly these steps.
PROPOSED = "proposed"


class PlanNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no such plan for this patient")


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
class PlanRecord:
    row: dict[str, Any]
    steps: list[dict[str, Any]]


def _summary(p: TaperPlan) -> dict[str, Any]:
    return {
        "drug": p.drug,
        "final_drug": p.final_drug,
        "complete": p.complete,
        "risk": {
            "category": p.risk.category.value,
            "reasons": list(p.risk.reasons),
            "short_use": p.risk.short_use,
        },
        "pace": {
            "code": p.pace.code,
            "step_fraction": str(p.pace.step_fraction),
            "interval_weeks": p.pace.interval_weeks,
        },
        "bound": {
            "version": p.bound.version,
            "source": p.bound.source,
            "max_fraction_per_window": str(p.bound.max_fraction_per_step),
            "window_days": p.bound.window_days,
        },
        "baseline": [{"drug": a.drug, "dose_mg": str(a.dose_mg)} for a in p.baseline],
        "formulation_needs": [
            {
                "kind": n.kind.value,
                "drug": n.drug,
                "at_dose_mg": str(n.at_dose_mg),
                "needed_unit_mg": str(n.needed_unit_mg),
                "reason_code": n.reason_code,
                "after_step": n.after_step,
            }
            for n in p.formulation_needs
        ],
        "ends_at_mg": str(p.ends_at),
        "equivalence": {d: str(mg) for d, mg in p.equivalence},
        "notes": list(p.notes),
    }


async def create_plan(cmd: CreatePlan, uow: UnitOfWork) -> PlanRecord:
    """Store the plan as a draft with all its steps (nothing scheduled, nothing announced)."""
    plan_id = uuid.uuid4()
    p = cmd.result
    await uow.session.execute(
        sa.insert(plans).values(
            id=plan_id,
            patient_id=cmd.patient_id,
            status="draft",
            input=cmd.input,
            strategy=p.strategy.value,
            reference_versions=dict(p.reference_versions),
            summary=_summary(p),
            created_by=cmd.clinician,
            created_at=uow.clock.now(),
            approved_by_decision_id=None,
            approved_at=None,
            version=1,
        )
    )
    await _insert_steps(uow, plan_id, p, first_number=1)
    return await get_plan(uow, cmd.patient_id, plan_id)


async def _insert_steps(
    uow: UnitOfWork, plan_id: uuid.UUID, p: TaperPlan, first_number: int, status: str = "planned"
) -> None:
    previous = p.baseline
    for offset, s in enumerate(p.steps):
        await uow.session.execute(
            sa.insert(plan_steps).values(
                plan_id=plan_id,
                number=first_number + offset,
                effective_on=s.effective_on,
                daily_dose_mg=s.daily_dose_mg,
                diazepam_eq_mg=s.diazepam_eq_mg,
                administrations=regimen_json(s.administrations),
                kind=s.kind.value,
                hold_weeks=s.hold_weeks,
                status=status,
                dose_step_id=None,
                planned_from=regimen_json(previous),
            )
        )
        previous = s.administrations


async def locked_version(uow: UnitOfWork, patient_id: uuid.UUID, plan_id: uuid.UUID) -> int | None:
    """The plan's version, its row locked until commit (PostgreSQL): the If-Match check and the
    write that follows see the same version. None: no such plan (the write answers 404)."""
    return await uow.session.scalar(
        sa.select(plans.c.version)
        .where(plans.c.id == plan_id, plans.c.patient_id == patient_id)
        .with_for_update()
    )


async def get_plan(uow: UnitOfWork, patient_id: uuid.UUID, plan_id: uuid.UUID) -> PlanRecord:
    row = (
        (
            await uow.session.execute(
                sa.select(plans).where(plans.c.id == plan_id, plans.c.patient_id == patient_id)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise PlanNotFound()
    steps = await uow.session.execute(
        sa.select(plan_steps).where(plan_steps.c.plan_id == plan_id).order_by(plan_steps.c.number)
    )
    return PlanRecord(dict(row), [dict(s) for s in steps.mappings()])


def _bounds(summary: dict[str, Any]) -> TaperBounds:
    b = summary["bound"]
    return TaperBounds(
        version=b["version"],
        source=b["source"],
        max_fraction_per_step=Decimal(b["max_fraction_per_window"]),
        window_days=int(b["window_days"]),
    )


def _equivalence(summary: dict[str, Any]) -> dict[str, Decimal]:
    return {d: Decimal(mg) for d, mg in summary["equivalence"].items()}


async def approve_plan(cmd: ApprovePlan, uow: UnitOfWork) -> PlanRecord:
    record = await get_plan(uow, cmd.patient_id, cmd.plan_id)
    row = record.row
    if cmd.version is not None and cmd.version != row["version"]:
        raise TaperConflict("the plan changed since it was read: review it again")
    if row["status"] == "active" and any(s["status"] == PROPOSED for s in record.steps):
        return await _approve_proposal(cmd, record, uow)
    if row["status"] != "draft":
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

    decision = handlers._decision(model.DecisionKind.APPROVE, cmd.clinician, cmd.reason_code)
    try:
        decision.check(model.DecisionKind.APPROVE)
    except model.TaperError as exc:
        raise handlers._translate(exc) from None
    await handlers._record_decision(
        uow,
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
    now = uow.clock.now()
    existing = await handlers._load(uow, cmd.patient_id)
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
                equivalence=_equivalence(summary),
            )
        else:
            # Before the first step, or after the taper ended at a maintenance dose.
            taper = existing
            taper.adopt_plan(cmd.plan_id, decision, baseline)
            taper.equivalence = _equivalence(summary)
        _dry_run(taper, record.steps, summary, today)
    except model.TaperError as exc:
        raise handlers._translate(exc) from None
    taper.timezone, taper.first_dose_time = patient_day(row["input"], taper)
    if existing is None:
        try:
            await handlers.insert_new_taper(uow, taper)
        except IntegrityError:  # another plan for this new patient was approved concurrently
            raise TaperConflict("another plan was approved for this patient") from None
    else:
        await handlers._save(uow, taper)

    result = await uow.session.execute(
        sa.update(plans)
        .where(plans.c.id == cmd.plan_id, plans.c.version == row["version"])
        .values(
            status="active",
            approved_by_decision_id=decision.decision_id,
            approved_at=now,
            version=row["version"] + 1,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise TaperConflict("the plan changed concurrently")
    await _arm(uow, taper, cmd.plan_id, first["number"], first["effective_on"])
    return await get_plan(uow, cmd.patient_id, cmd.plan_id)


async def _approve_proposal(cmd: ApprovePlan, record: PlanRecord, uow: UnitOfWork) -> PlanRecord:
    """Approve the steps the scheduler proposed for an active plan: the decision records them
    (number, day, doses), they become the plan's live steps and the first one is armed. The steps
    emitted from now on name this approval (``plans.approved_by_decision_id``); the earlier
    approval stays in the decision history and in the steps it authorised."""
    proposed = [s for s in record.steps if s["status"] == PROPOSED]
    today = uow.clock.now().date()
    if proposed[0]["effective_on"] < today:
        raise RuleRefused("start_on", "the proposed steps start in the past: adjust the plan")
    taper = await handlers._require(uow, cmd.patient_id)
    if taper.plan_id != cmd.plan_id:
        raise TaperConflict("the plan is not the taper's")  # pragma: no cover - one active plan
    decision = handlers._decision(model.DecisionKind.APPROVE, cmd.clinician, cmd.reason_code)
    try:
        decision.check(model.DecisionKind.APPROVE)
        _dry_run(
            taper, [{**s, "status": "planned"} for s in proposed], record.row["summary"], today
        )
    except model.TaperError as exc:
        raise handlers._translate(exc) from None
    await handlers._record_decision(
        uow,
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
    result = await uow.session.execute(
        sa.update(plans)
        .where(plans.c.id == cmd.plan_id, plans.c.version == record.row["version"])
        .values(
            approved_by_decision_id=decision.decision_id,
            approved_at=uow.clock.now(),
            version=record.row["version"] + 1,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise TaperConflict("the plan changed concurrently")
    await uow.session.execute(
        sa.update(plan_steps)
        .where(plan_steps.c.plan_id == cmd.plan_id, plan_steps.c.status == PROPOSED)
        .values(status="planned")
    )
    first = proposed[0]
    await _arm(uow, taper, cmd.plan_id, first["number"], first["effective_on"])
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
        if s["status"] not in LIVE_PLAN_STEP:
            continue
        step = _take_step(trial, s, approval, summary, today=today)
        trial.apply(step.step_id)


def _take_step(
    taper: model.PatientTaper,
    step_row: dict[str, Any],
    decision: model.ClinicianDecision,
    summary: dict[str, Any],
    *,
    today: date,
) -> model.DoseStep:
    drug = taper.drug
    return taper.change(
        regimen_from(step_row["administrations"]),
        model.ChangeKind(step_row["kind"]),
        step_row["effective_on"],
        decision,
        today=today,
        bounds=_bounds(summary),
        final_step_at_or_below_mg=handlers.final_step_threshold_mg(
            drug, Decimal(summary["equivalence"][drug]) if drug in summary["equivalence"] else None
        ),
        crossover_max_rise_fraction=planning_defaults_v1().crossover_max_rounding_up_fraction,
    )


async def _arm(
    uow: UnitOfWork, taper: model.PatientTaper, plan_id: uuid.UUID, number: int, on: date
) -> None:
    await uow.session.execute(
        sa.update(plan_steps)
        .where(plan_steps.c.plan_id == plan_id, plan_steps.c.number == number)
        .values(status="scheduled")
    )
    await uow.schedule_timer(
        EMIT_PLAN_STEP,
        key=f"{plan_id}:{number}",
        due_at=handlers.step_due_at(taper, on),
        payload={"patient_id": str(taper.patient_id)},
    )


def _parse_key(key: str) -> tuple[uuid.UUID, int]:
    parts = key.split(":")  # "<plan_id>:<number>" or, re-armed after a resume, ":<suffix>"
    try:
        return uuid.UUID(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        raise InconsistentStep("timer key is not a plan step") from None


async def emit_plan_step(timer: DueTimer, uow: UnitOfWork) -> None:
    plan_id, number = _parse_key(timer.key)
    step_row = (
        (
            await uow.session.execute(
                sa.select(plan_steps).where(
                    plan_steps.c.plan_id == plan_id, plan_steps.c.number == number
                )
            )
        )
        .mappings()
        .first()
    )
    if step_row is None:
        raise InconsistentStep("plan step not found")
    if step_row["status"] != "scheduled":
        return  # already emitted, blocked or cancelled: firing again changes nothing
    plan_row = (
        (await uow.session.execute(sa.select(plans).where(plans.c.id == plan_id))).mappings().one()
    )
    if plan_row["status"] != "active":
        return
    taper = await handlers._load(uow, plan_row["patient_id"])
    if taper is None or taper.plan_id != plan_id:
        raise InconsistentStep("plan step has no matching taper")
    step_where = (plan_steps.c.plan_id == plan_id, plan_steps.c.number == number)
    if taper.held:  # the chain stops here until a clinician resumes
        await uow.session.execute(
            sa.update(plan_steps).where(*step_where).values(status="blocked_by_hold")
        )
        return
    approval = (
        (
            await uow.session.execute(
                sa.select(clinician_decisions).where(
                    clinician_decisions.c.id == plan_row["approved_by_decision_id"]
                )
            )
        )
        .mappings()
        .one()
    )
    decision = model.ClinicianDecision(
        decision_id=approval["id"],
        clinician=approval["clinician"],
        kind=model.DecisionKind(approval["kind"]),
        reason_code=approval["reason_code"],
    )
    try:
        step = _take_step(
            taper,
            dict(step_row),
            decision,
            plan_row["summary"],
            # Validated against the clock at approval; a timer fired late (downtime) still gives
            # the step its planned date.
            today=min(uow.clock.now().date(), step_row["effective_on"]),
        )
    except model.TaperError as exc:
        raise InconsistentStep(str(exc)) from None
    await handlers.insert_step(uow, taper, step)
    event = await handlers.emit_step(uow, taper, step.step_id)
    await uow.session.execute(
        sa.update(plan_steps).where(*step_where).values(status="emitted", dose_step_id=step.step_id)
    )
    following = await _next_live_step(uow, plan_id, after=number)
    if following is not None:
        await _arm(uow, taper, plan_id, following["number"], following["effective_on"])
        return
    # The last step: stopped, at the maintenance target, or (a product missing) still active.
    if taper.completed:
        await _close(uow, plan_id, "completed")
    elif plan_row["summary"].get("maintenance_mg", plan_row["input"].get("maintenance_mg")):
        # The approval authorised ending at the plan's maintenance target.
        taper.end_at_maintenance(decision)
        await handlers._save(uow, taper)
        await _close(uow, plan_id, "maintenance")
        await uow.publish(
            TaperCompleted.create(
                patient_id=taper.patient_id,
                occurred_at=uow.clock.now(),
                **event.caused(),
                plan_id=plan_id,
                final_daily_dose_mg=taper.current_daily_dose_mg,
                outcome="maintenance",
                decision_id=decision.decision_id,
            )
        )


async def _next_live_step(
    uow: UnitOfWork, plan_id: uuid.UUID, *, after: int = 0
) -> sa.RowMapping | None:
    return (
        (
            await uow.session.execute(
                sa.select(plan_steps)
                .where(
                    plan_steps.c.plan_id == plan_id,
                    plan_steps.c.number > after,
                    plan_steps.c.status.in_(LIVE_PLAN_STEP),
                )
                .order_by(plan_steps.c.number)
                .limit(1)
            )
        )
        .mappings()
        .first()
    )


async def _close(uow: UnitOfWork, plan_id: uuid.UUID, status: str) -> None:
    """The plan ends (completed, maintenance or cancelled): no step of it will be emitted."""
    await uow.session.execute(
        sa.update(plan_steps)
        .where(
            plan_steps.c.plan_id == plan_id,
            plan_steps.c.status.in_((*LIVE_PLAN_STEP, PROPOSED)),
        )
        .values(status="cancelled")
    )
    await uow.session.execute(
        sa.update(plans)
        .where(plans.c.id == plan_id)
        .values(status=status, version=plans.c.version + 1)
    )


# --- clinician changes to an approved plan ----------------------------------------------------
async def end_at_maintenance(cmd: ClinicianAction, uow: UnitOfWork) -> model.PatientTaper:
    """End the taper at the current dose (``TaperCompleted``) and close its active plan."""
    taper, _ = await handlers.end_at_maintenance(cmd, uow)
    if await handlers._plan_active(uow, taper.plan_id):
        await _close(uow, taper.plan_id, "maintenance")
    return taper


async def resume_taper(cmd: ClinicianAction, uow: UnitOfWork) -> model.PatientTaper:
    """Lift the hold; an active plan goes on.

    If the patient still takes the day the plan's next step was planned from, the blocked step
    and every later one move by the time the hold lasted (the first now falls on the resume date,
    the spacing is kept). After a return to the prior dose they no longer do: the rest of the plan
    is re-planned from the current dose at the slower pace, its first step one (former) pace
    interval after the resume, and only proposed: a clinician approves it (or adjusts the plan)
    before any of it is armed.
    """
    taper = await handlers.resume_taper(cmd, uow)
    if not await handlers._plan_active(uow, taper.plan_id):
        return taper
    following = await _next_live_step(uow, taper.plan_id)
    if following is None:
        return taper
    planned_from = regimen_from(following["planned_from"]) if following["planned_from"] else None
    if planned_from is not None and _totals(planned_from) != _totals(taper.current_regimen):
        record = await get_plan(uow, taper.patient_id, taper.plan_id)
        interval = int(record.row["summary"]["pace"]["interval_weeks"])
        start_on = uow.clock.now().date() + timedelta(weeks=interval)
        # ASAM 2025: "if paused, resume more slowly" (clinical-reference §2, going back up).
        # Only PROPOSED: nobody approved these doses yet (the resume decision lifts the hold, it
        # does not see the new steps). Nothing is armed until a clinician approves them
        # (``approve_plan`` on the active plan), so no dose changes without a recorded decision.
        await _replan(uow, taper, record, {"pace": "slower"}, start_on, None)
        return taper
    if following["status"] != "blocked_by_hold":
        return taper  # its timer is armed and will find the taper running
    today = uow.clock.now().date()
    shift = max(today - following["effective_on"], timedelta(0))
    rest = await uow.session.execute(
        sa.select(plan_steps.c.number, plan_steps.c.effective_on).where(
            plan_steps.c.plan_id == taper.plan_id,
            plan_steps.c.number >= following["number"],
            plan_steps.c.status.in_(LIVE_PLAN_STEP),
        )
    )
    for number, effective_on in rest.all():
        await uow.session.execute(
            sa.update(plan_steps)
            .where(plan_steps.c.plan_id == taper.plan_id, plan_steps.c.number == number)
            .values(
                effective_on=effective_on + shift,
                status="scheduled" if number == following["number"] else "planned",
            )
        )
    await uow.schedule_timer(
        EMIT_PLAN_STEP,
        # A fresh key per re-arm: the step's first timer has fired (and (kind, key) is unique).
        key=f"{taper.plan_id}:{following['number']}:{uuid.uuid4().hex[:12]}",
        due_at=handlers.step_due_at(taper, following["effective_on"] + shift),
        payload={"patient_id": str(taper.patient_id)},
    )
    return taper


def _decision_of(cmd: ClinicianAction, kind: model.DecisionKind) -> model.ClinicianDecision:
    return model.ClinicianDecision(uuid.uuid4(), cmd.clinician, kind, cmd.reason_code)


def _totals(regimen: model.Regimen) -> dict[str, Decimal]:
    return {d: model.daily_mg(regimen, d) for d in model.drugs_taken(regimen)}


async def on_escalation_resolved(event: EscalationResolved, uow: UnitOfWork) -> None:
    """A clinician resolved monitoring's episode with ``resume_taper``: lift the hold monitoring
    put on the taper, recorded as that clinician's resume decision. A hold with any other reason
    (a clinician's, the patient's, a return to the prior dose) waits for a direct resume."""
    if event.resolution != "resume_taper":
        return
    taper = await handlers._load(uow, event.patient_id)
    if taper is None or taper.held_reason not in handlers.MONITORING_HOLDS.values():
        return
    await resume_taper(
        ClinicianAction(event.patient_id, event.resolved_by, "escalation_resolved"), uow
    )


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


async def adjust_plan(cmd: AdjustPlan, uow: UnitOfWork) -> PlanRecord:
    """Slow down, change products, or set a maintenance target: recorded as an ``adjust``
    decision; the steps not yet taken are cancelled and the re-planned ones appended."""
    record = await get_plan(uow, cmd.patient_id, cmd.plan_id)
    if record.row["status"] != "active":
        raise TaperConflict("only an active plan can be adjusted")
    taper = await handlers._require(uow, cmd.patient_id)
    if taper.plan_id != cmd.plan_id:
        raise InconsistentStep("the active plan is not the taper's")  # pragma: no cover
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
    decision = _decision_of(
        ClinicianAction(cmd.patient_id, cmd.clinician, cmd.reason_code), model.DecisionKind.ADJUST
    )
    try:
        decision.check(model.DecisionKind.ADJUST)
        taper.cancel_pending(decision)
    except model.TaperError as exc:
        raise handlers._translate(exc) from None
    await _replan(uow, taper, record, changes, start_on, decision)
    return await get_plan(uow, cmd.patient_id, cmd.plan_id)


def _earliest_next_step(taper: model.PatientTaper, record: PlanRecord, today: date) -> date:
    """One pace interval after the last step taken, not before today."""
    last = taper.last_applied
    weeks = int(record.row["summary"]["pace"]["interval_weeks"])
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
    summary = {**_summary(result), "maintenance_mg": stored.get("maintenance_mg")}
    first = (max((s["number"] for s in record.steps), default=0)) + 1
    new_steps = [
        {
            "number": first + i,
            "effective_on": st.effective_on,
            "kind": st.kind.value,
            "administrations": regimen_json(st.administrations),
            "status": "planned",  # as live for the dry run; stored as proposed without a decision
        }
        for i, st in enumerate(result.steps)
    ]
    try:
        _dry_run(
            replace(taper, steps=list(taper.steps)), new_steps, summary, uow.clock.now().date()
        )
    except model.TaperError as exc:
        raise handlers._translate(exc) from None
    if decision is not None:
        await handlers._record_decision(
            uow,
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
    await uow.session.execute(
        sa.update(plan_steps)
        .where(
            plan_steps.c.plan_id == taper.plan_id,
            plan_steps.c.status.in_((*LIVE_PLAN_STEP, PROPOSED)),
        )
        .values(status="cancelled")
    )
    await _insert_steps(
        uow,
        taper.plan_id,
        result,
        first_number=first,
        status="planned" if decision is not None else PROPOSED,
    )
    result_row = await uow.session.execute(
        sa.update(plans)
        .where(plans.c.id == taper.plan_id, plans.c.version == record.row["version"])
        .values(
            input=stored,
            strategy=strategy.value,
            summary=summary,
            reference_versions=dict(result.reference_versions),
            version=record.row["version"] + 1,
            # The steps from now on are authorised by the clinician's adjustment (a proposal
            # keeps the approval in force until a clinician approves it).
            **(
                {"approved_by_decision_id": decision.decision_id, "approved_at": uow.clock.now()}
                if decision is not None
                else {}
            ),
        )
    )
    if result_row.rowcount != 1:  # type: ignore[attr-defined]
        raise TaperConflict("the plan changed concurrently")
    if result.steps and decision is not None:
        await _arm(uow, taper, taper.plan_id, first, result.steps[0].effective_on)


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


@dataclass(frozen=True)
class CancelPlan:
    patient_id: uuid.UUID
    plan_id: uuid.UUID
    clinician: str
    reason_code: str


async def cancel_plan(cmd: CancelPlan, uow: UnitOfWork) -> PlanRecord:
    """Discard a draft (recorded). An active plan is adjusted or ended at maintenance instead:
    cancelling it would leave the patient's taper without a plan or a recorded end."""
    record = await get_plan(uow, cmd.patient_id, cmd.plan_id)
    if record.row["status"] != "draft":
        raise TaperConflict("only a draft plan can be cancelled: adjust or end an active plan")
    decision = _decision_of(
        ClinicianAction(cmd.patient_id, cmd.clinician, cmd.reason_code), model.DecisionKind.CANCEL
    )
    try:
        decision.check(model.DecisionKind.CANCEL)
    except model.TaperError as exc:
        raise handlers._translate(exc) from None
    await handlers._record_decision(uow, cmd.patient_id, decision, {"plan_id": str(cmd.plan_id)})
    result = await uow.session.execute(
        sa.update(plans)
        .where(plans.c.id == cmd.plan_id, plans.c.version == record.row["version"])
        .values(status="cancelled", version=record.row["version"] + 1)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise TaperConflict("the plan changed concurrently")
    await uow.session.execute(
        sa.update(plan_steps).where(plan_steps.c.plan_id == cmd.plan_id).values(status="cancelled")
    )
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
    d = clinician_decisions.c
    query = sa.select(clinician_decisions).where(d.patient_id == patient_id)
    if kind is not None:
        query = query.where(d.kind == kind)
    query = within(query, d.decided_at, since, until)
    return await fetch_page(uow.session, query, (d.decided_at, d.id), page)


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
    query = sa.select(
        plans.c.id,
        plans.c.status,
        plans.c.strategy,
        plans.c.summary,
        plans.c.created_by,
        plans.c.created_at,
        plans.c.approved_at,
        plans.c.version,
    ).where(plans.c.patient_id == patient_id)
    if status is not None:
        query = query.where(plans.c.status == status)
    rows, cursor = await fetch_page(uow.session, query, [plans.c.created_at, plans.c.id], page)
    steps: dict[uuid.UUID, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
    if steps:
        found = await uow.session.execute(
            sa.select(plan_steps).where(plan_steps.c.plan_id.in_(list(steps)))
        )
        for s in found.mappings():
            steps[s["plan_id"]].append(dict(s))
    return [
        PlanDigest(r, [(n, dict(s)) for n, s in plan_view.schedule(steps[r["id"]])[0]])
        for r in rows
    ], cursor


async def next_step_of(uow: UnitOfWork, taper: model.PatientTaper) -> plan_view.NextStep:
    """The taper's next step and what stands in its way (``domain.plan_view.next_step``)."""
    plan_status = (
        await uow.session.execute(sa.select(plans.c.status).where(plans.c.id == taper.plan_id))
    ).scalar_one_or_none()
    in_force: list[tuple[int, Any, model.Regimen]] = []
    if plan_status == "active":
        rows = await uow.session.execute(
            sa.select(plan_steps).where(plan_steps.c.plan_id == taper.plan_id)
        )
        kept, _ = plan_view.schedule([dict(r) for r in rows.mappings()])
        in_force = [(n, s, regimen_from(s["administrations"])) for n, s in kept]
    return plan_view.next_step(taper, plan_status, in_force)
