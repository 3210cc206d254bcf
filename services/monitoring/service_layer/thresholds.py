"""Per-patient rule thresholds a clinician sets (the keys ``rules.v2`` lists as overridable)."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import rule_overrides
from services.monitoring.domain.rules import rules_v2


async def set_thresholds(
    uow: UnitOfWork,
    patient_id: uuid.UUID,
    thresholds: dict[str, int],
    clinician: str,
    reason_code: str,
) -> dict[str, Any]:
    """Replace the patient's thresholds (an empty dict restores the defaults)."""
    rules_v2().check_overrides(thresholds)
    values = {
        "thresholds": thresholds,
        "set_by": clinician,
        "reason_code": reason_code,
        "set_at": uow.clock.now(),
    }
    exists = await uow.session.scalar(
        sa.select(sa.func.count())
        .select_from(rule_overrides)
        .where(rule_overrides.c.patient_id == patient_id)
    )
    if exists:
        await uow.session.execute(
            sa.update(rule_overrides)
            .where(rule_overrides.c.patient_id == patient_id)
            .values(**values)
        )
    else:
        await uow.session.execute(sa.insert(rule_overrides).values(patient_id=patient_id, **values))
    return values


async def get_thresholds(uow: UnitOfWork, patient_id: uuid.UUID) -> dict[str, Any]:
    row = (
        (
            await uow.session.execute(
                sa.select(rule_overrides).where(rule_overrides.c.patient_id == patient_id)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return {"thresholds": {}, "set_by": None, "reason_code": None, "set_at": None}
    return {k: row[k] for k in ("thresholds", "set_by", "reason_code", "set_at")}
