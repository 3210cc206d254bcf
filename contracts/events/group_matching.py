"""Facts the group matching service owns."""

from __future__ import annotations

import uuid
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from contracts.envelope import Event

Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.:-]{1,64}$")]


class CohortAssigned(Event):
    """A patient was placed in a peer-support cohort (or moved to another): they are told where
    their group meets. Opaque ids and codes only; the cohort's name and meeting details stay in
    group matching and the frontend."""

    EVENT_TYPE: ClassVar[str] = "CohortAssigned"
    PRODUCER: ClassVar[str] = "group_matching"
    event_type: Literal["CohortAssigned"] = "CohortAssigned"

    cohort_id: uuid.UUID
    previous_cohort_id: uuid.UUID | None = Field(
        default=None, description="Set when the patient moved from another cohort."
    )
    taper_stage: Code = Field(examples=["early"], description="The stage the cohort is for.")
    language: Code = Field(examples=["en"], description="The cohort's language (BCP 47 tag).")
