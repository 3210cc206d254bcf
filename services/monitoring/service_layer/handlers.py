"""Monitoring's use cases: commands from the API and events from Kafka, each in one unit of work."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from contracts import DoseReduced, SymptomReported, ThresholdExceeded, ThresholdReason
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import dose_history, symptom_reports
from services.monitoring.domain import model
from services.monitoring.domain.reference import ciwa_b_v1, rules_v1


@dataclass(frozen=True)
class SubmitReport:
    patient_id: uuid.UUID
    instrument: str
    instrument_version: str
    answers: dict[str, int]
    red_flags: tuple[str, ...]
    oriented: bool
    submitted_by: str
    idempotency_key: str | None = None


@dataclass(frozen=True)
class ReportResult:
    report_id: uuid.UUID
    total_score: int
    band: str
    method: str
    severity: str | None
    reasons: list[dict[str, Any]]
    replayed: bool = False


SUPPORTED = {("ciwa-b", "1")}


async def submit_report(cmd: SubmitReport, uow: UnitOfWork) -> ReportResult:
    """Score, store and announce a report; a repeated idempotency key returns the first result."""
    if cmd.idempotency_key:
        earlier = await _find_by_key(uow, cmd.patient_id, cmd.idempotency_key)
        if earlier is not None:
            return earlier
    if (cmd.instrument, cmd.instrument_version) not in SUPPORTED:
        raise model.InvalidReport("instrument_version", "unknown instrument or version")
    score = model.score_ciwa_b(ciwa_b_v1(), cmd.answers, oriented=cmd.oriented)
    assessment = model.assess(score, cmd.red_flags, rules_v1())

    report_id = uuid.uuid4()
    now = uow.clock.now()
    reasons = [r.__dict__ for r in assessment.reasons]
    await uow.session.execute(
        sa.insert(symptom_reports).values(
            id=report_id,
            patient_id=cmd.patient_id,
            idempotency_key=cmd.idempotency_key,
            instrument=score.instrument,
            instrument_version=score.version,
            method=score.method,
            answers=cmd.answers,
            red_flags=list(cmd.red_flags),
            total_score=score.total,
            band=score.band,
            severity=assessment.severity,
            reasons=reasons,
            submitted_by=cmd.submitted_by,
            reported_at=now,
        )
    )
    reported = SymptomReported.create(
        patient_id=cmd.patient_id,
        occurred_at=now,
        report_id=report_id,
        instrument=score.instrument,
        instrument_version=score.version,
        method="self-report-modified" if not score.scored else score.method,
        total_score=score.total,
        band=score.band,
        red_flags=tuple(sorted(set(cmd.red_flags))),
    )
    await uow.publish(reported)
    if assessment.severity is not None:
        await uow.publish(
            ThresholdExceeded.create(
                patient_id=cmd.patient_id,
                occurred_at=now,
                report_id=report_id,
                episode_id=uuid.uuid4(),
                severity=assessment.severity.value,
                reasons=tuple(ThresholdReason(**r) for r in reasons),
                **reported.caused(),
            )
        )
    try:
        await uow.commit()
    except IntegrityError:
        # The same idempotency key committed concurrently: the first submission stands.
        await uow.rollback()
        if cmd.idempotency_key:
            earlier = await _find_by_key(uow, cmd.patient_id, cmd.idempotency_key)
            if earlier is not None:
                return earlier
        raise
    return ReportResult(
        report_id, score.total, score.band, score.method, assessment.severity, reasons
    )


async def _find_by_key(uow: UnitOfWork, patient_id: uuid.UUID, key: str) -> ReportResult | None:
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
    return ReportResult(
        row["id"],
        row["total_score"],
        row["band"],
        row["method"],
        row["severity"],
        row["reasons"],
        replayed=True,
    )


async def list_reports(uow: UnitOfWork, patient_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await uow.session.execute(
        sa.select(
            symptom_reports.c.id,
            symptom_reports.c.instrument,
            symptom_reports.c.total_score,
            symptom_reports.c.band,
            symptom_reports.c.severity,
            symptom_reports.c.reported_at,
        )
        .where(symptom_reports.c.patient_id == patient_id)
        .order_by(symptom_reports.c.reported_at)
    )
    return [dict(r) for r in rows.mappings()]


async def record_dose_reduced(event: DoseReduced, uow: UnitOfWork) -> None:
    """Remember each dose step: the withdrawal window after it shapes monitoring (issue 4)."""
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
