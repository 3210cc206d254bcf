"""What a taper's changes announce: the contract events ``PatientTaper`` records.

The taper's commands (``model.PatientTaper``) call these when the service layer gives them the
moment (``at``); the repository hands the taper to the unit of work, which writes the recorded
events to the outbox on commit. Pure: the events are values, built from the taper's state.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from contracts import (
    DoseReduced,
    DoseRestored,
    DrugDose,
    Event,
    TaperCompleted,
    TaperHeld,
    TaperResumed,
    TaperStage,
)
from services.scheduler.domain import model
from services.scheduler.domain.patient_day import step_starts_at
from services.scheduler.domain.stages import announced_stage

HeldBy = Literal["clinician", "patient", "monitoring"]


def _stage(taper: model.PatientTaper) -> TaperStage:
    """The stage the events announce: the taper's, or final_phase (``domain.stages``)."""
    return TaperStage(announced_stage(taper))


def _origin(decision_id: uuid.UUID | None, cause: Event | None) -> dict[str, uuid.UUID]:
    """Correlation (and causation) of an event: caused by ``cause``, else by the decision."""
    if cause is not None:
        return cause.caused()
    assert decision_id is not None, "an event is caused by an event or a decision"
    return {"correlation_id": decision_id}


def drug_doses(regimen: model.Regimen) -> list[DrugDose]:
    drugs = dict.fromkeys(a.drug for a in regimen)
    return [DrugDose(drug=d, daily_dose_mg=model.daily_mg(regimen, d)) for d in drugs]


def _eq_mg(taper: model.PatientTaper, regimen: model.Regimen) -> Decimal:
    eq = taper.diazepam_eq(regimen)
    return (Decimal(eq.numerator) / Decimal(eq.denominator)).quantize(Decimal("0.0001"))


def held(
    taper: model.PatientTaper,
    at: datetime,
    held_by: HeldBy,
    decision_id: uuid.UUID | None,
    cause: Event | None,
) -> TaperHeld:
    return TaperHeld.create(
        patient_id=taper.patient_id,
        occurred_at=at,
        **_origin(decision_id, cause),
        plan_id=taper.plan_id,
        reason_code=taper.held_reason,
        held_by=held_by,
        decision_id=decision_id,
        taper_stage=_stage(taper),
    )


def resumed(taper: model.PatientTaper, at: datetime, decision_id: uuid.UUID) -> TaperResumed:
    return TaperResumed.create(
        patient_id=taper.patient_id,
        occurred_at=at,
        correlation_id=decision_id,
        plan_id=taper.plan_id,
        decision_id=decision_id,
        taper_stage=_stage(taper),
    )


def completed(
    taper: model.PatientTaper,
    at: datetime,
    outcome: Literal["stopped", "maintenance"],
    decision_id: uuid.UUID,
    cause: Event | None,
) -> TaperCompleted:
    return TaperCompleted.create(
        patient_id=taper.patient_id,
        occurred_at=at,
        **_origin(decision_id, cause),
        plan_id=taper.plan_id,
        final_daily_dose_mg=taper.current_daily_dose_mg,
        outcome=outcome,
        decision_id=decision_id,
    )


def reduced(
    taper: model.PatientTaper, step: model.DoseStep, at: datetime, half_life_before: str
) -> DoseReduced:
    return DoseReduced.create(
        patient_id=taper.patient_id,
        occurred_at=at,
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
        effective_at=step_starts_at(step.effective_on, taper.timezone, taper.first_dose_time),
        timezone=taper.timezone,
    )


def restored(taper: model.PatientTaper, step: model.DoseStep, at: datetime) -> DoseRestored:
    return DoseRestored.create(
        patient_id=taper.patient_id,
        occurred_at=at,
        correlation_id=step.decision_id,
        plan_id=taper.plan_id,
        step_number=step.step_number,
        drug=step.drug,
        previous_daily_dose_mg=step.previous_daily_dose_mg,
        restored_daily_dose_mg=step.new_daily_dose_mg,
        regimen=drug_doses(step.regimen_after),
        effective_on=step.effective_on,
        decision_id=step.decision_id,
        half_life_class=taper.half_life_class,
        taper_stage=_stage(taper),
    )
