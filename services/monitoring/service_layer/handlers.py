"""Monitoring's use cases: commands from the API and events from Kafka, each in one unit of work."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from contracts import DoseReduced, SymptomReported
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import dose_history, rule_overrides, symptom_reports
from services.monitoring.adapters.trend_chart import Point, Trend
from services.monitoring.domain import instruments, intake, rules
from services.monitoring.domain.model import InvalidReport
from services.monitoring.service_layer import checkins, episodes
from services.monitoring.service_layer.dose_changes import REDUCTION


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
            earlier = await _find_by_key(uow, cmd.patient_id, cmd.idempotency_key)
            if earlier is not None:
                stored, result = earlier
                if stored is None or stored != cmd.fingerprint:
                    raise IdempotencyKeyReused()
                return result
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
    score = taken.score
    context = await _context(uow, cmd.patient_id, definition.code)
    facts = rules.ReportFacts(
        score,
        taken.answers,
        taken.red_flags,
        taken.pulse_bpm,
        oriented=taken.oriented,
        instrument=definition.code,
    )
    findings = rules.evaluate(facts, context, ruleset)
    severity = rules.worst([f.severity for f in findings])
    # A refused instrument is stored like a failed gate: not scored, kept out of baselines and
    # trends (they skip method "not-scored"); its valid answers are kept, refused values never.
    scored = score is not None and score.scored
    total = score.total if score is not None else 0
    band = score.band if score is not None else instruments.NOT_SCORED
    method = score.method if score is not None else instruments.METHOD_NOT_SCORED

    report_id = uuid.uuid4()
    now = uow.clock.now()
    reasons = [f.reason.__dict__ for f in findings]
    refused = [r.__dict__ for r in taken.refused]
    await uow.session.execute(
        sa.insert(symptom_reports).values(
            id=report_id,
            patient_id=cmd.patient_id,
            idempotency_key=cmd.idempotency_key,
            body_fingerprint=cmd.fingerprint if cmd.idempotency_key else None,
            instrument=definition.code,
            instrument_version=definition.version,
            method=method,
            answers=dict(taken.answers),
            red_flags=list(taken.red_flags),
            total_score=total,
            band=band,
            severity=severity,
            reasons=reasons,
            refused_items=refused,
            pulse_bpm=taken.pulse_bpm,
            submitted_by=cmd.submitted_by,
            reported_at=now,
        )
    )
    reported = SymptomReported.create(
        patient_id=cmd.patient_id,
        occurred_at=now,
        report_id=report_id,
        instrument=definition.code,
        instrument_version=definition.version,
        method=method if scored else "self-report-modified",
        total_score=total,
        band=band,
        red_flags=tuple(sorted(set(taken.red_flags))),
    )
    await uow.publish(reported)
    # A report in a check-in's window completes it; a gate failure counts too (the patient did
    # report, and the report escalates on its own). A refused instrument does not: the check-in
    # still lacks its score.
    if score is not None:
        await checkins.complete_due_checkins(uow, cmd.patient_id, report_id, score.instrument, now)
    await episodes.escalate(uow, cmd.patient_id, findings, report_id, cause=reported)
    return ReportResult(report_id, total, band, method, severity, reasons, refused_items=refused)


async def _context(uow: UnitOfWork, patient_id: uuid.UUID, instrument: str) -> rules.PatientContext:
    """The patient's baseline, latest dose step and thresholds, for this instrument's rules.

    The baseline is the last report of the instrument before the first dose step took effect;
    the withdrawal window compares with the last report before the latest step.
    """
    today = uow.clock.now().date()
    steps = (
        await uow.session.execute(
            sa.select(dose_history.c.effective_on, dose_history.c.half_life_class)
            .where(
                dose_history.c.patient_id == patient_id,
                dose_history.c.effective_on <= today,
                # A return to the prior dose is an increase: it opens no withdrawal window
                # (the last cut's window goes on; see dose_changes.record_dose_restored).
                dose_history.c.change == REDUCTION,
            )
            .order_by(dose_history.c.effective_on)
        )
    ).all()
    thresholds = await uow.session.scalar(
        sa.select(rule_overrides.c.thresholds).where(rule_overrides.c.patient_id == patient_id)
    )
    if not steps:
        return rules.PatientContext(today=today, thresholds=thresholds or {})
    first_on, (last_on, half_life) = steps[0][0], steps[-1]
    return rules.PatientContext(
        today=today,
        baseline_total=await _last_total_before(uow, patient_id, instrument, first_on),
        last_step_on=last_on,
        half_life_class=half_life,
        total_before_step=await _last_total_before(uow, patient_id, instrument, last_on),
        thresholds=thresholds or {},
    )


async def _last_total_before(
    uow: UnitOfWork, patient_id: uuid.UUID, instrument: str, day: date
) -> int | None:
    before = datetime.combine(day, time.min, tzinfo=UTC)
    total: int | None = await uow.session.scalar(
        sa.select(symptom_reports.c.total_score)
        .where(
            symptom_reports.c.patient_id == patient_id,
            symptom_reports.c.instrument == instrument,
            symptom_reports.c.method != "not-scored",
            symptom_reports.c.reported_at < before,
        )
        .order_by(symptom_reports.c.reported_at.desc())
        .limit(1)
    )
    return total


async def _find_by_key(
    uow: UnitOfWork, patient_id: uuid.UUID, key: str
) -> tuple[str | None, ReportResult] | None:
    """The stored body fingerprint and the result of the report sent with ``key``."""
    row = (
        (
            await uow.session.execute(
                sa.select(symptom_reports).where(
                    symptom_reports.c.patient_id == patient_id,
                    symptom_reports.c.idempotency_key == key,
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return row["body_fingerprint"], ReportResult(
        row["id"],
        row["total_score"],
        row["band"],
        row["method"],
        row["severity"],
        row["reasons"],
        replayed=True,
        refused_items=row["refused_items"] or [],
    )


async def trend(uow: UnitOfWork, patient_id: uuid.UUID, instrument: str) -> Trend:
    """Every scored report of ``instrument`` with the dose steps and this patient's thresholds."""
    definition = instruments.definition(instrument, "1")
    reports = await uow.session.execute(
        sa.select(
            symptom_reports.c.reported_at,
            symptom_reports.c.total_score,
            symptom_reports.c.band,
            symptom_reports.c.severity,
        )
        .where(
            symptom_reports.c.patient_id == patient_id,
            symptom_reports.c.instrument == instrument,
            symptom_reports.c.method != "not-scored",
        )
        .order_by(symptom_reports.c.reported_at)
    )
    steps = await uow.session.scalars(
        sa.select(dose_history.c.effective_on)
        .where(dose_history.c.patient_id == patient_id)
        .order_by(dose_history.c.effective_on)
    )
    overrides = await uow.session.scalar(
        sa.select(rule_overrides.c.thresholds).where(rule_overrides.c.patient_id == patient_id)
    )
    levels: list[tuple[str, int]] = []
    ruleset = rules.rules_v2()
    for band in ruleset.bands:
        if band.instrument != instrument:
            continue
        amber, red = ruleset.band_levels(band, overrides or {})
        for level, at in (("AMBER", amber), ("RED", red)):
            if at is not None:
                levels.append((level, at))
    return Trend(
        instrument=instrument,
        total_max=definition.total_max,
        points=tuple(Point(r[0], r[1], r[2], r[3]) for r in reports.all()),
        dose_steps=tuple(steps.all()),
        thresholds=tuple(levels),
    )


async def record_dose_reduced(event: DoseReduced, uow: UnitOfWork) -> None:
    """Remember each dose step (the withdrawal window after it shapes the rules) and schedule
    the check-ins that follow it."""
    await uow.session.execute(
        sa.insert(dose_history).values(
            event_id=event.event_id,
            patient_id=event.patient_id,
            drug=event.drug,
            new_daily_dose_mg=event.new_daily_dose_mg,
            effective_on=event.effective_on,
            half_life_class=event.half_life_class,
        )
    )
    await checkins.schedule_checkins(event, uow)
