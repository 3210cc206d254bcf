"""Dispense quantities (issue 13, item 14): compositions sum to the dose; fills cover the plan
without gaps or overlaps and dispense at least what their days consume, at most one unit over."""

from __future__ import annotations

import os
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scheduler.domain.dispensing import (
    DispensingError,
    compose,
    compose_day,
    fills,
    horizon,
)
from services.scheduler.domain.model import Administration
from services.scheduler.domain.planning import (
    Formulation,
    PlannedStep,
    StepKind,
    formulations_v1,
)

D = Decimal
CATALOGUE = formulations_v1()
DRUGS = tuple(sorted({f.drug for f in CATALOGUE.formulations}))
EXAMPLES = int(os.environ.get("TAPER_HYPOTHESIS_EXAMPLES", "300"))


def forms(*codes: str) -> list[Formulation]:
    out = [CATALOGUE.get(c) for c in codes]
    assert all(out)
    return [f for f in out if f is not None]


DIAZEPAM = forms("diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml")


def step(number: int, on: date, *doses: str, drug: str = "diazepam") -> PlannedStep:
    return PlannedStep(
        number=number,
        effective_on=on,
        kind=StepKind.REDUCTION,
        administrations=tuple(Administration(drug, D(d)) for d in doses),
        diazepam_eq_mg=D(0),
        hold_weeks=2,
    )


def test_a_dose_is_made_of_whole_tablets_first_then_halves_then_liquid() -> None:
    assert [(p.code, p.form, p.count) for p in compose(D("4.5"), DIAZEPAM)] == [
        ("diazepam_tab_5mg", "half_tablet", 1),
        ("diazepam_tab_2mg", "tablet", 1),
    ]
    assert [(p.code, p.form, p.count) for p in compose(D("0.5"), DIAZEPAM)] == [
        ("diazepam_sol_1mg_ml", "liquid", 5)
    ]
    assert compose(D(0), DIAZEPAM) == ()
    with pytest.raises(DispensingError) as exc:
        compose(D("0.5"), forms("diazepam_tab_2mg"))
    assert exc.value.field == "formulations"


def test_a_28_day_fill_counts_halves_and_rounds_up_to_whole_tablets() -> None:
    start = date(2026, 1, 12)
    steps = [
        step(1, start, "5", "4.5"),  # 5 tab + (half 5 + 2 tab)
        step(2, start + timedelta(days=21), "4.5", "4.5"),
        step(3, start + timedelta(days=35), "0"),
    ]
    out = fills(steps, DIAZEPAM, 28)
    assert [(f.covers_from, f.covers_to) for f in out] == [
        (start, start + timedelta(days=27)),
        (start + timedelta(days=28), start + timedelta(days=34)),
    ]
    first = {i.code: i for i in out[0].items}
    # 21 days of step 1 and 7 of step 2: 5 mg tablets 21 whole + 21+14 halves
    assert first["diazepam_tab_5mg"].whole_tablets_taken == 21
    assert first["diazepam_tab_5mg"].half_tablets_taken == 35
    assert first["diazepam_tab_5mg"].dispense_tablets == 21 + 18
    assert first["diazepam_tab_2mg"].dispense_tablets == 21 + 14
    assert out[0].items[0].drug == "diazepam"


def test_a_plan_ending_on_a_dose_is_covered_one_fill_past_its_last_step() -> None:
    start = date(2026, 1, 12)
    steps = [step(1, start, "5"), step(2, start + timedelta(days=14), "4")]
    assert horizon(steps, 28) == (start, start + timedelta(days=14 + 27))


@pytest.mark.parametrize("days", [0, 6, 91])
def test_a_fill_period_outside_7_to_90_days_is_refused_naming_the_field(days: int) -> None:
    with pytest.raises(DispensingError) as exc:
        fills([step(1, date(2026, 1, 12), "5")], DIAZEPAM, days)
    assert exc.value.field == "fill_days"


# --- properties -------------------------------------------------------------------------------


