"""Follow each patient's taper stage from the scheduler's events (group matching's use cases).

``DoseReduced`` creates the patient's row and moves the stage by dose, or by the scheduler's
``taper_stage`` when it names final phase, crossover or completed (``stage_from_event``);
``TaperHeld``, ``TaperResumed`` and ``TaperCompleted`` move it through the taper's lifecycle; one
that arrives before the patient's first step is valid, only early: it is parked and applied when
that step arrives (never dead-lettered: the dead-letter topic is for bad messages).
The inbox drops duplicates; the topics are not ordered with one another, so an event older than
the newest one applied (``last_event_at``) does not change the stage.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from contracts import DoseReduced, Event, TaperCompleted, TaperHeld, TaperResumed, event_class
from services.chassis.errors import NotFound, PermanentError
from services.chassis.uow import UnitOfWork
from services.group_matching.adapters.repository import StageRepository
from services.group_matching.domain.model import (
    COMPLETED,
    CROSSOVER,
    HELD,
    MAINTENANCE,
    InvalidStageInput,
    stage_after_dose,
    stage_from_event,
)
from services.group_matching.service_layer import cohorts

# Stages only a lifecycle event sets and only a new plan leaves.
_ENDED = frozenset({COMPLETED, MAINTENANCE})


class StageUnknown(NotFound):
    def __init__(self) -> None:
        super().__init__("no stage known for this patient")


class UnusableDoseEvent(PermanentError):
    """A DoseReduced the stage cannot be derived from (dead-lettered, never guessed at)."""


async def on_dose_reduced(event: DoseReduced, uow: UnitOfWork) -> None:
    """Upsert the patient's stage.

    The start dose is the dose before the first reduction seen for the plan (a new plan, e.g. after
    a switch of drug, starts afresh). A step not newer than the last one applied is ignored. A step
    that occurred before the newest lifecycle event applied (a hold delivered first), or after the
    plan ended, updates the dose but keeps the stage.
    """
    stages = StageRepository(uow)
    row = await stages.get(event.patient_id)
    same_plan = row is not None and row["plan_id"] == event.plan_id
    if row is not None and same_plan and event.step_number <= row["last_step_number"]:
        return  # an older step delivered late: the newer state stands
    # Diazepam-equivalents when the event has them: they stay comparable across a crossover,
    # where the mg of ``drug`` fall to zero while the patient takes its diazepam equivalent.
    previous_dose, new_dose = event.previous_daily_dose_mg, event.new_daily_dose_mg
    if event.new_daily_diazepam_eq_mg is not None:
        previous_dose = event.previous_daily_diazepam_eq_mg or previous_dose
        new_dose = event.new_daily_diazepam_eq_mg
    if row is not None and same_plan:
        start = Decimal(row["start_daily_dose_mg"])
        previous_stage: str | None = row["stage"]
    else:
        start = previous_dose
        previous_stage = None
    try:
        stage = stage_after_dose(previous_stage, start, new_dose)
    except InvalidStageInput as exc:
        raise UnusableDoseEvent(str(exc)) from None
    stage = stage_from_event(event.taper_stage.value, stage)
    if event.step_kind == "crossover":
        stage = CROSSOVER
    if row is not None and same_plan and (row["stage"] in _ENDED or _stale(event, row)):
        stage = row["stage"]
    now = uow.clock.now()
    values: dict[str, Any] = {
        "plan_id": event.plan_id,
        "drug": event.drug,
        "stage": stage,
        **_stage_clock(row, stage, event.occurred_at),
        "start_daily_dose_mg": start,
        "latest_daily_dose_mg": new_dose,
        "last_step_number": event.step_number,
        "last_event_id": event.event_id,
        "last_event_at": _newest(event, row if same_plan else None),
    }
    values["updated_at"] = now
    if row is None:
        await stages.add(event.patient_id, **values)
    else:
        await stages.update(event.patient_id, **values)
    if row is None:
        await _release_parked(uow, event.patient_id)
    if row is None or row["stage"] != stage:
        await cohorts.request_match(uow)


async def on_taper_held(event: TaperHeld, uow: UnitOfWork) -> None:
    """The taper is held: stage ``held`` until it is resumed."""
    await _move_stage(event, uow, lambda row: HELD)


async def on_taper_resumed(event: TaperResumed, uow: UnitOfWork) -> None:
    """The hold is lifted: back to the stage the latest dose implies."""

    def by_dose(row: sa.RowMapping) -> str:
        try:
            derived = stage_after_dose(
                None, Decimal(row["start_daily_dose_mg"]), Decimal(row["latest_daily_dose_mg"])
            )
        except InvalidStageInput as exc:  # a stored row we cannot read: never guess
            raise UnusableDoseEvent(str(exc)) from None
        return stage_from_event(event.taper_stage.value, derived)

    await _move_stage(event, uow, by_dose)


async def on_taper_completed(event: TaperCompleted, uow: UnitOfWork) -> None:
    """The taper ended: ``completed`` when stopped, ``maintenance`` at a maintenance dose."""
    stage = COMPLETED if event.outcome == "stopped" else MAINTENANCE
    await _move_stage(event, uow, lambda row: stage, latest_daily_dose_mg=event.final_daily_dose_mg)


async def _move_stage(
    event: TaperHeld | TaperResumed | TaperCompleted,
    uow: UnitOfWork,
    stage_of: Callable[[sa.RowMapping], str],
    **also: Any,
) -> None:
    """Set the stage of the patient's row for the event's plan, unless the event is out of date.

    Parked: no row yet (the first ``DoseReduced`` has not arrived; it releases the event).
    Ignored: another plan than the row's, a plan that already ended (completion is final for a
    plan, and the scheduler neither holds nor resumes an ended taper), or an event older than
    the newest one applied.
    """
    stages = StageRepository(uow)
    row = await stages.get(event.patient_id)
    if row is None:
        await stages.park(event)
        return
    if row["plan_id"] != event.plan_id:
        return
    ended = row["stage"] in _ENDED and not isinstance(event, TaperCompleted)
    if ended or _stale(event, row):
        return
    stage = stage_of(row)
    await stages.update(
        event.patient_id,
        stage=stage,
        updated_at=uow.clock.now(),
        last_event_id=event.event_id,
        last_event_at=_newest(event, row),
        **_stage_clock(row, stage, event.occurred_at),
        **also,
    )
    if row["stage"] != stage:
        await cohorts.request_match(uow)


async def _release_parked(uow: UnitOfWork, patient_id: uuid.UUID) -> None:
    """The patient's row exists now: apply what was parked, oldest first, as if it had come in
    order (an event older than the step is stale and changes nothing, as it would have)."""
    stages = StageRepository(uow)
    handlers: dict[str, Callable[[Any, UnitOfWork], Any]] = {
        TaperHeld.EVENT_TYPE: on_taper_held,
        TaperResumed.EVENT_TYPE: on_taper_resumed,
        TaperCompleted.EVENT_TYPE: on_taper_completed,
    }
    for row in await stages.parked(patient_id):
        event = event_class(row["event_type"]).model_validate(row["payload"])
        await handlers[row["event_type"]](event, uow)
    await stages.drop_parked(patient_id)


def _stage_clock(row: sa.RowMapping | None, stage: str, at: datetime) -> dict[str, Any]:
    """When the stage began (kept while it continues) and when the taper completed: the clocks
    cohort moves (hysteresis) and the post-taper split read."""
    if row is not None and row["stage"] == stage:
        return {}
    return {"stage_since": at, "completed_at": at if stage == COMPLETED else None}


def _stale(event: Event, row: sa.RowMapping) -> bool:
    """Whether a newer event of this patient was applied already (ties are not stale)."""
    last: datetime | None = row["last_event_at"]
    return last is not None and event.occurred_at < last


def _newest(event: Event, row: sa.RowMapping | None) -> datetime:
    last: datetime | None = row["last_event_at"] if row is not None else None
    return event.occurred_at if last is None else max(last, event.occurred_at)


async def get_stage(uow: UnitOfWork, patient_id: uuid.UUID) -> dict[str, Any]:
    row = await StageRepository(uow).summary(patient_id)
    if row is None:
        raise StageUnknown()
    return row
