"""Facts the scheduler owns."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field

from contracts.envelope import Event

Milligrams = Decimal


class TaperStage(StrEnum):
    """Where a patient is in the taper; group matching places cohorts by it."""

    PRE_TAPER = "pre_taper"
    CROSSOVER = "crossover"
    ACTIVE = "active"
    FINAL_PHASE = "final_phase"
    HELD = "held"
    MAINTENANCE = "maintenance"
    COMPLETED = "completed"


class DoseReduced(Event):
    """A clinician-approved taper step took effect: the patient takes the new dose from today."""

    EVENT_TYPE: ClassVar[str] = "DoseReduced"
    PRODUCER: ClassVar[str] = "scheduler"
    event_type: Literal["DoseReduced"] = "DoseReduced"

    plan_id: uuid.UUID
    step_number: int = Field(ge=1)
    drug: str = Field(
        pattern=r"^[a-z0-9_-]{1,40}$",
        description="Drug code from the scheduler's equivalence table, e.g. diazepam.",
    )
    previous_daily_dose_mg: Milligrams = Field(ge=0, max_digits=9, decimal_places=4)
    new_daily_dose_mg: Milligrams = Field(ge=0, max_digits=9, decimal_places=4)
    effective_on: date
    taper_stage: TaperStage
    approved_by_decision_id: uuid.UUID = Field(
        description="The recorded clinician decision that authorised this step."
    )
    half_life_class: Literal["ultra_short", "short", "intermediate", "long"] = Field(
        description="Lets monitoring time check-ins to the drug's withdrawal window."
    )
