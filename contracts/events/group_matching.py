"""Facts the group matching service owns. Opaque ids and codes only: a cohort's members see each
other's display handles in group matching's API, never in an event."""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from pydantic import Field

from contracts.envelope import Event
from contracts.types import Code

# Clinical reference §5 cohort keys: pre-taper or crossover, active taper, final phase, paused
# (held, or at a maintenance dose), post-taper under 6 months, post-taper 6 months or more.
StageGroup = Literal[
    "pre_taper_crossover", "active", "final_phase", "held", "post_taper_early", "post_taper_late"
]


class CohortAssigned(Event):
    """A waiting patient was placed in a peer-support cohort: they are told a group is ready."""

    EVENT_TYPE: ClassVar[str] = "CohortAssigned"
    PRODUCER: ClassVar[str] = "group_matching"
    event_type: Literal["CohortAssigned"] = "CohortAssigned"

    cohort_id: uuid.UUID
    stage_group: StageGroup = Field(description="The stage group the cohort is for.")
    language: Code = Field(examples=["en"], description="The cohort's language (BCP 47 tag).")


class CohortChanged(Event):
    """A patient moved from one cohort to another (their stage changed for good, or their cohort
    closed and they were placed again)."""

    EVENT_TYPE: ClassVar[str] = "CohortChanged"
    PRODUCER: ClassVar[str] = "group_matching"
    event_type: Literal["CohortChanged"] = "CohortChanged"

    from_cohort_id: uuid.UUID
    to_cohort_id: uuid.UUID
    stage_group: StageGroup
    reason: Literal["stage_changed", "cohort_closed"]


class CohortLeft(Event):
    """A patient left a cohort without joining another (yet): by their own choice, or because
    their stage no longer fits it and no other cohort has been found."""

    EVENT_TYPE: ClassVar[str] = "CohortLeft"
    PRODUCER: ClassVar[str] = "group_matching"
    event_type: Literal["CohortLeft"] = "CohortLeft"

    cohort_id: uuid.UUID
    reason: Literal["patient_left", "stage_changed", "cohort_closed"]
