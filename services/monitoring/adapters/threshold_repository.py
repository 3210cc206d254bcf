"""Per-patient rule thresholds in the ``rule_overrides`` table (one row per patient)."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import rule_overrides

FIELDS = ("thresholds", "set_by", "reason_code", "set_at")


class ThresholdRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def get(self, patient_id: uuid.UUID) -> dict[str, Any] | None:
        """The patient's row (``FIELDS``); None when their thresholds were never set."""
        row = (
            (
                await self._uow.session.execute(
                    sa.select(rule_overrides).where(rule_overrides.c.patient_id == patient_id)
                )
            )
            .mappings()
            .first()
        )
        return {k: row[k] for k in FIELDS} if row is not None else None

    async def thresholds(self, patient_id: uuid.UUID) -> dict[str, int]:
        """The patient's overrides; empty: the defaults apply."""
        found = await self._uow.session.scalar(
            sa.select(rule_overrides.c.thresholds).where(rule_overrides.c.patient_id == patient_id)
        )
        return found or {}

    async def put(self, patient_id: uuid.UUID, values: dict[str, Any]) -> None:
        """Replace the patient's row with ``values`` (``FIELDS``)."""
        exists = await self._uow.session.scalar(
            sa.select(sa.func.count())
            .select_from(rule_overrides)
            .where(rule_overrides.c.patient_id == patient_id)
        )
        if exists:
            await self._uow.session.execute(
                sa.update(rule_overrides)
                .where(rule_overrides.c.patient_id == patient_id)
                .values(**values)
            )
        else:
            await self._uow.session.execute(
                sa.insert(rule_overrides).values(patient_id=patient_id, **values)
            )
