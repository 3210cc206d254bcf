"""A patient's trend on one instrument: scored reports, dose changes and their thresholds."""

from __future__ import annotations

import uuid

from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.dose_history_repository import DoseHistoryRepository
from services.monitoring.adapters.report_repository import ReportRepository
from services.monitoring.adapters.threshold_repository import ThresholdRepository
from services.monitoring.domain import instruments, rules
from services.monitoring.domain.trend import Trend, threshold_levels


async def trend(uow: UnitOfWork, patient_id: uuid.UUID, instrument: str) -> Trend:
    """Every scored report of ``instrument`` with the dose steps and this patient's thresholds."""
    definition = instruments.definition(instrument, "1")
    overrides = await ThresholdRepository(uow).thresholds(patient_id)
    return Trend(
        instrument=instrument,
        total_max=definition.total_max,
        points=await ReportRepository(uow).scored_points(patient_id, instrument),
        dose_steps=await DoseHistoryRepository(uow).change_dates(patient_id),
        thresholds=threshold_levels(rules.rules_v2(), instrument, overrides),
    )
