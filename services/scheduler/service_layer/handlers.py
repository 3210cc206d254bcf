"""Scheduler's use cases: clinician commands, the dose-step timer and monitoring's escalations.

Each runs inside one unit of work; commands leave the commit to the caller (the API commits, the
consumer and the timer poller commit with their own bookkeeping). Domain refusals are turned into
the chassis' safe errors here: rule violations are 422, state conflicts 409, a missing taper 404.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa

from contracts import (
    DoseReduced,
    DoseRestored,
    DrugDose,
    Severity,
    TaperCompleted,
    TaperHeld,
    TaperResumed,
    TaperStage,
    ThresholdExceeded,
)
from services.chassis.errors import Conflict, NotFound, PermanentError, SafeError
from services.chassis.timers import DueTimer
from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.orm import (
    clinician_decisions,
    dose_steps,
    plans,
    tapers,
)
from services.scheduler.domain import model
from services.scheduler.domain.patient_day import patient_today, step_starts_at
from services.scheduler.domain.planning import equivalence_v1, planning_defaults_v1
from services.scheduler.domain.reference import TaperBounds, taper_bounds_v1
from services.scheduler.domain.stages import announced_stage

EMIT_DOSE_STEP = "emit_dose_step"
EMIT_PLAN_STEP = "emit_plan_step"
RED_HOLD_REASON = "red_threshold_exceeded"
AMBER_HOLD_REASON = "amber_threshold_exceeded"
MONITORING_HOLDS = {Severity.RED: RED_HOLD_REASON, Severity.AMBER: AMBER_HOLD_REASON}


# --- errors -----------------------------------------------------------------------------------
class TaperNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no taper for this patient")


class TaperConflict(Conflict):
    pass


class RuleRefused(PermanentError):
    """A taper rule refused the request; ``field`` names the input (never its value)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class StaleTaper(Conflict):
    """Another transaction changed the taper first (409 to a caller; consumers and timers retry)."""

    def __init__(self) -> None:
        super().__init__("the taper changed concurrently")


class InconsistentStep(PermanentError):
    """A timer names a step that cannot be emitted (parked for an operator, never guessed at)."""


def _translate(exc: model.TaperError) -> SafeError:
    if isinstance(exc, model.TaperRuleViolation):
        return RuleRefused(exc.field, exc.problem)
    return TaperConflict(str(exc))


# --- commands ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StartTaper:
    patient_id: uuid.UUID
    clinician: str
    drug: str
    half_life_class: str
    current_daily_dose_mg: Decimal
    reason_code: str
    # The patient's day: each step takes effect at their first dose of its date (None: 00:00 UTC).
    timezone: str | None = None
    first_dose_time: time | None = None


@dataclass(frozen=True)
class ScheduleReduction:
    patient_id: uuid.UUID
    clinician: str
    new_daily_dose_mg: Decimal
    effective_on: date
    reason_code: str
    override: bool = False
    override_reason_code: str | None = None


@dataclass(frozen=True)
class ClinicianAction:
    """Hold or resume: who, for which patient, and why (a code)."""

    patient_id: uuid.UUID
    clinician: str
    reason_code: str


async def start_taper(cmd: StartTaper, uow: UnitOfWork) -> model.PatientTaper:
    """Record the clinician's start decision and create the patient's taper (one per patient)."""
    if await _load(uow, cmd.patient_id) is not None:
        raise TaperConflict("a taper already exists for this patient")
    decision = _decision(model.DecisionKind.START, cmd.clinician, cmd.reason_code)
    try:
        taper = model.PatientTaper.start(
            patient_id=cmd.patient_id,
            drug=cmd.drug,
            half_life_class=cmd.half_life_class,
            current_daily_dose_mg=cmd.current_daily_dose_mg,
            decision=decision,
        )
    except model.TaperError as exc:
        raise _translate(exc) from None
    taper.timezone, taper.first_dose_time = cmd.timezone, cmd.first_dose_time
    await _record_decision(
        uow,
        cmd.patient_id,
        decision,
        {
            "plan_id": str(taper.plan_id),
            "drug": cmd.drug,
            "half_life_class": cmd.half_life_class,
            "current_daily_dose_mg": str(cmd.current_daily_dose_mg),
        },
    )
    await insert_new_taper(uow, taper)
    return taper