@st.composite
def plans(draw: st.DrawFn) -> tuple[list[PlannedStep], list[Formulation], int]:
    drug = draw(st.sampled_from(DRUGS))
    codes = [f.code for f in CATALOGUE.for_drug(drug)]
    on_file = forms(*draw(st.lists(st.sampled_from(codes), min_size=1, unique=True)))
    units = sorted({u for f in on_file for u in f.units_mg})
    per_day = draw(st.integers(1, 4))
    start = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 400)))
    steps = []
    on = start
    for n in range(1, draw(st.integers(1, 8)) + 1):
        # each dose a sum of amounts the products give: makeable by construction
        doses = [
            sum(
                (u * draw(st.integers(0, 3)) for u in draw(st.lists(st.sampled_from(units)))),
                D(0),
            )
            for _ in range(per_day)
        ]
        steps.append(step(n, on, *map(str, doses), drug=drug))
        on += timedelta(days=draw(st.integers(1, 60)))
    if draw(st.booleans()):
        steps.append(step(len(steps) + 1, on, *["0"] * per_day, drug=drug))
    return steps, on_file, draw(st.integers(7, 90))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_fills_cover_the_plan_and_dispense_what_its_days_consume(
    case: tuple[list[PlannedStep], list[Formulation], int],
) -> None:
    steps, on_file, fill_days = case
    for s in steps:  # every composition sums exactly to its dose
        for a, pieces in zip(
            s.administrations, compose_day(s.administrations, on_file), strict=True
        ):
            assert sum((p.mg for p in pieces), D(0)) == a.dose_mg
    out = fills(steps, on_file, fill_days)
    span = horizon(steps, fill_days)
    if span is None:
        assert out == ()
        return
    # no gap, no overlap, exactly the plan's dates, each fill at most fill_days long
    assert out[0].covers_from == span[0] and out[-1].covers_to == span[1]
    for before, after in pairwise(out):
        assert after.covers_from == before.covers_to + timedelta(days=1)
        assert before.days == fill_days
    assert [f.fill_number for f in out] == list(range(1, len(out) + 1))
    assert all(1 <= f.days <= fill_days for f in out)
    by_code = {f.code: f for f in on_file}
    for fill in out:
        # what the fill's days consume, counted day by day (independently of fills())
        halves: Counter[str] = Counter()
        tenths_ml: Counter[str] = Counter()
        day = fill.covers_from
        while day <= fill.covers_to:
            current = [s for s in steps if s.effective_on <= day][-1]
            for pieces in compose_day(current.administrations, on_file):
                for p in pieces:
                    if p.form == "liquid":
                        assert p.ml_each is not None
                        tenths_ml[p.code] += int(p.ml_each * p.count * 10)
                    else:
                        halves[p.code] += p.count * (2 if p.form == "tablet" else 1)
            day += timedelta(days=1)
        items = {i.code: i for i in fill.items}
        assert set(items) == {c for c in halves | tenths_ml}
        for code, item in items.items():
            assert by_code[code].drug == item.drug
            if item.form == "tablet":
                dispensed = item.dispense_tablets * 2
                assert 0 <= dispensed - halves[code] <= 1  # at most one half tablet over
                assert 2 * item.whole_tablets_taken + item.half_tablets_taken == halves[code]
            else:
                over = item.dispense_ml * 10 - tenths_ml[code]
                assert 0 <= over < 10  # at most 1 mL over


def test_a_crossover_day_takes_each_drug_from_its_own_products() -> None:
    on_file = [*DIAZEPAM, *forms("alprazolam_tab_0_5mg")]
    day = (Administration("diazepam", D("5")), Administration("alprazolam", D("0.75")))
    first, second = compose_day(day, on_file)
    assert [(p.code, p.form) for p in first] == [("diazepam_tab_5mg", "tablet")]
    assert [(p.code, p.form, p.count) for p in second] == [
        ("alprazolam_tab_0_5mg", "tablet", 1),
        ("alprazolam_tab_0_5mg", "half_tablet", 1),
    ]
    out = fills([step(1, date(2026, 1, 12), "0")], on_file, 14)
    assert out == ()  # a plan that starts at zero dispenses nothing
