"""The patient's dose changes as monitoring keeps them (the scheduler announces each). Pure.

A reduction (``DoseReduced``) opens a withdrawal window: the rules compare the patient's reports
with the last report before it. A restore (``DoseRestored``) is the clinician returning the
patient to the dose before the last step because of withdrawal (clinical reference §2, "going back
up"; the taper is held until resumed). It is an INCREASE, so it opens no window of its own: the
withdrawal rule keeps comparing with the last reduction, whose window the patient is still in (a
symptom peak inside it is still that cut's withdrawal, and a restore must not reset the
comparison to a report already taken during that withdrawal). Both are charted on the trend.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum


class DoseChange(StrEnum):
    REDUCTION = "reduction"
    RESTORE = "restore"


@dataclass(frozen=True)
class DoseStep:
    """One dose change, keyed by the event that announced it (a redelivery is the same step)."""

    event_id: uuid.UUID
    patient_id: uuid.UUID
    drug: str
    daily_dose_mg: Decimal
    effective_on: date
    half_life_class: str
    change: DoseChange = DoseChange.REDUCTION