async def insert_new_taper(uow: UnitOfWork, taper: model.PatientTaper) -> None:
    """Store a just-started taper (version 1)."""
    now = uow.clock.now()
    await uow.session.execute(
        sa.insert(tapers).values(
            patient_id=taper.patient_id,
            plan_id=taper.plan_id,
            drug=taper.drug,
            half_life_class=taper.half_life_class,
            start_daily_dose_mg=taper.start_daily_dose_mg,
            current_daily_dose_mg=taper.current_daily_dose_mg,
            held=False,
            held_reason=None,
            stage=taper.stage.value,
            version=1,
            created_at=now,
            updated_at=now,
            regimen=regimen_json(taper.regimen) if taper.regimen else None,
            equivalence=_equivalence_json(taper),
            timezone=taper.timezone,
            first_dose_time=taper.first_dose_time,
        )
    )
    taper.version = 1


async def schedule_reduction(
    cmd: ScheduleReduction, uow: UnitOfWork, *, bounds: TaperBounds | None = None
) -> model.DoseStep:
    """Record the decision, validate the step against the taper rules and arm its timer."""
    taper = await _require(uow, cmd.patient_id)
    if await _plan_active(uow, taper.plan_id):
        raise TaperConflict("the taper follows an approved plan")
    decision = _decision(
        model.DecisionKind.REDUCE,
        cmd.clinician,
        cmd.reason_code,
        override=cmd.override,
        override_reason_code=cmd.override_reason_code,
    )
    try:
        step = taper.reduce(
            cmd.new_daily_dose_mg,
            cmd.effective_on,
            decision,
            today=uow.clock.now().date(),
            bounds=bounds or taper_bounds_v1(),
            final_step_at_or_below_mg=final_step_threshold_mg(taper.drug),
        )
    except model.TaperError as exc:
        raise _translate(exc) from None
    await _record_decision(
        uow,
        cmd.patient_id,
        decision,
        {
            "step_id": str(step.step_id),
            "previous_daily_dose_mg": str(step.previous_daily_dose_mg),
            "new_daily_dose_mg": str(step.new_daily_dose_mg),
            "effective_on": step.effective_on.isoformat(),
            "override": cmd.override,
            "override_reason_code": cmd.override_reason_code,
            "bounds_version": (bounds or taper_bounds_v1()).version,
        },
    )
    await insert_step(uow, taper, step)
    # Bump the version so a concurrent reduction of the same taper cannot also pass the rules.
    await _save(uow, taper)
    await uow.schedule_timer(
        EMIT_DOSE_STEP,
        key=str(step.step_id),
        due_at=step_due_at(taper, step.effective_on),
        payload={"patient_id": str(cmd.patient_id)},
    )
    return step


async def hold_taper(cmd: ClinicianAction, uow: UnitOfWork) -> model.PatientTaper:
    decision = _decision(model.DecisionKind.HOLD, cmd.clinician, cmd.reason_code)
    return await _hold(uow, cmd.patient_id, decision, held_by="clinician")


