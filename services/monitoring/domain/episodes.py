"""Escalation episodes: at most one open per patient and rule family. Pure: no I/O, no clock.

A page that is sent five times trains clinicians to ignore pages, and one that is lost can cost a
life. So a tripped rule opens an episode (announced once as ``ThresholdExceeded``); further reports
in the same family update it quietly, and only a rise from AMBER to RED is announced again (the
same episode, a higher level: notifications pages that level once). A clinician resolves it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from services.monitoring.domain.model import Reason, Severity
from services.monitoring.domain.rules import Finding, worst


class EpisodeStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


RESOLUTIONS = frozenset({"resume_taper", "keep_held", "referred", "no_action_needed"})


class EpisodeConflict(ValueError):
    """The episode's state forbids the request (already resolved...); safe to show."""


@dataclass
class Episode:
    id: uuid.UUID
    patient_id: uuid.UUID
    family: str
    severity: Severity
    opened_at: datetime
    updated_at: datetime
    last_source_id: uuid.UUID  # the report (or missed check-in) that last touched it
    reasons: tuple[Reason, ...]
    source_count: int = 1
    status: EpisodeStatus = EpisodeStatus.OPEN
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    version: int = 0
    history: list[str] = field(default_factory=list)  # severities, oldest first (for display)

    @classmethod
    def open(
        cls, patient_id: uuid.UUID, findings: list[Finding], source_id: uuid.UUID, now: datetime
    ) -> Episode:
        family = _one_family(findings)
        severity = worst([f.severity for f in findings])
        assert severity is not None
        return cls(
            id=uuid.uuid4(),
            patient_id=patient_id,
            family=family,
            severity=severity,
            opened_at=now,
            updated_at=now,
            last_source_id=source_id,
            reasons=tuple(f.reason for f in findings),
            history=[severity.value],
        )

    def absorb(self, findings: list[Finding], source_id: uuid.UUID, now: datetime) -> bool:
        """A further report in this family; True when the episode rises to a higher level."""
        if self.status is not EpisodeStatus.OPEN:
            raise EpisodeConflict("the episode is resolved")
        if _one_family(findings) != self.family:
            raise ValueError("findings of another family")
        severity = worst([f.severity for f in findings])
        assert severity is not None
        rises = worst([severity, self.severity]) is not self.severity
        if rises:
            self.severity = severity
            self.history.append(severity.value)
        self.reasons = tuple(f.reason for f in findings)
        self.last_source_id = source_id
        self.source_count += 1
        self.updated_at = now
        return rises

    def acknowledge(self, now: datetime) -> bool:
        """A page for this episode was acknowledged; the first acknowledgement stands."""
        if self.acknowledged_at is not None:
            return False
        self.acknowledged_at = now
        self.updated_at = now
        return True

    def resolve(self, clinician: str, resolution: str, now: datetime) -> None:
        if self.status is not EpisodeStatus.OPEN:
            raise EpisodeConflict("the episode is already resolved")
        if resolution not in RESOLUTIONS:
            raise ValueError("unknown resolution")
        if not clinician:
            raise ValueError("the resolving clinician is required")
        self.status = EpisodeStatus.RESOLVED
        self.resolved_at = now
        self.resolved_by = clinician
        self.resolution = resolution
        self.updated_at = now


def _one_family(findings: list[Finding]) -> str:
    families = {f.family for f in findings}
    if len(families) != 1:
        raise ValueError("an episode takes the findings of one family")
    return families.pop()


def by_family(findings: tuple[Finding, ...]) -> dict[str, list[Finding]]:
    grouped: dict[str, list[Finding]] = {}
    for f in findings:
        grouped.setdefault(f.family, []).append(f)
    return grouped
