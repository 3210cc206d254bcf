"""Escalation episodes: at most one open per patient and rule family. Pure: no I/O, no clock.

A page that is sent five times trains clinicians to ignore pages, and one that is lost can cost a
life. So a tripped rule opens an episode (announced once as ``ThresholdExceeded``); further reports
in the same family update it quietly, and only a rise from AMBER to RED is announced again (the
same episode, a higher level: notifications pages that level once). A clinician resolves it
(``EscalationResolved``). The episode records these events itself (``events``); the unit of work
publishes them when the change commits, so no use case builds one.

States (``EpisodeStatus``) and the moves ``TRANSITIONS`` allows::

    open --absorb / acknowledge--> open --resolve--> resolved (final)

Any other move raises ``ForbiddenTransition`` (an ``EpisodeConflict``) naming both states. An
acknowledgement changes no state: a page acknowledged after the episode was resolved is still
recorded (the first acknowledgement stands).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from contracts import EscalationResolved, Event, ThresholdExceeded, ThresholdReason
from services.monitoring.domain.model import Reason, Severity
from services.monitoring.domain.rules import Finding, worst


class EpisodeStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


TRANSITIONS: Mapping[EpisodeStatus, frozenset[EpisodeStatus]] = {
    EpisodeStatus.OPEN: frozenset({EpisodeStatus.OPEN, EpisodeStatus.RESOLVED}),
    EpisodeStatus.RESOLVED: frozenset(),
}

RESOLUTIONS = frozenset({"resume_taper", "keep_held", "referred", "no_action_needed"})


class EpisodeConflict(ValueError):
    """The episode's state forbids the request (already resolved...); safe to show."""


class ForbiddenTransition(EpisodeConflict):
    """A move ``TRANSITIONS`` does not allow, e.g. absorbing a report into a resolved episode."""

    def __init__(self, current: EpisodeStatus, wanted: EpisodeStatus, message: str) -> None:
        super().__init__(message)
        self.current = current
        self.wanted = wanted


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
    resolution_note: str | None = None  # the clinician's free text: stored, never announced
    version: int = 0
    history: list[str] = field(default_factory=list)  # severities, oldest first (for display)
    events: list[Event] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def open(
        cls,
        patient_id: uuid.UUID,
        findings: list[Finding],
        source_id: uuid.UUID,
        now: datetime,
        *,
        cause: Event | None = None,
    ) -> Episode:
        """A new episode for these findings of one family, announced (``ThresholdExceeded``)."""
        family = _one_family(findings)
        severity = worst([f.severity for f in findings])
        assert severity is not None
        episode = cls(
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
        episode._announce(source_id, now, cause)
        return episode

    def absorb(
        self,
        findings: list[Finding],
        source_id: uuid.UUID,
        now: datetime,
        *,
        cause: Event | None = None,
    ) -> bool:
        """A further report in this family; True (and announced) when it rises a level."""
        self._move(EpisodeStatus.OPEN, "the episode is resolved")
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
        if rises:
            self._announce(source_id, now, cause)
        return rises

    def acknowledge(self, now: datetime) -> bool:
        """A page for this episode was acknowledged; the first acknowledgement stands."""
        if self.acknowledged_at is not None:
            return False
        self.acknowledged_at = now
        self.updated_at = now
        return True

    def resolve(
        self, clinician: str, resolution: str, now: datetime, *, note: str | None = None
    ) -> None:
        """Close the episode and announce ``EscalationResolved`` (codes only; the note stays)."""
        self._move(EpisodeStatus.RESOLVED, "the episode is already resolved")
        if resolution not in RESOLUTIONS:
            raise ValueError("unknown resolution")
        if not clinician:
            raise ValueError("the resolving clinician is required")
        self.status = EpisodeStatus.RESOLVED
        self.resolved_at = now
        self.resolved_by = clinician
        self.resolution = resolution
        self.resolution_note = note
        self.updated_at = now
        self.events.append(
            EscalationResolved.create(
                patient_id=self.patient_id,
                occurred_at=now,
                episode_id=self.id,
                family=self.family,
                severity=self.severity.value,
                resolution=resolution,
                resolved_by=clinician,
            )
        )

    def pull_events(self) -> list[Event]:
        """The recorded events, oldest first; forgotten here (the unit of work publishes them)."""
        events, self.events = self.events, []
        return events

    def _move(self, wanted: EpisodeStatus, message: str) -> None:
        if wanted not in TRANSITIONS[self.status]:
            raise ForbiddenTransition(self.status, wanted, message)

    def _announce(self, source_id: uuid.UUID, now: datetime, cause: Event | None) -> None:
        self.events.append(
            ThresholdExceeded.create(
                patient_id=self.patient_id,
                occurred_at=now,
                report_id=source_id,
                episode_id=self.id,
                severity=self.severity.value,
                reasons=tuple(_reason(r) for r in self.reasons),
                family=self.family,
                **(cause.caused() if cause else {}),
            )
        )


def _reason(r: Reason) -> ThresholdReason:
    return ThresholdReason(
        code=r.code, instrument=r.instrument, value=r.value, threshold=r.threshold
    )


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