async def _hold(
    uow: UnitOfWork,
    patient_id: uuid.UUID,
    decision: model.ClinicianDecision,
    *,
    held_by: Literal["clinician", "patient"],
) -> model.PatientTaper:
    """Hold at once on ``decision``, recorded with the decider's role; announce ``TaperHeld``."""
    taper = await _require(uow, patient_id)
    try:
        changed = taper.hold_by(decision)
    except model.TaperError as exc:
        raise _translate(exc) from None
    if not changed:
        raise TaperConflict("the taper is already held or has ended")
    await _record_decision(uow, patient_id, decision, {}, role=held_by)
    await _save(uow, taper)
    await uow.publish(
        TaperHeld.create(
            patient_id=taper.patient_id,
            occurred_at=uow.clock.now(),
            correlation_id=decision.decision_id,
            plan_id=taper.plan_id,
            reason_code=decision.reason_code,
            held_by=held_by,
            decision_id=decision.decision_id,
            taper_stage=_stage(taper),
        )
    )
    return taper


async def resume_taper(cmd: ClinicianAction, uow: UnitOfWork) -> model.PatientTaper:
    """Lift a hold. A single step blocked while held stays blocked (the clinician schedules the
    next one); an approved plan goes on through ``plans.resume_taper``, which calls this first."""
    taper = await _require(uow, cmd.patient_id)
    decision = _decision(model.DecisionKind.RESUME, cmd.clinician, cmd.reason_code)
    previous_reason = taper.held_reason
    try:
        taper.resume(decision)
    except model.TaperError as exc:
        raise _translate(exc) from None
    await _record_decision(uow, cmd.patient_id, decision, {"lifted_hold": previous_reason})
    await _save(uow, taper)
    await uow.publish(
        TaperResumed.create(
            patient_id=taper.patient_id,
            occurred_at=uow.clock.now(),
            correlation_id=decision.decision_id,
            plan_id=taper.plan_id,
            decision_id=decision.decision_id,
            taper_stage=_stage(taper),
        )
    )
    return taper


@dataclass(frozen=True)
class PatientHoldRequest:
    """The patient asks for a hold (only the safe direction is the patient's to take)."""

    patient_id: uuid.UUID
    patient: str  # the patient's subject
    reason_code: str


async def request_hold(cmd: PatientHoldRequest, uow: UnitOfWork) -> model.PatientTaper:
    """Hold at once at the patient's request; a clinician resumes (or adjusts) the taper."""
    decision = _decision(model.DecisionKind.PATIENT_HOLD, cmd.patient, cmd.reason_code)
    return await _hold(uow, cmd.patient_id, decision, held_by="patient")


async def return_to_prior_dose(cmd: ClinicianAction, uow: UnitOfWork) -> model.PatientTaper:
    """Back to the day before the last step, from today, held until a clinician resumes.

    Announced as ``DoseRestored`` and, unless the taper was already held, ``TaperHeld`` caused
    by it. A pending single step is cancelled; a plan's next step is blocked when it comes due
    and the rest of the plan is re-planned from this dose on resume (``plans.resume_taper``).
    """
    taper = await _require(uow, cmd.patient_id)
    decision = _decision(model.DecisionKind.RESTORE, cmd.clinician, cmd.reason_code)
    was_held = taper.held
    half_life_before = taper.half_life_class
    try:
        # From the patient's today: 10 pm in New York is already tomorrow in UTC.
        today = patient_today(uow.clock.now(), taper.timezone)
        step, cancelled = taper.restore_prior(decision, today=today)
    except model.TaperError as exc:
        raise _translate(exc) from None
    _follow_drug(taper, half_life_before)
    await _record_decision(
        uow,
        cmd.patient_id,
        decision,
        {
            "step_id": str(step.step_id),
            "drug": step.drug,
            "previous_daily_dose_mg": str(step.previous_daily_dose_mg),
            "restored_daily_dose_mg": str(step.new_daily_dose_mg),
            "cancelled_step_id": str(cancelled.step_id) if cancelled else None,
        },
    )
    await _cancel_step(uow, cancelled)
    now = uow.clock.now()
    await insert_step(uow, taper, step)
    await _save(uow, taper)
    event = DoseRestored.create(
        patient_id=taper.patient_id,
        occurred_at=now,
        correlation_id=decision.decision_id,
        plan_id=taper.plan_id,
        step_number=step.step_number,
        drug=step.drug,
        previous_daily_dose_mg=step.previous_daily_dose_mg,
        restored_daily_dose_mg=step.new_daily_dose_mg,
        regimen=drug_doses(step.regimen_after),
        effective_on=step.effective_on,
        decision_id=decision.decision_id,
        half_life_class=taper.half_life_class,
        taper_stage=_stage(taper),
    )
    await uow.session.execute(
        sa.update(dose_steps)
        .where(dose_steps.c.id == step.step_id)
        .values(emitted_at=now, event_id=event.event_id)
    )
    await uow.publish(event)
    if not was_held:
        await uow.publish(
            TaperHeld.create(
                patient_id=taper.patient_id,
                occurred_at=now,
                **event.caused(),
                plan_id=taper.plan_id,
                reason_code=model.RESTORED_HOLD_REASON,
                held_by="clinician",
                decision_id=decision.decision_id,
                taper_stage=_stage(taper),
            )
        )
    return taper


