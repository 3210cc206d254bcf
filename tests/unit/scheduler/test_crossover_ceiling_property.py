"""Issue 13 item 7, as a property over generated patients (every drug, ages 18-95, frail or not,
many doses): every crossover ends at or below the diazepam ceiling for the patient's age and
frailty, and rounds no administration past the data's limits, or the plan refuses with the reason.

Examples per run: ``TAPER_HYPOTHESIS_EXAMPLES`` (default 300; run once with 10000 for the report).
The expected ceiling is read from the data file here, not from the code under test.
"""

from __future__ import annotations

import json
import os
from datetime import date
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.scheduler.domain.planning import (
    DIAZEPAM,
    EquivalenceOverride,
    PlanningError,
    PlanningInput,
    StepKind,
    plan,
    planning_reference_v1,
)
from services.scheduler.domain.planning.doses import units_of

REF = planning_reference_v1()
CATALOGUE = REF.formulations
DRUGS = tuple(d for d in REF.equivalence.drug_codes if d != DIAZEPAM and CATALOGUE.for_drug(d))
DIAZEPAM_CODES = tuple(f.code for f in CATALOGUE.for_drug(DIAZEPAM))
EXAMPLES = int(os.environ.get("TAPER_HYPOTHESIS_EXAMPLES", "300"))


def _data(name: str) -> dict[str, Any]:
    text = resources.files("services.scheduler.domain").joinpath("data", name).read_text("utf-8")
    raw: dict[str, Any] = json.loads(text)
    return raw


DEFAULTS = _data("planning_defaults.v1.json")
CROSSOVER = DEFAULTS["crossover"]
EQUIVALENCE = _data("equivalence.v1.json")["drugs"]


def expected_ceiling(age: int, frail: bool) -> Fraction:
    ceiling = Fraction(CROSSOVER["diazepam_ceiling_mg_per_day"])
    if frail or age >= DEFAULTS["thresholds"]["older_age_from_years"]:
        ceiling *= Fraction(CROSSOVER["older_or_frail_ceiling_factor"])
    return ceiling


@st.composite
def patients(draw: st.DrawFn) -> PlanningInput:
    drug = draw(st.sampled_from(DRUGS))
    own = tuple(f.code for f in CATALOGUE.for_drug(drug))
    dz = draw(st.lists(st.sampled_from(DIAZEPAM_CODES), min_size=1, unique=True))
    units = units_of(CATALOGUE.for_drug(drug))
    doses = tuple(
        draw(st.sampled_from(units)) * draw(st.integers(1, 4))
        for _ in range(draw(st.integers(1, 4)))
    )
    row = EQUIVALENCE[drug]
    column = draw(st.sampled_from([c for c in ("ashton", "va_dod") if row[c] is not None]))
    override = None
    if draw(st.integers(0, 4)) == 0:  # a clinician's value within the published range
        low, high = (Decimal(v) for v in row["published_range_mg"])
        override = EquivalenceOverride(draw(st.sampled_from((low, high))), "clinician_judgement")
    return PlanningInput(
        drug=drug,
        equivalence_column=column,
        equivalence_override=override,
        administrations_mg=doses,
        duration_weeks=draw(st.integers(0, 1040)),
        age=draw(st.integers(18, 95)),
        start_on=date(2026, 1, 5),
        formulations=own + tuple(dz),
        frail=draw(st.booleans()),
        crossover_wanted=True,
    )


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients())
def test_every_crossover_respects_the_ceiling_or_is_refused_with_the_reason(
    inp: PlanningInput,
) -> None:
    ceiling = expected_ceiling(inp.age, inp.frail)
    override = inp.equivalence_override
    column = inp.equivalence_column or "ashton"
    per_10 = Fraction(
        override.mg_equal_to_10mg_diazepam if override else EQUIVALENCE[inp.drug][column]
    )
    exact = [Fraction(d) * 10 / per_10 for d in inp.administrations_mg]
    try:
        p = plan(inp)
    except PlanningError as err:
        if err.field == "administrations_mg":  # above the drug's plausible maximum
            assert inp.daily_dose_mg > Decimal(EQUIVALENCE[inp.drug]["max_daily_mg"])
            event("refused: above the plausible maximum")
            return
        assert err.field == "crossover_wanted" and "ceiling" in err.problem, err
        event("refused: above the crossover ceiling")
        return  # refused with the reason (rounded or exact above the ceiling: checked below)
    assert sum(exact) <= ceiling  # never planned when the full equivalent is above it
    crossover = [s for s in p.steps if s.kind is StepKind.CROSSOVER]
    if not crossover:  # the switch could not be made from the products on file
        (need,) = p.formulation_needs
        assert need.reason_code.startswith("crossover_") and not p.steps
        event(f"refused: {need.reason_code}")
        return
    last = crossover[-1]
    assert p.final_drug == DIAZEPAM and last.drug == DIAZEPAM
    assert Fraction(last.daily_dose_mg_of(DIAZEPAM)) <= ceiling
    up = 1 + Fraction(CROSSOVER["max_rounding_up_fraction"])
    down = 1 - Fraction(CROSSOVER["max_rounding_down_fraction"])
    for a, x in zip(last.administrations, exact, strict=True):
        assert x * down <= Fraction(a.dose_mg) <= x * up  # no hidden cut, no large rise
    later = [s for s in p.steps if s.kind is not StepKind.CROSSOVER]
    assert all(s.diazepam_eq_mg <= last.diazepam_eq_mg for s in later)
    older_or_frail = ceiling < Fraction(CROSSOVER["diazepam_ceiling_mg_per_day"])
    event("crossed over: older or frail" if older_or_frail else "crossed over")
