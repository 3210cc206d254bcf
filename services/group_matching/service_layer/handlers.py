"""Group matching's use cases: follow each patient's stage from the scheduler's dose steps."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from contracts import DoseReduced
from services.chassis.errors import NotFound, PermanentError
from services.chassis.uow import UnitOfWork
from services.group_matching.adapters.orm import patient_stages
from services.group_matching.domain.model import InvalidStageInput, stage_after_dose


class StageUnknown(NotFound):
    def __init__(self) -> None:
        super().__init__("no stage known for this patient")


class UnusableDoseEvent(PermanentError):
    """A DoseReduced the stage cannot be derived from (dead-lettered, never guessed at)."""


async def on_dose_reduced(event: DoseReduced, uow: UnitOfWork) -> None:
    """Upsert the patient's stage.

    The start dose is the dose before the first reduction seen for the plan (a new plan, e.g. after
    a switch of drug, starts afresh). A step not newer than the last one applied is ignored.
    """
    row = (
        (
            await uow.session.execute(
                sa.select(patient_stages).where(patient_stages.c.patient_id == event.patient_id)
            )
        )
        .mappings()
        .first()
    )
    same_plan = row is not None and row["plan_id"] == event.plan_id
    if row is not None and same_plan and event.step_number <= row["last_step_number"]:
        return  # an older step delivered late: the newer state stands
    if row is not None and same_plan:
        start = Decimal(row["start_daily_dose_mg"])
        previous_stage: str | None = row["stage"]
    else:
        start = event.previous_daily_dose_mg
        previous_stage = None
    try:
        stage = stage_after_dose(previous_stage, start, event.new_daily_dose_mg)
    except InvalidStageInput as exc:
        raise UnusableDoseEvent(str(exc)) from None
    values: dict[str, Any] = {
        "plan_id": event.plan_id,
        "drug": event.drug,
        "stage": stage,
        "start_daily_dose_mg": start,
        "latest_daily_dose_mg": event.new_daily_dose_mg,
        "last_step_number": event.step_number,
        "updated_at": uow.clock.now(),
        "last_event_id": event.event_id,
    }
    if row is None:
        await uow.session.execute(
            sa.insert(patient_stages).values(patient_id=event.patient_id, **values)
        )
    else:
        await uow.session.execute(
            sa.update(patient_stages)
            .where(patient_stages.c.patient_id == event.patient_id)
            .values(**values)
        )


async def get_stage(uow: UnitOfWork, patient_id: uuid.UUID) -> dict[str, Any]:
    row = (
        (
            await uow.session.execute(
                sa.select(
                    patient_stages.c.patient_id,
                    patient_stages.c.drug,
                    patient_stages.c.stage,
                    patient_stages.c.updated_at,
                ).where(patient_stages.c.patient_id == patient_id)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise StageUnknown()
    return dict(row)