async def end_at_maintenance(
    cmd: ClinicianAction, uow: UnitOfWork
) -> tuple[model.PatientTaper, model.ClinicianDecision]:
    """End the taper at the current dose: ``TaperCompleted`` (maintenance). A pending single
    step is cancelled; ``plans.end_at_maintenance`` also closes an active plan."""
    taper = await _require(uow, cmd.patient_id)
    decision = _decision(model.DecisionKind.MAINTAIN, cmd.clinician, cmd.reason_code)
    try:
        cancelled = taper.end_at_maintenance(decision)
    except model.TaperError as exc:
        raise _translate(exc) from None
    await _record_decision(
        uow,
        cmd.patient_id,
        decision,
        {
            "drug": taper.drug,
            "maintenance_daily_dose_mg": str(taper.current_daily_dose_mg),
            "cancelled_step_id": str(cancelled.step_id) if cancelled else None,
        },
    )
    await _cancel_step(uow, cancelled)
    await _save(uow, taper)
    await uow.publish(
        TaperCompleted.create(
            patient_id=taper.patient_id,
            occurred_at=uow.clock.now(),
            correlation_id=decision.decision_id,
            plan_id=taper.plan_id,
            final_daily_dose_mg=taper.current_daily_dose_mg,
            outcome="maintenance",
            decision_id=decision.decision_id,
        )
    )
    return taper, decision


async def _cancel_step(uow: UnitOfWork, step: model.DoseStep | None) -> None:
    if step is None:
        return
    await uow.session.execute(
        sa.update(dose_steps)
        .where(dose_steps.c.id == step.step_id)
        .values(status=model.StepStatus.CANCELLED.value)
    )
    await uow.cancel_timer(EMIT_DOSE_STEP, str(step.step_id))


def _follow_drug(taper: model.PatientTaper, half_life_before: str) -> None:
    """After a step that changed the tapered drug (a completed crossover, or a return before it),
    take the new drug's half-life class from the equivalence table."""
    known = equivalence_v1().get(taper.drug)
    if known is not None:
        taper.half_life_class = known.half_life_class
    elif taper.half_life_class != half_life_before:  # pragma: no cover - table always has it
        raise InconsistentStep("no half-life class for the tapered drug")


def drug_doses(regimen: model.Regimen) -> list[DrugDose]:
    drugs = dict.fromkeys(a.drug for a in regimen)
    return [DrugDose(drug=d, daily_dose_mg=model.daily_mg(regimen, d)) for d in drugs]


def regimen_json(regimen: model.Regimen) -> list[dict[str, str]]:
    return [{"drug": a.drug, "dose_mg": str(a.dose_mg)} for a in regimen]


def regimen_from(data: list[dict[str, Any]] | None) -> model.Regimen:
    return tuple(model.Administration(a["drug"], Decimal(a["dose_mg"])) for a in data or ())


