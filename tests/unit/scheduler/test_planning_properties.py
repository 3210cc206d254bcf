"""Property tests: thousands of generated patients, every plan safe, makeable and ordered."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from services.scheduler.domain.planning import (
    DIAZEPAM,
    BoundOverride,
    EquivalenceOverride,
    History,
    PacePreference,
    PlanningError,
    PlanningInput,
    StepKind,
    Strategy,
    TaperPlan,
    check_bounds,
    grid_unit,
    makeable,
    plan,
    planning_reference_v1,
)
from services.scheduler.domain.planning.doses import units_of

REF = planning_reference_v1()
CATALOGUE = REF.formulations
DRUGS = tuple(d for d in REF.equivalence.drug_codes if CATALOGUE.for_drug(d))
DIAZEPAM_CODES = tuple(f.code for f in CATALOGUE.for_drug(DIAZEPAM))
D = Decimal


rarely = st.integers(0, 7).map(lambda x: x == 0)  # mostly False: all risk categories occur


@st.composite
def patients(draw: st.DrawFn) -> tuple[PlanningInput, Strategy]:
    drug = draw(st.sampled_from(DRUGS))
    codes = tuple(f.code for f in CATALOGUE.for_drug(drug))
    on_hand = draw(st.lists(st.sampled_from(codes), min_size=1, max_size=len(codes), unique=True))
    strategy = draw(st.sampled_from(tuple(Strategy)))
    if drug != DIAZEPAM and (
        strategy is Strategy.CROSSOVER_THEN_PROPORTIONAL or draw(st.booleans())
    ):
        on_hand += draw(st.lists(st.sampled_from(DIAZEPAM_CODES), min_size=1, unique=True))
    forms = [CATALOGUE.get(c) for c in on_hand]
    drug_units = units_of(f for f in forms if f is not None and f.drug == drug)
    n = draw(st.integers(1, 4))
    doses = tuple(
        draw(st.sampled_from(drug_units)) * draw(st.integers(0 if i else 1, 8)) for i in range(n)
    )
    override = None
    if draw(st.integers(0, 9)) == 0:
        table = REF.equivalence.get(drug)
        assert table is not None
        value = table.mg_per_10mg_diazepam("ashton")
        assert value is not None
        factor = draw(st.sampled_from((D("0.5"), D("0.75"), D("1.5"), D(2))))
        override = EquivalenceOverride(value * factor, "clinician_judgement")
    bound_override = None
    if draw(st.integers(0, 9)) == 0:
        bound_override = BoundOverride(
            draw(st.sampled_from((D("0.3"), D("0.4"), D("0.5")))), "clinician_fast_taper"
        )
    maintenance = None
    if strategy is not Strategy.CROSSOVER_THEN_PROPORTIONAL and draw(st.integers(0, 4)) == 0:
        unit = grid_unit(f for f in forms if f is not None and f.drug == drug)
        share = draw(st.sampled_from((D("0.1"), D("0.25"), D("0.5"), D("0.8"))))
        maintenance = (sum(doses) * share // unit) * unit
    inp = PlanningInput(
        drug=drug,
        administrations_mg=doses,
        duration_weeks=draw(st.integers(0, 51) | st.integers(52, 1040)),
        age=draw(st.integers(18, 64) | st.integers(65, 100)),
        start_on=date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 3650))),
        formulations=tuple(on_hand),
        frail=draw(rarely),
        history=History(*(draw(rarely) for _ in range(5))),
        pace=draw(st.sampled_from(tuple(PacePreference))),
        maintenance_mg=maintenance or None,
        equivalence_override=override,
        bound_override=bound_override,
    )
    return inp, strategy


def _check(inp: PlanningInput, p: TaperPlan) -> None:
    forms = {c: CATALOGUE.get(c) for c in inp.formulations}
    # 1. no step breaks the bound (the default one unless the input carries an override)
    if inp.bound_override is None:
        assert p.bound == REF.bounds
    else:
        assert p.bound.max_fraction_per_step == inp.bound_override.max_fraction_per_window
    assert (
        check_bounds(
            p.baseline,
            p.steps,
            p.bound,
            dict(p.equivalence),
            final_step_at_or_below_eq_mg=REF.defaults.final_step_at_or_below_eq_mg,
        )
        == []
    )
    # 2. every dose is makeable from the products on file for its drug
    for step in p.steps:
        for dose in step.administrations:
            assert makeable(dose.dose_mg, [f for f in forms.values() if f and f.drug == dose.drug])
    # 3. dates strictly increase, each one hold after the last
    for before, after in pairwise(p.steps):
        assert after.effective_on > before.effective_on
        assert after.effective_on - before.effective_on == timedelta(weeks=before.hold_weeks)
        if after.kind is not StepKind.CROSSOVER:
            assert before.hold_weeks >= p.pace.interval_weeks
            assert after.diazepam_eq_mg < before.diazepam_eq_mg  # every cut makes progress
    if p.steps:
        # the first step waits unless the clinician asked for it on the start date (issue 13)
        first_on_start = p.steps[0].effective_on == inp.start_on
        assert first_on_start == inp.first_step_on_start and p.steps[-1].hold_weeks == 0
    # 4. the plan ends at zero, at the maintenance target, or where a product is missing
    if p.formulation_needs:
        (need,) = p.formulation_needs
        assert p.ends_at == need.at_dose_mg > 0
        event(f"need:{need.kind.value}:{need.reason_code}")
    elif inp.maintenance_mg:
        assert p.ends_at == inp.maintenance_mg  # exactly, whatever the grid (issue 13 item 8)
        event("ends:maintenance")
    else:
        assert p.ends_at == 0
        assert p.steps[-1].kind is StepKind.FINAL
        event("ends:zero")


def _refused_as_implausible(inp: PlanningInput, strategy: Strategy, err: PlanningError) -> bool:
    row = REF.equivalence.get(inp.drug)
    assert row is not None and row.max_daily_mg is not None
    if err.field == "administrations_mg":
        return inp.daily_dose_mg > row.max_daily_mg
    ceiling = REF.defaults.crossover_ceiling_mg(inp.age, inp.frail)
    return (
        err.field == "strategy"
        and strategy is Strategy.CROSSOVER_THEN_PROPORTIONAL
        and ceiling is not None
        and "ceiling" in err.problem
    )


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients())
def test_every_generated_plan_is_safe_makeable_ordered_and_ends_properly(case):
    inp, strategy = case
    try:
        p = plan(inp, strategy)
    except PlanningError as err:
        # only a maintenance target at or above a (post-crossover) dose is refused here, and
        # (issue 13) a day above the drug's plausible maximum or a switch above the ceiling
        assume(err.field != "maintenance_mg")
        if _refused_as_implausible(inp, strategy, err):
            event(f"refused:{err.field}")
            return
        raise
    event(f"strategy:{strategy.value}")
    event(f"risk:{p.risk.category.value}")
    _check(inp, p)
