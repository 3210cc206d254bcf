"""Facts the notifications service owns."""

from __future__ import annotations

import uuid
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from contracts.envelope import Event

Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.:-]{1,64}$")]


class PageAcknowledged(Event):
    """A clinician acknowledged a page for an escalation episode: escalation to the next level
    stops; monitoring records the acknowledgement on the episode (which stays open until a
    clinician resolves it)."""

    EVENT_TYPE: ClassVar[str] = "PageAcknowledged"
    PRODUCER: ClassVar[str] = "notifications"
    event_type: Literal["PageAcknowledged"] = "PageAcknowledged"

    episode_id: uuid.UUID
    severity: Literal["RED", "AMBER"] = Field(description="The level of the page acknowledged.")
    acknowledged_by: Code = Field(description="The acknowledging clinician's subject (opaque).")
    channel: Literal["api", "signed_link"]
