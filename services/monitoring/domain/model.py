"""Scoring a symptom report and deciding whether a clinician must be paged. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    RED = "RED"
    AMBER = "AMBER"


class InvalidReport(ValueError):
    """A report that cannot be scored; ``field`` names the offending item (never its value)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Reason:
    code: str
    instrument: str | None = None
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class Score:
    instrument: str
    version: str
    method: str  # "self-report-modified" when the clinician-observed items are absent
    total: int
    band: str
    scored: bool = True  # False when the orientation gate failed: not scored, escalated
