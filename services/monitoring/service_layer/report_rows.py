"""A patient's stored symptom reports as full rows, for renderers that need every column (the
FHIR view); ``handlers.list_reports`` keeps returning the summary columns only."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import symptom_reports


async def full_reports(uow: UnitOfWork, patient_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await uow.session.execute(
        sa.select(symptom_reports)
        .where(symptom_reports.c.patient_id == patient_id)
        .order_by(symptom_reports.c.reported_at, symptom_reports.c.id)
    )
    return [dict(r) for r in rows.mappings()]
