"""Submitting a symptom report: take it in, score it, store it, and escalate what it trips.

One unit of work per report. The ``SymptomReport`` aggregate records ``SymptomReported``; the
episodes it escalates record their ``ThresholdExceeded`` (``episodes.escalate``); both reach the
outbox on commit, the report's first.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.dose_history_repository import DoseHistoryRepository
from services.monitoring.adapters.report_repository import ReportRepository
from services.monitoring.adapters.threshold_repository import ThresholdRepository
from services.monitoring.domain import instruments, intake, rules
from services.monitoring.domain.model import InvalidReport
from services.monitoring.domain.reports import SymptomReport
from services.monitoring.service_layer import checkins, episodes


@dataclass(frozen=True)
class SubmitReport:
    """A report as submitted: answers, red flags, orientation and pulse are unchecked (the
    domain takes what is valid and lists the rest, ``intake``)."""

    patient_id: uuid.UUID
    instrument: str
    instrument_version: str
    answers: Mapping[str, object]
    red_flags: tuple[object, ...]
    oriented: object
    submitted_by: str
    idempotency_key: str | None = None
    pulse_bpm: object = None
    fingerprint: str | None = None  # body_fingerprint(...) of the request body, with the key


@dataclass(frozen=True)
class ReportResult:
    report_id: uuid.UUID
    total_score: int
    band: str
    method: str
    severity: str | None
    reasons: list[dict[str, Any]]
    replayed: bool = False
    refused_items: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, report: SymptomReport, *, replayed: bool = False) -> ReportResult:
        return cls(
            report.id,
            report.total_score,
            report.band,
            report.method,
            report.severity,
            [r.__dict__ for r in report.reasons],
            replayed=replayed,
            refused_items=[r.__dict__ for r in report.refused],
        )


class IdempotencyKeyReused(InvalidReport):
    """The key was already used for this patient with a different body (IETF Idempotency-Key
    draft, Stripe): refused, so a new report is never mistaken for a retry of the old one."""

    def __init__(self) -> None:
        super().__init__("idempotency_key", "already used with a different request body")


def body_fingerprint(body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a request body (keys sorted, no whitespace)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def submit_report(cmd: SubmitReport, uow: UnitOfWork) -> ReportResult:
    """Take in, store and announce a report, and escalate what it trips; commits.

    The safety part escalates even when items of the instrument are refused (``intake``).
    A repeated idempotency key with the same body returns the first result (``replayed``) and
    escalates nothing; with another body it raises ``IdempotencyKeyReused``. Two reports racing
    to open the same episode: the loser is retried once and joins the open episode.
    """
    for attempt in (1, 2):
        if cmd.idempotency_key:
            earlier = await ReportRepository(uow).by_key(cmd.patient_id, cmd.idempotency_key)
            if earlier is not None:
                if earlier.body_fingerprint is None or earlier.body_fingerprint != cmd.fingerprint:
                    raise IdempotencyKeyReused()
                return ReportResult.of(earlier, replayed=True)
        try:
            # The insert itself can meet the unique index (PostgreSQL checks it when the row is
            # written, waiting for a concurrent writer of the same key): not only the commit.
            result = await _score_and_escalate(cmd, uow)
            await uow.commit()
        except IntegrityError:
            # The same idempotency key, or the same episode, committed concurrently.
            await uow.rollback()
            if attempt == 2:
                raise
            continue
        return result
    raise AssertionError("unreachable")  # pragma: no cover


async def _score_and_escalate(cmd: SubmitReport, uow: UnitOfWork) -> ReportResult:
    definition = instruments.definition(cmd.instrument, cmd.instrument_version)
    ruleset = rules.rules_v2()
    taken = intake.take(
        definition,
        answers=cmd.answers,
        red_flags=cmd.red_flags,
        oriented=cmd.oriented,
        pulse_bpm=cmd.pulse_bpm,
        known_red_flags=ruleset.red_flags,
    )
    context = await _context(uow, cmd.patient_id, definition.code)
    facts = rules.ReportFacts(
        taken.score,
        taken.answers,
        taken.red_flags,
        taken.pulse_bpm,
        oriented=taken.oriented,
        instrument=definition.code,
    )
    findings = rules.evaluate(facts, context, ruleset)
    now = uow.clock.now()
    report = SymptomReport.take(
        cmd.patient_id,
        definition,
        taken,
        findings,
        submitted_by=cmd.submitted_by,
        now=now,
        idempotency_key=cmd.idempotency_key,
        fingerprint=cmd.fingerprint,
    )
    await ReportRepository(uow).add(report)
    # A report in a check-in's window completes it; a gate failure counts too (the patient did
    # report, and the report escalates on its own). A refused instrument does not: the check-in
    # still lacks its score.
    if taken.score is not None:
        await checkins.complete_due_checkins(
            uow, cmd.patient_id, report.id, taken.score.instrument, now
        )
    await episodes.escalate(uow, cmd.patient_id, findings, report.id, cause=report.announcement())
    return ReportResult.of(report)


async def _context(uow: UnitOfWork, patient_id: uuid.UUID, instrument: str) -> rules.PatientContext:
    """The patient's baseline, latest dose step and thresholds, for this instrument's rules.

    The baseline is the last report of the instrument before the first dose step took effect;
    the withdrawal window compares with the last report before the latest step (a return to
    the prior dose opens no window: ``domain.dose_history``).
    """
    today = uow.clock.now().date()
    steps = await DoseHistoryRepository(uow).reductions(patient_id, until=today)
    thresholds = await ThresholdRepository(uow).thresholds(patient_id)
    if not steps:
        return rules.PatientContext(today=today, thresholds=thresholds)
    reports = ReportRepository(uow)
    first_on, (last_on, half_life) = steps[0][0], steps[-1]
    return rules.PatientContext(
        today=today,
        baseline_total=await reports.last_total_before(patient_id, instrument, _start(first_on)),
        last_step_on=last_on,
        half_life_class=half_life,
        total_before_step=await reports.last_total_before(patient_id, instrument, _start(last_on)),
        thresholds=thresholds,
    )


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
