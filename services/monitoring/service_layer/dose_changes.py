"""The patient's dose history as monitoring keeps it: every dose change the scheduler announces.

``DoseReduced`` is recorded by ``handlers.record_dose_reduced`` (which also schedules its
check-ins); ``DoseRestored`` here. A restore is the clinician returning the patient to the dose
before the last step because of withdrawal (clinical reference §2, "going back up"; the taper is
held until resumed). It is an INCREASE, so it opens no "worsening after a cut" window of its own:
the withdrawal rule keeps comparing with the last reduction, whose window the patient is still
in (a symptom peak inside it is still that cut's withdrawal, and a restore must not reset the
comparison to a report already taken during that withdrawal). It schedules no check-ins either:
the cut's check-ins stay in place and the taper is held, so nothing new is being tapered.
"""

from __future__ import annotations

import sqlalchemy as sa

from contracts import DoseRestored
from services.chassis.uow import UnitOfWork
from services.monitoring.adapters.orm import dose_history

REDUCTION = "reduction"
RESTORE = "restore"


async def record_dose_restored(event: DoseRestored, uow: UnitOfWork) -> None:
    """Record the restored dose in the dose history (charted; no withdrawal window)."""
    await uow.session.execute(
        sa.insert(dose_history).values(
            event_id=event.event_id,
            patient_id=event.patient_id,
            drug=event.drug,
            new_daily_dose_mg=event.restored_daily_dose_mg,
            effective_on=event.effective_on,
            half_life_class=event.half_life_class,
            change=RESTORE,
        )
    )
