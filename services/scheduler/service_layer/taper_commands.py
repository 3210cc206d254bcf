"""A clinician's (or the patient's) commands on a taper: start, reduce, hold, resume, return to
the prior dose, end at maintenance.

Each runs inside one unit of work and leaves the commit to the caller (the API commits, the
consumer and the timer poller commit with their own bookkeeping). Each records the decision in
the decision log, changes the taper, which records the events the change announces, and saves
it; the unit of work writes those events to the outbox on commit. Domain refusals become the
chassis' safe errors (``errors.translate``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal

from services.chassis.uow import UnitOfWork
from services.scheduler.adapters.plan_repository import PlanRepository
from services.scheduler.adapters.repository import DecisionLog, TaperRepository
from services.scheduler.domain import model
from services.scheduler.domain.patient_day import patient_today
from services.scheduler.domain.planning import final_step_threshold_mg
from services.scheduler.domain.reference import TaperBounds, taper_bounds_v1
from services.scheduler.service_layer import plans, replanning
from services.scheduler.service_layer.errors import TaperConflict, TaperNotFound, translate
from services.scheduler.service_layer.step_timer import drop_manual_plan


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
    """Hold, resume, return to the prior dose or end: who, for which patient, and why (a code)."""

    patient_id: uuid.UUID
    clinician: str
    reason_code: str


@dataclass(frozen=True)
class PatientHoldRequest:
    """The patient asks for a hold (only the safe direction is the patient's to take)."""

    patient_id: uuid.UUID
    patient: str  # the patient's subject
    reason_code: str


async def get_taper(uow: UnitOfWork, patient_id: uuid.UUID) -> model.PatientTaper:
    taper = await TaperRepository.of(uow).get(patient_id)
    if taper is None:
        raise TaperNotFound()
    return taper


async def start_taper(cmd: StartTaper, uow: UnitOfWork) -> model.PatientTaper:
    """Record the clinician's start decision and create the patient's taper (one per patient)."""
    tapers = TaperRepository.of(uow)
    if await tapers.get(cmd.patient_id) is not None:
        raise TaperConflict("a taper already exists for this patient")
    decision = model.ClinicianDecision.new(model.DecisionKind.START, cmd.clinician, cmd.reason_code)
    try:
        taper = model.PatientTaper.start(
            patient_id=cmd.patient_id,
            drug=cmd.drug,
            half_life_class=cmd.half_life_class,
            current_daily_dose_mg=cmd.current_daily_dose_mg,
            decision=decision,
        )
    except model.TaperError as exc:
        raise translate(exc) from None
    taper.timezone, taper.first_dose_time = cmd.timezone, cmd.first_dose_time
    await DecisionLog(uow).record(
        cmd.patient_id,
        decision,
        {
            "plan_id": str(taper.plan_id),
            "drug": cmd.drug,
            "half_life_class": cmd.half_life_class,
            "current_daily_dose_mg": str(cmd.current_daily_dose_mg),
        },
    )
    await tapers.add(taper)
    return taper


async def schedule_reduction(
    cmd: ScheduleReduction, uow: UnitOfWork, *, bounds: TaperBounds | None = None
) -> model.DoseStep:
    """Record the decision, validate the step against the taper rules and schedule it as a
    one-step plan of kind manual, approved by the decision (``plans.start_manual_plan``): the
    plan-step timer takes it on its day, or a resume re-arms it after a hold."""
    taper = await get_taper(uow, cmd.patient_id)
    if await PlanRepository(uow).is_active(taper.plan_id):
        raise TaperConflict("the taper follows an approved plan")
    decision = model.ClinicianDecision.new(
        model.DecisionKind.REDUCE,
        cmd.clinician,
        cmd.reason_code,
        override=cmd.override,
        override_reason_code=cmd.override_reason_code,
    )
    bounds = bounds or taper_bounds_v1()
    try:
        step = taper.reduce(
            cmd.new_daily_dose_mg,
            cmd.effective_on,
            decision,
            today=uow.clock.now().date(),
            bounds=bounds,
            final_step_at_or_below_mg=final_step_threshold_mg(taper.drug),
        )
    except model.TaperError as exc:
        raise translate(exc) from None
    await DecisionLog(uow).record(
        cmd.patient_id,
        decision,
        {
            "step_id": str(step.step_id),
            "previous_daily_dose_mg": str(step.previous_daily_dose_mg),
            "new_daily_dose_mg": str(step.new_daily_dose_mg),
            "effective_on": step.effective_on.isoformat(),
            "override": cmd.override,
            "override_reason_code": cmd.override_reason_code,
            "bounds_version": bounds.version,
        },
    )
    # Bumps the version so a concurrent reduction of the same taper cannot also pass the rules.
    await TaperRepository.of(uow).save(taper)
    await plans.start_manual_plan(uow, taper, step, decision, {"taper_bounds": bounds.version})
    return step


async def hold_taper(cmd: ClinicianAction, uow: UnitOfWork) -> model.PatientTaper:
    decision = model.ClinicianDecision.new(model.DecisionKind.HOLD, cmd.clinician, cmd.reason_code)
    return await _hold(uow, cmd.patient_id, decision, role="clinician")


async def request_hold(cmd: PatientHoldRequest, uow: UnitOfWork) -> model.PatientTaper:
    """Hold at once at the patient's request; a clinician resumes (or adjusts) the taper."""
    decision = model.ClinicianDecision.new(
        model.DecisionKind.PATIENT_HOLD, cmd.patient, cmd.reason_code
    )
    return await _hold(uow, cmd.patient_id, decision, role="patient")


async def _hold(
    uow: UnitOfWork, patient_id: uuid.UUID, decision: model.ClinicianDecision, *, role: str
) -> model.PatientTaper:
    """Hold at once on ``decision``, recorded with the decider's role (``TaperHeld``)."""
    taper = await get_taper(uow, patient_id)
    try:
        changed = taper.hold_by(decision, at=uow.clock.now())
    except model.TaperError as exc:
        raise translate(exc) from None
    if not changed:
        raise TaperConflict("the taper is already held or has ended")
    await DecisionLog(uow).record(patient_id, decision, {}, role=role)
    await TaperRepository.of(uow).save(taper)
    return taper


async def resume_taper(cmd: ClinicianAction, uow: UnitOfWork) -> model.PatientTaper:
    """Lift a hold (``TaperResumed``); an active plan goes on (``replanning.after_resume``),
    a reduction scheduled by hand (a one-step plan) included: a step the hold blocked is armed
    again."""
    taper = await get_taper(uow, cmd.patient_id)
    decision = model.ClinicianDecision.new(
        model.DecisionKind.RESUME, cmd.clinician, cmd.reason_code
    )
    previous_reason = taper.held_reason
    try:
        taper.resume(decision, at=uow.clock.now())
    except model.TaperError as exc:
        raise translate(exc) from None
    await DecisionLog(uow).record(cmd.patient_id, decision, {"lifted_hold": previous_reason})
    await TaperRepository.of(uow).save(taper)
    await replanning.after_resume(uow, taper)
    return taper


async def return_to_prior_dose(cmd: ClinicianAction, uow: UnitOfWork) -> model.PatientTaper:
    """Back to the day before the last step, from today, held until a clinician resumes.

    Announced as ``DoseRestored`` and, unless the taper was already held, ``TaperHeld`` caused
    by it. A pending step scheduled by hand is cancelled (its manual plan closes); a plan's next
    step is blocked when it comes due and the rest of the plan is re-planned from this dose on
    resume (``replanning.after_resume``).
    """
    taper = await get_taper(uow, cmd.patient_id)
    decision = model.ClinicianDecision.new(
        model.DecisionKind.RESTORE, cmd.clinician, cmd.reason_code
    )
    now = uow.clock.now()
    try:
        # From the patient's today: 10 pm in New York is already tomorrow in UTC.
        today = patient_today(now, taper.timezone)
        step, cancelled = taper.restore_prior(decision, today=today, at=now)
    except model.TaperError as exc:
        raise translate(exc) from None
    await DecisionLog(uow).record(
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
    await TaperRepository.of(uow).save(taper)
    await drop_manual_plan(uow, cmd.patient_id)  # its step is cancelled (or stays blocked)
    return taper


async def end_at_maintenance(cmd: ClinicianAction, uow: UnitOfWork) -> model.PatientTaper:
    """End the taper at the current dose (``TaperCompleted``, maintenance): a pending single step
    is cancelled and an active plan closes."""
    taper = await get_taper(uow, cmd.patient_id)
    decision = model.ClinicianDecision.new(
        model.DecisionKind.MAINTAIN, cmd.clinician, cmd.reason_code
    )
    try:
        cancelled = taper.end_at_maintenance(decision, at=uow.clock.now())
    except model.TaperError as exc:
        raise translate(exc) from None
    await DecisionLog(uow).record(
        cmd.patient_id,
        decision,
        {
            "drug": taper.drug,
            "maintenance_daily_dose_mg": str(taper.current_daily_dose_mg),
            "cancelled_step_id": str(cancelled.step_id) if cancelled else None,
        },
    )
    await TaperRepository.of(uow).save(taper)
    await drop_manual_plan(uow, cmd.patient_id)  # its step is cancelled (or stays blocked)
    await plans.close_active_plan(uow, taper)
    return taper
