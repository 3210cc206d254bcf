"""Symptom reports in the ``symptom_reports`` table: added as ``SymptomReport`` aggregates (their
``SymptomReported`` reaches the outbox on commit), found again by idempotency key, and read back
as the totals the rules and the trend compare (scored reports only: method ``not-scored`` is
kept out of baselines and trends)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.chassis.pagination import PageParams, fetch_page, within
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import symptom_reports
from services.monitoring.domain import instruments
from services.monitoring.domain.intake import Refusal
from services.monitoring.domain.model import Reason
from services.monitoring.domain.reports import SymptomReport
from services.monitoring.domain.trend import Point

SUMMARY = (
    symptom_reports.c.id,
    symptom_reports.c.instrument,
    symptom_reports.c.total_score,
    symptom_reports.c.band,
    symptom_reports.c.severity,
    symptom_reports.c.reported_at,
)
_SCORED = symptom_reports.c.method != instruments.METHOD_NOT_SCORED


class ReportRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add(self, report: SymptomReport) -> None:
        await self._uow.session.execute(sa.insert(symptom_reports).values(**_row(report)))
        self._uow.track(report)

    async def by_key(self, patient_id: uuid.UUID, key: str) -> SymptomReport | None:
        """The patient's report sent with this idempotency key."""
        r = symptom_reports.c
        row = (
            (
                await self._uow.session.execute(
                    sa.select(symptom_reports).where(
                        r.patient_id == patient_id, r.idempotency_key == key
                    )
                )
            )
            .mappings()
            .first()
        )
        return _report(row) if row is not None else None

    async def last_total_before(
        self, patient_id: uuid.UUID, instrument: str, before: datetime
    ) -> int | None:
        """The total of the patient's last scored report of ``instrument`` before ``before``."""
        r = symptom_reports.c
        total: int | None = await self._uow.session.scalar(
            sa.select(r.total_score)
            .where(
                r.patient_id == patient_id,
                r.instrument == instrument,
                _SCORED,
                r.reported_at < before,
            )
            .order_by(r.reported_at.desc())
            .limit(1)
        )
        return total

    async def scored_points(self, patient_id: uuid.UUID, instrument: str) -> tuple[Point, ...]:
        """Every scored report of ``instrument``, oldest first."""
        r = symptom_reports.c
        rows = await self._uow.session.execute(
            sa.select(r.reported_at, r.total_score, r.band, r.severity)
            .where(r.patient_id == patient_id, r.instrument == instrument, _SCORED)
            .order_by(r.reported_at)
        )
        return tuple(Point(*row) for row in rows.all())

    async def page(
        self,
        patient_id: uuid.UUID,
        page: PageParams,
        *,
        full: bool = False,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, reported in [since, until): the summary columns, or every column
        (``full``, for renderers such as the FHIR view); the next page's cursor."""
        r = symptom_reports.c
        query = sa.select(symptom_reports) if full else sa.select(*SUMMARY)
        query = query.where(r.patient_id == patient_id)
        query = within(query, r.reported_at, since, until)
        return await fetch_page(self._uow.session, query, (r.reported_at, r.id), page)


def _row(report: SymptomReport) -> dict[str, Any]:
    return {
        "id": report.id,
        "patient_id": report.patient_id,
        "idempotency_key": report.idempotency_key,
        "body_fingerprint": report.body_fingerprint,
        "instrument": report.instrument,
        "instrument_version": report.instrument_version,
        "method": report.method,
        "answers": dict(report.answers),
        "red_flags": list(report.red_flags),
        "total_score": report.total_score,
        "band": report.band,
        "severity": report.severity,
        "reasons": [r.__dict__ for r in report.reasons],
        "refused_items": [r.__dict__ for r in report.refused],
        "pulse_bpm": report.pulse_bpm,
        "submitted_by": report.submitted_by,
        "reported_at": report.reported_at,
    }


def _report(row: Any) -> SymptomReport:
    return SymptomReport(
        id=row["id"],
        patient_id=row["patient_id"],
        instrument=row["instrument"],
        instrument_version=row["instrument_version"],
        method=row["method"],
        answers=row["answers"],
        red_flags=tuple(row["red_flags"]),
        total_score=row["total_score"],
        band=row["band"],
        severity=row["severity"],
        reasons=tuple(Reason(**r) for r in row["reasons"]),
        refused=tuple(Refusal(**r) for r in row["refused_items"] or ()),
        pulse_bpm=row["pulse_bpm"],
        submitted_by=row["submitted_by"],
        reported_at=row["reported_at"],
        idempotency_key=row["idempotency_key"],
        body_fingerprint=row["body_fingerprint"],
    )