def _equivalence_json(taper: model.PatientTaper) -> dict[str, str] | None:
    return {d: str(mg) for d, mg in taper.equivalence.items()} or None


def _eq_mg(taper: model.PatientTaper, regimen: model.Regimen) -> Decimal:
    eq = taper.diazepam_eq(regimen)
    return (Decimal(eq.numerator) / Decimal(eq.denominator)).quantize(Decimal("0.0001"))


async def get_taper(uow: UnitOfWork, patient_id: uuid.UUID) -> model.PatientTaper:
    return await _require(uow, patient_id)


# --- timer ------------------------------------------------------------------------------------
async def emit_dose_step(timer: DueTimer, uow: UnitOfWork) -> None:
    """The step's day has come: apply it and announce ``DoseReduced``, unless the taper is held.

    A step to zero also announces ``TaperCompleted`` (caused by that ``DoseReduced``).

    A held taper's step is marked ``blocked_by_hold`` and never emitted (no re-arm: after a resume
    the clinician schedules the next step, ASAM: "if paused, resume more slowly").
    """
    try:
        step_id = uuid.UUID(timer.key)
    except ValueError:
        raise InconsistentStep("timer key is not a step id") from None
    row = (
        (await uow.session.execute(sa.select(dose_steps).where(dose_steps.c.id == step_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise InconsistentStep("dose step not found")
    if row["status"] != model.StepStatus.SCHEDULED:
        return  # already emitted, blocked or cancelled: firing again changes nothing
    taper = await _load(uow, row["patient_id"])
    if taper is None or taper.plan_id != row["plan_id"]:
        raise InconsistentStep("dose step has no matching taper")
    if taper.held:
        taper.block(step_id)
        await uow.session.execute(
            sa.update(dose_steps)
            .where(dose_steps.c.id == step_id)
            .values(status=model.StepStatus.BLOCKED_BY_HOLD.value)
        )
        return
    await emit_step(uow, taper, step_id)


async def emit_step(uow: UnitOfWork, taper: model.PatientTaper, step_id: uuid.UUID) -> DoseReduced:
    """Apply a scheduled, not held step; announce ``DoseReduced`` (and ``TaperCompleted`` at 0).

    Shared by the single-step timer and the plan-step timer (``plans.emit_plan_step``).
    """
    now = uow.clock.now()
    half_life_before = taper.half_life_class
    try:
        step = taper.apply(step_id)
    except model.TaperError as exc:
        raise InconsistentStep(str(exc)) from None
    _follow_drug(taper, half_life_before)
    await _save(uow, taper)
    event = DoseReduced.create(
        patient_id=taper.patient_id,
        occurred_at=now,
        correlation_id=step.decision_id,
        plan_id=taper.plan_id,
        step_number=step.step_number,
        # The drug the step reduced (during a crossover, the one being exchanged for diazepam)
        # and its half-life class: the withdrawal window monitoring watches is that drug's.
        drug=step.drug,
        previous_daily_dose_mg=step.previous_daily_dose_mg,
        new_daily_dose_mg=step.new_daily_dose_mg,
        effective_on=step.effective_on,
        taper_stage=_stage(taper),
        approved_by_decision_id=step.decision_id,
        half_life_class=half_life_before,
        step_kind=step.kind.value,
        regimen=drug_doses(step.regimen_after),
        previous_daily_diazepam_eq_mg=_eq_mg(taper, step.regimen_before),
        new_daily_diazepam_eq_mg=_eq_mg(taper, step.regimen_after),
        effective_at=step_due_at(taper, step.effective_on),
        timezone=taper.timezone,
    )
    await uow.session.execute(
        sa.update(dose_steps)
        .where(dose_steps.c.id == step_id)
        .values(status=model.StepStatus.EMITTED.value, emitted_at=now, event_id=event.event_id)
    )
    await uow.publish(event)
    if taper.completed:  # the step to zero: the taper ends with it, in the same transaction
        await uow.publish(
            TaperCompleted.create(
                patient_id=taper.patient_id,
                occurred_at=now,
                **event.caused(),
                plan_id=taper.plan_id,
                final_daily_dose_mg=taper.current_daily_dose_mg,
                outcome="stopped",
                decision_id=step.decision_id,
            )
        )
    return event


# --- events -----------------------------------------------------------------------------------
async def on_threshold_exceeded(event: ThresholdExceeded, uow: UnitOfWork) -> None:
    """RED holds the patient's taper at once; so does AMBER, before the next step (clinical
    reference §3.5: "holds the next DoseReduced until a clinician acts"). The clinician acts by
    resuming, or by resolving the episode with ``resume_taper`` (``on_escalation_resolved``).

    The hold is announced as ``TaperHeld`` caused by the threshold event (same correlation). A
    taper already held keeps its first reason.
    """
    reason = MONITORING_HOLDS[event.severity]
    taper = await _load(uow, event.patient_id)
    if taper is None:
        return  # monitored but not (yet) tapering with us
    if taper.hold(reason):
        await _save(uow, taper)
        await uow.publish(
            TaperHeld.create(
                patient_id=taper.patient_id,
                occurred_at=uow.clock.now(),
                **event.caused(),
                plan_id=taper.plan_id,
                reason_code=reason,
                held_by="monitoring",
                decision_id=None,
                taper_stage=_stage(taper),
            )
        )


# --- persistence helpers ----------------------------------------------------------------------
async def insert_step(uow: UnitOfWork, taper: model.PatientTaper, step: model.DoseStep) -> None:
    await uow.session.execute(
        sa.insert(dose_steps).values(
            id=step.step_id,
            patient_id=taper.patient_id,
            plan_id=taper.plan_id,
            step_number=step.step_number,
            previous_daily_dose_mg=step.previous_daily_dose_mg,
            new_daily_dose_mg=step.new_daily_dose_mg,
            effective_on=step.effective_on,
            decision_id=step.decision_id,
            overridden=step.overridden,
            status=step.status.value,
            created_at=uow.clock.now(),
            drug=step.drug,
            kind=step.kind.value,
            regimen_before=regimen_json(step.regimen_before),
            regimen_after=regimen_json(step.regimen_after),
        )
    )


def final_step_threshold_mg(
    drug: str, mg_per_10mg_diazepam: Decimal | None = None
) -> Decimal | None:
    """The final-step dose (planning defaults, diazepam-eq) in mg of ``drug``; None if unknown."""
    if mg_per_10mg_diazepam is None:
        table = equivalence_v1()
        known = table.get(drug)
        if known is None:
            return None
        mg_per_10mg_diazepam = known.mg_per_10mg_diazepam(table.default_column)
        if mg_per_10mg_diazepam is None:
            return None
    return planning_defaults_v1().final_step_at_or_below_eq_mg * mg_per_10mg_diazepam / 10


async def _plan_active(uow: UnitOfWork, plan_id: uuid.UUID) -> bool:
    status = await uow.session.scalar(sa.select(plans.c.status).where(plans.c.id == plan_id))
    return status == "active"


def _stage(taper: model.PatientTaper) -> TaperStage:
    """The stage the events announce: the taper's, or final_phase (``domain.stages``)."""
    return TaperStage(announced_stage(taper))


def step_due_at(taper: model.PatientTaper, day: date) -> datetime:
    """When a step dated ``day`` takes effect: the patient's first dose that day, in their zone."""
    return step_starts_at(day, taper.timezone, taper.first_dose_time)


def start_of_day_utc(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _decision(
    kind: model.DecisionKind,
    clinician: str,
    reason_code: str,
    *,
    override: bool = False,
    override_reason_code: str | None = None,
) -> model.ClinicianDecision:
    return model.ClinicianDecision(
        decision_id=uuid.uuid4(),
        clinician=clinician,
        kind=kind,
        reason_code=reason_code,
        override=override,
        override_reason_code=override_reason_code,
    )


async def _record_decision(
    uow: UnitOfWork,
    patient_id: uuid.UUID,
    decision: model.ClinicianDecision,
    payload: dict[str, Any],
    *,
    role: str = "clinician",
) -> None:
    await uow.session.execute(
        sa.insert(clinician_decisions).values(
            id=decision.decision_id,
            patient_id=patient_id,
            clinician=decision.clinician,
            decided_by_role=role,
            kind=decision.kind.value,
            reason_code=decision.reason_code,
            payload=payload,
            decided_at=uow.clock.now(),
        )
    )


async def _require(uow: UnitOfWork, patient_id: uuid.UUID) -> model.PatientTaper:
    taper = await _load(uow, patient_id)
    if taper is None:
        raise TaperNotFound()
    return taper


async def _load(uow: UnitOfWork, patient_id: uuid.UUID) -> model.PatientTaper | None:
    row = (
        (await uow.session.execute(sa.select(tapers).where(tapers.c.patient_id == patient_id)))
        .mappings()
        .first()
    )
    if row is None:
        return None
    # Every step of the patient, whichever plan: the rate bound looks back across plans.
    step_rows = await uow.session.execute(
        sa.select(dose_steps)
        .where(dose_steps.c.patient_id == patient_id)
        .order_by(dose_steps.c.step_number)
    )
    steps = [
        model.DoseStep(
            step_id=s["id"],
            step_number=s["step_number"],
            previous_daily_dose_mg=Decimal(s["previous_daily_dose_mg"]),
            new_daily_dose_mg=Decimal(s["new_daily_dose_mg"]),
            effective_on=s["effective_on"],
            decision_id=s["decision_id"],
            overridden=s["overridden"],
            status=model.StepStatus(s["status"]),
            drug=s["drug"] or row["drug"],
            kind=model.ChangeKind(s["kind"] or model.ChangeKind.REDUCTION.value),
            before=regimen_from(s["regimen_before"]),
            after=regimen_from(s["regimen_after"]),
        )
        for s in step_rows.mappings()
    ]
    return model.PatientTaper(
        patient_id=row["patient_id"],
        plan_id=row["plan_id"],
        drug=row["drug"],
        half_life_class=row["half_life_class"],
        start_daily_dose_mg=Decimal(row["start_daily_dose_mg"]),
        current_daily_dose_mg=Decimal(row["current_daily_dose_mg"]),
        held=row["held"],
        held_reason=row["held_reason"],
        stage=model.Stage(row["stage"]),
        version=row["version"],
        steps=steps,
        regimen=regimen_from(row["regimen"]),
        equivalence={d: Decimal(mg) for d, mg in (row["equivalence"] or {}).items()},
        timezone=row["timezone"],
        first_dose_time=row["first_dose_time"],
    )


async def _save(uow: UnitOfWork, taper: model.PatientTaper) -> None:
    """Write the taper's state if nobody changed it since it was read, else ``StaleTaper``."""
    result = await uow.session.execute(
        sa.update(tapers)
        .where(tapers.c.patient_id == taper.patient_id, tapers.c.version == taper.version)
        .values(
            plan_id=taper.plan_id,
            drug=taper.drug,
            half_life_class=taper.half_life_class,
            current_daily_dose_mg=taper.current_daily_dose_mg,
            regimen=regimen_json(taper.regimen) if taper.regimen else None,
            equivalence=_equivalence_json(taper),
            timezone=taper.timezone,
            first_dose_time=taper.first_dose_time,
            held=taper.held,
            held_reason=taper.held_reason,
            stage=taper.stage.value,
            version=taper.version + 1,
            updated_at=uow.clock.now(),
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleTaper()
    taper.version += 1
