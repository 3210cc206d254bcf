"""The dose changes the scheduler announces, consumed into monitoring's dose history.

``DoseReduced``: the step is recorded (its withdrawal window shapes the rules) and the check-ins
that follow it are scheduled. ``DoseRestored``: recorded and charted, no withdrawal window and no
check-ins (the cut's check-ins stay in place and the taper is held: ``domain.dose_history``).
"""

from __future__ import annotations

from contracts import DoseReduced, DoseRestored
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.dose_history_repository import DoseHistoryRepository
from services.monitoring.domain.dose_history import DoseChange, DoseStep
from services.monitoring.service_layer import checkins


async def record_dose_reduced(event: DoseReduced, uow: UnitOfWork) -> None:
    """Remember each dose step and schedule the check-ins that follow it."""
    await DoseHistoryRepository(uow).add(
        DoseStep(
            event_id=event.event_id,
            patient_id=event.patient_id,
            drug=event.drug,
            daily_dose_mg=event.new_daily_dose_mg,
            effective_on=event.effective_on,
            half_life_class=event.half_life_class,
        )
    )
    await checkins.schedule_checkins(event, uow)


async def record_dose_restored(event: DoseRestored, uow: UnitOfWork) -> None:
    """Record the restored dose in the dose history (charted; no withdrawal window)."""
    await DoseHistoryRepository(uow).add(
        DoseStep(
            event_id=event.event_id,
            patient_id=event.patient_id,
            drug=event.drug,
            daily_dose_mg=event.restored_daily_dose_mg,
            effective_on=event.effective_on,
            half_life_class=event.half_life_class,
            change=DoseChange.RESTORE,
        )
    )
