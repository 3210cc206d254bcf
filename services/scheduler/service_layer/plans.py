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
  (``handlers._rearm_plan_after_resume``).
* Firing a timer again changes nothing: only a ``scheduled`` plan step is emitted.

Only single-drug plans can be approved for now: a crossover step mixes two drugs, which the taper
and ``DoseReduced`` (one drug, one daily dose) cannot express yet.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from services.chassis.errors import NotFound
from services.chassis.timers import DueTimer
from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.orm import clinician_decisions, plan_steps, plans, tapers
from services.scheduler.domain import model
from services.scheduler.domain.planning import TaperPlan, equivalence_v1
from services.scheduler.domain.reference import TaperBounds
from services.scheduler.service_layer import handlers
from services.scheduler.service_layer.handlers import (
    EMIT_PLAN_STEP,
    InconsistentStep,
    RuleRefused,
    TaperConflict,
    start_of_day_utc,
)


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
    for s in p.steps:
        await uow.session.execute(
            sa.insert(plan_steps).values(
                plan_id=plan_id,
                number=s.number,
                effective_on=s.effective_on,
                daily_dose_mg=s.daily_dose_mg,
                diazepam_eq_mg=s.diazepam_eq_mg,
                administrations=[
                    {"drug": a.drug, "dose_mg": str(a.dose_mg)} for a in s.administrations
                ],
                kind=s.kind.value,
                hold_weeks=s.hold_weeks,
                status="planned",
                dose_step_id=None,
            )
        )
    return await get_plan(uow, cmd.patient_id, plan_id)


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


def _single_drug(record: PlanRecord) -> str | None:
    drug: str = record.row["summary"]["drug"]
    for s in record.steps:
        if any(a["drug"] != drug for a in s["administrations"]):
            return None
    return drug


async def approve_plan(cmd: ApprovePlan, uow: UnitOfWork) -> PlanRecord:
    record = await get_plan(uow, cmd.patient_id, cmd.plan_id)
    row = record.row
    if row["status"] != "draft":
        raise TaperConflict("only a draft plan can be approved")
    if not record.steps:
        raise TaperConflict("the plan has no step to schedule")
    drug = _single_drug(record)
    if drug is None:
        raise TaperConflict("a crossover plan cannot be scheduled yet")
    today = uow.clock.now().date()
    first = record.steps[0]
    if first["effective_on"] < today:
        raise RuleRefused("start_on", "the plan starts in the past: plan again")
    start_dose = sum((Decimal(a["dose_mg"]) for a in row["summary"]["baseline"]), Decimal(0))
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
            "bound_version": row["summary"]["bound"]["version"],
            "bound_override": row["input"].get("bound_override"),
            "equivalence_override": row["input"].get("equivalence_override"),
        },
    )
    now = uow.clock.now()
    existing = await handlers._load(uow, cmd.patient_id)
    if existing is None:
        try:
            taper = model.PatientTaper.start(
                patient_id=cmd.patient_id,
                drug=drug,
                half_life_class=known.half_life_class,
                current_daily_dose_mg=start_dose,
                decision=decision,
                plan_id=cmd.plan_id,
            )
        except model.TaperError as exc:
            raise handlers._translate(exc) from None
        await handlers.insert_new_taper(uow, taper)
    else:
        # Take over a started taper only before its first step, at the same drug and dose.
        if existing.steps or existing.stage is not model.Stage.PRE_TAPER or existing.held:
            raise TaperConflict("the patient's taper has already begun")
        if existing.drug != drug or existing.current_daily_dose_mg != start_dose:
            raise TaperConflict("the plan does not start from the taper's current dose")
        result = await uow.session.execute(
            sa.update(tapers)
            .where(tapers.c.patient_id == cmd.patient_id, tapers.c.version == existing.version)
            .values(plan_id=cmd.plan_id, version=existing.version + 1, updated_at=now)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise handlers.StaleTaper()

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
    await _arm(uow, cmd.patient_id, cmd.plan_id, first["number"], first["effective_on"])
    return await get_plan(uow, cmd.patient_id, cmd.plan_id)


async def _arm(
    uow: UnitOfWork, patient_id: uuid.UUID, plan_id: uuid.UUID, number: int, on: Any
) -> None:
    await uow.session.execute(
        sa.update(plan_steps)
        .where(plan_steps.c.plan_id == plan_id, plan_steps.c.number == number)
        .values(status="scheduled")
    )
    await uow.schedule_timer(
        EMIT_PLAN_STEP,
        key=f"{plan_id}:{number}",
        due_at=start_of_day_utc(on),
        payload={"patient_id": str(patient_id)},
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
    summary = plan_row["summary"]
    drug = summary["drug"]
    try:
        step = taper.reduce(
            Decimal(step_row["daily_dose_mg"]),
            step_row["effective_on"],
            decision,
            # Validated against the clock at approval; a timer fired late (downtime) still gives
            # the step its planned date.
            today=min(uow.clock.now().date(), step_row["effective_on"]),
            bounds=_bounds(summary),
            final_step_at_or_below_mg=handlers.final_step_threshold_mg(
                drug, Decimal(summary["equivalence"][drug])
            ),
        )
    except model.TaperError as exc:
        raise InconsistentStep(str(exc)) from None
    await handlers.insert_step(uow, taper, step)
    await handlers.emit_step(uow, taper, step.step_id)
    await uow.session.execute(
        sa.update(plan_steps).where(*step_where).values(status="emitted", dose_step_id=step.step_id)
    )
    following = (
        (
            await uow.session.execute(
                sa.select(plan_steps)
                .where(plan_steps.c.plan_id == plan_id, plan_steps.c.number > number)
                .order_by(plan_steps.c.number)
            )
        )
        .mappings()
        .first()
    )
    if following is not None:
        await _arm(uow, taper.patient_id, plan_id, following["number"], following["effective_on"])
        return
    # The last step: stopped, at the maintenance dose, or (a product missing) still active.
    if taper.completed:
        status = "completed"
    elif plan_row["input"].get("maintenance_mg") is not None:
        status = "maintenance"
    else:
        return
    await uow.session.execute(
        sa.update(plans)
        .where(plans.c.id == plan_id)
        .values(status=status, version=plans.c.version + 1)
    )


async def decision_history(uow: UnitOfWork, patient_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await uow.session.execute(
        sa.select(clinician_decisions)
        .where(clinician_decisions.c.patient_id == patient_id)
        .order_by(clinician_decisions.c.decided_at, clinician_decisions.c.id)
    )
    return [dict(r) for r in rows.mappings()]
