"""Facts the monitoring service owns."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import Event
from contracts.types import Code, Subject


class Severity(StrEnum):
    RED = "RED"
    AMBER = "AMBER"


class ThresholdReason(BaseModel):
    """One machine-readable reason a rule tripped. Codes only: never free text (no PHI)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    code: Code = Field(examples=["red_flag:seizure"])
    instrument: Code | None = None
    value: float | None = Field(default=None, allow_inf_nan=False)
    threshold: float | None = Field(default=None, allow_inf_nan=False)


class SymptomReported(Event):
    """A symptom report was scored and stored."""

    EVENT_TYPE: ClassVar[str] = "SymptomReported"
    PRODUCER: ClassVar[str] = "monitoring"
    event_type: Literal["SymptomReported"] = "SymptomReported"

    report_id: uuid.UUID
    instrument: Code = Field(examples=["ciwa-b"])
    instrument_version: Code
    method: Literal["self-report", "self-report-modified", "clinician"]
    total_score: int = Field(ge=0)
    band: Code = Field(examples=["mild"])
    red_flags: tuple[Code, ...] = Field(default=(), description="Red-flag codes reported.")


class ThresholdExceeded(Event):
    """A rule tripped: a clinician must look (RED pages at once, AMBER same day).

    Published when an escalation episode opens, and again only when it rises from AMBER to RED:
    further reports inside an open episode update it without a new event. ``episode_id`` is the
    episode's (one open episode per patient and rule family), so notifications pages once per
    episode and level.
    """

    EVENT_TYPE: ClassVar[str] = "ThresholdExceeded"
    PRODUCER: ClassVar[str] = "monitoring"
    event_type: Literal["ThresholdExceeded"] = "ThresholdExceeded"

    report_id: uuid.UUID = Field(
        description="The report that opened or raised the episode (for a missed check-in, the "
        "check-in's id)."
    )
    episode_id: uuid.UUID
    severity: Severity
    reasons: tuple[ThresholdReason, ...] = Field(min_length=1)
    # Added without a version bump (optional): absent on events from before episodes.
    family: Code | None = Field(
        default=None,
        examples=["withdrawal"],
        description="The rule family whose episode this is: safety, withdrawal, mood, engagement.",
    )


class EscalationResolved(Event):
    """A clinician resolved an escalation episode: paging for it stops.

    ``resolution`` ``resume_taper`` also lifts the taper hold that monitoring's threshold caused
    (the scheduler records it as that clinician's resume decision); any other resolution leaves
    the taper as it is. The clinician's note stays in monitoring: events carry codes only.
    """

    EVENT_TYPE: ClassVar[str] = "EscalationResolved"
    PRODUCER: ClassVar[str] = "monitoring"
    event_type: Literal["EscalationResolved"] = "EscalationResolved"

    episode_id: uuid.UUID
    family: Code
    severity: Severity = Field(description="The highest severity the episode reached.")
    resolution: Literal["resume_taper", "keep_held", "referred", "no_action_needed"]
    resolved_by: Subject = Field(description="The resolving clinician's subject (an opaque id).")


class CheckInDue(Event):
    """A check-in after a dose step is due: the patient is reminded; if no report arrives before
    ``window_closes_at`` the missed check-in counts as a signal (an ``engagement`` episode)."""

    EVENT_TYPE: ClassVar[str] = "CheckInDue"
    PRODUCER: ClassVar[str] = "monitoring"
    event_type: Literal["CheckInDue"] = "CheckInDue"

    checkin_id: uuid.UUID
    due_at: datetime
    window_closes_at: datetime
    instruments: tuple[Code, ...] = Field(min_length=1, examples=[("ciwa-b",)])
    after_dose_event_id: uuid.UUID = Field(description="The DoseReduced this check-in follows.")
