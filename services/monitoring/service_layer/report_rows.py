"""A patient's stored symptom reports, a page at a time: the summary columns for the JSON list,
or full rows for renderers that need every column (the FHIR view)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.chassis.pagination import PageParams
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.report_repository import ReportRepository


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
    return await ReportRepository(uow).page(patient_id, page, full=full, since=since, until=until)
