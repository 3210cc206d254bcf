"""A patient's stored symptom reports, a page at a time: the summary columns for the JSON list,
or full rows for renderers that need every column (the FHIR view)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.chassis.pagination import PageParams, fetch_page, within
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import symptom_reports

SUMMARY = (
    symptom_reports.c.id,
    symptom_reports.c.instrument,
    symptom_reports.c.total_score,
    symptom_reports.c.band,
    symptom_reports.c.severity,
    symptom_reports.c.reported_at,
)


async def report_page(
    uow: UnitOfWork,
    patient_id: uuid.UUID,
    page: PageParams,
    *,
    full: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, reported in [since, until); the next page's cursor (None on the last)."""
    r = symptom_reports.c
    query = sa.select(symptom_reports) if full else sa.select(*SUMMARY)
    query = query.where(r.patient_id == patient_id)
    query = within(query, r.reported_at, since, until)
    return await fetch_page(uow.session, query, (r.reported_at, r.id), page)
