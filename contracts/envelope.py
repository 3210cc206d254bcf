"""The envelope every cross-service event carries.

Events are flat, frozen pydantic models: the envelope fields first, then the event's own facts.
Consumers ignore fields they do not know (``extra="ignore"``) so that a producer may add an
optional field without breaking anyone; removing, renaming or retyping a field is a breaking change
and needs a new ``.v<major+1>`` topic (see ``contracts.compat``).

No PHI travels in events: patients, clinicians and cohorts are opaque UUIDs, and free text is never
a field. Reasons are machine-readable codes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Envelope(BaseModel):
    """Fields shared by every event; also used to read an event whose type is not yet known."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID = Field(description="Unique id of this fact; consumers dedupe on it.")
    event_type: str = Field(description="Class name of the event, e.g. DoseReduced.")
    schema_version: int = Field(ge=1, description="Major version; equals the topic's .v<major>.")
    occurred_at: AwareDatetime = Field(description="When the fact became true (service clock).")
    producer: str = Field(description="Name of the service that owns the topic.")
    patient_id: uuid.UUID = Field(description="Opaque patient id; also the Kafka message key.")
    correlation_id: uuid.UUID = Field(description="Id shared by every event of one flow.")
    causation_id: uuid.UUID | None = Field(
        default=None, description="event_id of the event (or request) that caused this one."
    )


class Event(Envelope):
    """Base of concrete events; subclasses set ``EVENT_TYPE``, ``VERSION`` and ``PRODUCER``."""

    EVENT_TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    PRODUCER: ClassVar[str]

    @classmethod
    def create(
        cls,
        *,
        patient_id: uuid.UUID,
        occurred_at: datetime,
        correlation_id: uuid.UUID | None = None,
        causation_id: uuid.UUID | None = None,
        event_id: uuid.UUID | None = None,
        **facts: Any,
    ) -> Self:
        """Build an event, filling the envelope from the class; a new flow starts a correlation."""
        new_id = event_id or uuid.uuid4()
        return cls(
            event_id=new_id,
            event_type=cls.EVENT_TYPE,
            schema_version=cls.VERSION,
            occurred_at=occurred_at,
            producer=cls.PRODUCER,
            patient_id=patient_id,
            correlation_id=correlation_id or new_id,
            causation_id=causation_id,
            **facts,
        )

    def caused(self) -> dict[str, uuid.UUID]:
        """Envelope arguments for an event caused by this one (same flow, causation = this)."""
        return {"correlation_id": self.correlation_id, "causation_id": self.event_id}

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()
