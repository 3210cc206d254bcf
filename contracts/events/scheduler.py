"""Facts the scheduler owns."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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


class DrugDose(BaseModel):
    """One drug's total daily mg."""

    model_config = ConfigDict(frozen=True)

    drug: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    daily_dose_mg: Milligrams = Field(ge=0, max_digits=9, decimal_places=4)


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
    effective_on: date = Field(description="The patient's own date (in their time zone).")
    taper_stage: TaperStage = Field(
        description="The stage from today: final_phase once the day is below the scheduler's "
        "final-phase fraction (⚠ about 10%) of the day the taper started from, in "
        "diazepam-equivalents; completed at zero; crossover during a crossover."
    )
    approved_by_decision_id: uuid.UUID = Field(
        description="The recorded clinician decision that authorised this step."
    )
    half_life_class: Literal["ultra_short", "short", "intermediate", "long"] = Field(
        description="Lets monitoring time check-ins to the drug's withdrawal window."
    )
    # Added without a version bump (optional fields): absent on events from before crossovers.
    step_kind: Literal["reduction", "crossover", "final"] | None = Field(
        default=None,
        description="crossover: part of `drug` was exchanged for diazepam (the total "
        "diazepam-equivalent dose stays about the same); final: every drug stops.",
    )
    regimen: list[DrugDose] | None = Field(
        default=None,
        description="Every drug's daily mg from today; two entries during a crossover.",
    )
    previous_daily_diazepam_eq_mg: Milligrams | None = Field(
        default=None,
        ge=0,
        max_digits=9,
        decimal_places=4,
        description="The whole day before the step, in diazepam-equivalent mg (comparable "
        "across a crossover, unlike the mg of `drug`).",
    )
    new_daily_diazepam_eq_mg: Milligrams | None = Field(
        default=None, ge=0, max_digits=9, decimal_places=4
    )
    # Added without a version bump (optional; issue 13, 12a): absent when the scheduler does not
    # know the patient's day (then the step took effect at 00:00 UTC of effective_on).
    effective_at: AwareDatetime | None = Field(
        default=None,
        description="The instant the step took effect: the patient's first dose on "
        "effective_on in their time zone. Monitoring times check-ins from it.",
    )
    timezone: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$",
        description="The patient's IANA time zone (e.g. America/New_York), so check-ins "
        "follow the patient's calendar days.",
    )


class DoseRestored(Event):
    """A clinician returned the patient to the dose before the last step, from today.

    Temporary by design: the taper is held at this dose (a ``TaperHeld`` follows in the same
    transaction) until a clinician resumes it, and the rest of the plan is re-planned from here.
    """

    EVENT_TYPE: ClassVar[str] = "DoseRestored"
    PRODUCER: ClassVar[str] = "scheduler"
    event_type: Literal["DoseRestored"] = "DoseRestored"

    plan_id: uuid.UUID
    step_number: int = Field(ge=1)
    drug: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    previous_daily_dose_mg: Milligrams = Field(ge=0, max_digits=9, decimal_places=4)
    restored_daily_dose_mg: Milligrams = Field(ge=0, max_digits=9, decimal_places=4)
    regimen: list[DrugDose] = Field(description="Every drug's daily mg from today.")
    effective_on: date
    decision_id: uuid.UUID = Field(description="The recorded clinician decision.")
    half_life_class: Literal["ultra_short", "short", "intermediate", "long"]
    taper_stage: TaperStage = Field(description="held")


class TaperHeld(Event):
    """The taper is held: no dose step takes effect until a clinician resumes it.

    A clinician's hold names its recorded decision (``decision_id``); a hold by monitoring (a RED
    ``ThresholdExceeded``) has no decision and names the threshold event as its ``causation_id``.
    """

    EVENT_TYPE: ClassVar[str] = "TaperHeld"
    PRODUCER: ClassVar[str] = "scheduler"
    event_type: Literal["TaperHeld"] = "TaperHeld"

    plan_id: uuid.UUID
    reason_code: str = Field(
        pattern=r"^[a-z0-9_]{1,40}$",
        description="Why the taper is held, as a code, e.g. red_threshold_exceeded.",
    )
    held_by: Literal["clinician", "patient", "monitoring"]
    decision_id: uuid.UUID | None = Field(
        default=None,
        description="The recorded decision behind the hold; null when monitoring held it "
        "(then causation_id is the ThresholdExceeded event).",
    )
    taper_stage: TaperStage = Field(description="The stage after the hold (held).")


class TaperResumed(Event):
    """A clinician lifted the hold; steps blocked while held stay blocked (plan a new one)."""

    EVENT_TYPE: ClassVar[str] = "TaperResumed"
    PRODUCER: ClassVar[str] = "scheduler"
    event_type: Literal["TaperResumed"] = "TaperResumed"

    plan_id: uuid.UUID
    decision_id: uuid.UUID = Field(description="The recorded clinician decision to resume.")
    taper_stage: TaperStage = Field(description="The stage the current dose implies.")


class TaperCompleted(Event):
    """The taper ended: the step to zero took effect (``stopped``) or it ends at a maintenance dose.

    Published in the same transaction as the final step's ``DoseReduced``, which is its causation.
    """

    EVENT_TYPE: ClassVar[str] = "TaperCompleted"
    PRODUCER: ClassVar[str] = "scheduler"
    event_type: Literal["TaperCompleted"] = "TaperCompleted"

    plan_id: uuid.UUID
    final_daily_dose_mg: Milligrams = Field(ge=0, max_digits=9, decimal_places=4)
    outcome: Literal["stopped", "maintenance"]
    decision_id: uuid.UUID = Field(
        description="The recorded clinician decision that authorised the final step."
    )
