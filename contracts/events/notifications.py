"""Facts the notifications service owns."""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from pydantic import Field

from contracts.envelope import Event
from contracts.types import Subject


class PageAcknowledged(Event):
    """A clinician acknowledged a page for an escalation episode: escalation to the next level
    stops; monitoring records the acknowledgement on the episode (which stays open until a
    clinician resolves it)."""

    EVENT_TYPE: ClassVar[str] = "PageAcknowledged"
    PRODUCER: ClassVar[str] = "notifications"
    event_type: Literal["PageAcknowledged"] = "PageAcknowledged"

    episode_id: uuid.UUID
    severity: Literal["RED", "AMBER"] = Field(description="The level of the page acknowledged.")
    acknowledged_by: Subject = Field(description="The acknowledging clinician's subject (opaque).")
    channel: Literal["api", "signed_link"]
