"""Per-patient rule thresholds a clinician sets (the keys ``rules.v2`` lists as overridable)."""

from __future__ import annotations

import uuid
from typing import Any

from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.threshold_repository import ThresholdRepository
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
    await ThresholdRepository(uow).put(patient_id, values)
    return values


async def get_thresholds(uow: UnitOfWork, patient_id: uuid.UUID) -> dict[str, Any]:
    saved = await ThresholdRepository(uow).get(patient_id)
    if saved is None:
        return {"thresholds": {}, "set_by": None, "reason_code": None, "set_at": None}
    return saved
