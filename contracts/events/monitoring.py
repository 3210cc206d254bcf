"""Facts the monitoring service owns."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contracts.envelope import Event


class Severity(StrEnum):
    RED = "RED"
    AMBER = "AMBER"


Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.:-]{1,64}$")]


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
    """A report tripped a rule: a clinician must look (RED pages at once, AMBER same day)."""

    EVENT_TYPE: ClassVar[str] = "ThresholdExceeded"
    PRODUCER: ClassVar[str] = "monitoring"
    event_type: Literal["ThresholdExceeded"] = "ThresholdExceeded"

    report_id: uuid.UUID
    episode_id: uuid.UUID
    severity: Severity
    reasons: tuple[ThresholdReason, ...] = Field(min_length=1)
