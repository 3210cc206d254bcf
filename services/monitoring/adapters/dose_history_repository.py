"""The patient's dose changes in the ``dose_history`` table (one row per announcing event)."""

from __future__ import annotations

import uuid
from datetime import date

import sqlalchemy as sa

from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import dose_history
from services.monitoring.domain.dose_history import DoseChange, DoseStep


class DoseHistoryRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add(self, step: DoseStep) -> None:
        await self._uow.session.execute(
            sa.insert(dose_history).values(
                event_id=step.event_id,
                patient_id=step.patient_id,
                drug=step.drug,
                new_daily_dose_mg=step.daily_dose_mg,
                effective_on=step.effective_on,
                half_life_class=step.half_life_class,
                change=step.change.value,
            )
        )

    async def reductions(self, patient_id: uuid.UUID, until: date) -> list[tuple[date, str]]:
        """(effective_on, half_life_class) of each reduction in effect by ``until``, oldest
        first (a restore opens no withdrawal window: ``domain.dose_history``)."""
        h = dose_history.c
        rows = await self._uow.session.execute(
            sa.select(h.effective_on, h.half_life_class)
            .where(
                h.patient_id == patient_id,
                h.effective_on <= until,
                h.change == DoseChange.REDUCTION.value,
            )
            .order_by(h.effective_on)
        )
        return [(on, half_life) for on, half_life in rows.all()]

    async def change_dates(self, patient_id: uuid.UUID) -> tuple[date, ...]:
        """The dates every dose change took effect (restores too), oldest first."""
        h = dose_history.c
        days = await self._uow.session.scalars(
            sa.select(h.effective_on).where(h.patient_id == patient_id).order_by(h.effective_on)
        )
        return tuple(days.all())
