"""A re-plan (resume, adjust) rebuilds the planning input from the stored preview body: the
clinician's recorded confirmations (a day above the drug's plausible maximum, an equivalence
outside the published range) hold for the rest of the same plan, or an adjustment of a confirmed
plan would be refused for a reason the clinician already answered."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from services.scheduler.domain.planning.values import Administration
from services.scheduler.service_layer.replanning import _input_from

STORED: dict[str, Any] = {
    "drug": "clonazepam",
    "administrations_mg": ["8", "8", "8"],
    "duration_weeks": 60,
    "age": 40,
    "start_on": "2026-01-12",
    "formulations": ["clonazepam_tab_2mg", "clonazepam_tab_0_5mg"],
    "dose_above_maximum_reason_code": "clinician_confirmed_high_dose",
    "equivalence_override": {
        "mg_equal_to_10mg_diazepam": "40",
        "reason_code": "clinician_judgement",
        "outside_range_reason_code": "lab",
    },
}


def test_the_stored_confirmations_reach_the_replanned_input() -> None:
    taper: Any = SimpleNamespace(
        drug="clonazepam",
        drug_is_original=True,
        current_regimen=tuple(Administration("clonazepam", Decimal(8)) for _ in range(3)),
    )
    inp = _input_from(STORED, taper, date(2026, 3, 2))
    assert inp.dose_above_maximum_reason_code == "clinician_confirmed_high_dose"
    assert inp.equivalence_override is not None
    assert inp.equivalence_override.outside_range_reason_code == "lab"
