"""A symptom report as stored: what intake took in, its score and what the rules found. Pure.

Taking a report records ``SymptomReported`` (the unit of work publishes it on commit, before the
``ThresholdExceeded`` of the episodes it escalates, which name it as their cause). A refused
instrument is stored like a failed gate: not scored (method ``not-scored``, kept out of baselines
and trends), its valid answers kept, refused values never.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from contracts import Event, SymptomReported
from services.monitoring.domain import instruments
from services.monitoring.domain.instruments import InstrumentDefinition
from services.monitoring.domain.intake import Intake, Refusal
from services.monitoring.domain.model import Reason
from services.monitoring.domain.rules import Finding, worst


@dataclass
class SymptomReport:
    id: uuid.UUID
    patient_id: uuid.UUID
    instrument: str
    instrument_version: str
    method: str
    answers: Mapping[str, int]
    red_flags: tuple[str, ...]
    total_score: int
    band: str
    severity: str | None  # the worst finding's severity; None when nothing tripped
    reasons: tuple[Reason, ...]
    refused: tuple[Refusal, ...]
    pulse_bpm: int | None
    submitted_by: str
    reported_at: datetime
    idempotency_key: str | None = None
    body_fingerprint: str | None = None  # of the body sent with the idempotency key
    events: list[Event] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def take(
        cls,
        patient_id: uuid.UUID,
        definition: InstrumentDefinition,
        taken: Intake,
        findings: tuple[Finding, ...],
        *,
        submitted_by: str,
        now: datetime,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
    ) -> SymptomReport:
        """The new report, announced (``SymptomReported``)."""
        score = taken.score
        report = cls(
            id=uuid.uuid4(),
            patient_id=patient_id,
            instrument=definition.code,
            instrument_version=definition.version,
            method=score.method if score is not None else instruments.METHOD_NOT_SCORED,
            answers=dict(taken.answers),
            red_flags=tuple(taken.red_flags),
            total_score=score.total if score is not None else 0,
            band=score.band if score is not None else instruments.NOT_SCORED,
            severity=worst([f.severity for f in findings]),
            reasons=tuple(f.reason for f in findings),
            refused=taken.refused,
            pulse_bpm=taken.pulse_bpm,
            submitted_by=submitted_by,
            reported_at=now,
            idempotency_key=idempotency_key,
            body_fingerprint=fingerprint if idempotency_key else None,
        )
        scored = score is not None and score.scored
        report.events.append(
            SymptomReported.create(
                patient_id=patient_id,
                occurred_at=now,
                report_id=report.id,
                instrument=report.instrument,
                instrument_version=report.instrument_version,
                method=report.method if scored else "self-report-modified",
                total_score=report.total_score,
                band=report.band,
                red_flags=tuple(sorted(set(taken.red_flags))),
            )
        )
        return report

    def announcement(self) -> Event | None:
        """The ``SymptomReported`` not yet published (the cause of what the report escalates)."""
        return next((e for e in self.events if isinstance(e, SymptomReported)), None)

    def pull_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events
