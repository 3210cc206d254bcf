"""Regression tests for the clinical review of generated patients (issue 13, items 7, 10, 11,
11a, 12b): each example the reviewer gave, planned as given."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from services.scheduler.domain.planning import (
    EquivalenceOverride,
    History,
    NeedKind,
    PlanningError,
    PlanningInput,
    RiskCategory,
    StepKind,
    Strategy,
    assess_risk,
    plan,
    planning_reference_v1,
)

D = Decimal
REF = planning_reference_v1()
START = date(2026, 1, 5)


def patient(**kw: Any) -> PlanningInput:
    base: dict[str, Any] = dict(
        drug="diazepam",
        administrations_mg=(D(5), D(5)),
        duration_weeks=30,
        age=40,
        start_on=START,
        formulations=("diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml"),
    )
    base.update(kw)
    return PlanningInput(**base)


# --- 12b: how risk features combine -----------------------------------------------------------
ALPRAZOLAM_67_FALLS = dict(
    drug="alprazolam",
    administrations_mg=(D(1), D(1)),  # 2 mg/day: 40 mg diazepam-equivalent (Ashton)
    duration_weeks=6 * 52,
    age=67,
    history=History(falls=True),
    formulations=("alprazolam_tab_1mg",),
)


def test_older_patient_with_falls_on_long_alprazolam_is_high_risk_at_the_slowest_pace() -> None:
    risk = assess_risk(patient(**ALPRAZOLAM_67_FALLS))
    assert risk.category is RiskCategory.HIGH  # was MODERATE
    assert {"older_age", "falls_history", "long_use", "short_half_life"} <= set(risk.reasons)
    assert "older_age_with_falls" in risk.reasons
    slowest = REF.defaults.paces[-1]
    assert plan(patient(**ALPRAZOLAM_67_FALLS)).pace == slowest


def test_older_age_with_falls_alone_is_high() -> None:
    risk = assess_risk(patient(age=66, history=History(falls=True)))
    assert risk.category is RiskCategory.HIGH
    assert set(risk.reasons) == {"older_age", "falls_history", "older_age_with_falls"}


def test_falls_without_older_age_stay_moderate() -> None:
    risk = assess_risk(patient(age=64, history=History(falls=True)))
    assert risk.category is RiskCategory.MODERATE


def test_three_moderate_features_are_high_two_are_moderate() -> None:
    two = assess_risk(patient(frail=True, duration_weeks=60))
    assert two.category is RiskCategory.MODERATE
    three = assess_risk(
        patient(frail=True, duration_weeks=60, history=History(anxiety_or_depression=True))
    )
    assert three.category is RiskCategory.HIGH
    assert "three_or_more_moderate_features" in three.reasons


def test_every_combination_rule_names_its_source_in_the_data() -> None:
    import json
    from importlib import resources

    raw = json.loads(
        resources.files("services.scheduler.domain")
        .joinpath("data", "planning_defaults.v1.json")
        .read_text(encoding="utf-8")
    )
    codes = {c.code for c in REF.defaults.risk_combinations}
    assert codes == {"older_age_with_falls", "three_or_more_moderate_features"}
    features = dict(REF.defaults.risk_features)
    for c in raw["risk_combinations"]:
        assert c["source"] and "unconfirmed" in c
        assert set(c.get("all_of", ())) <= set(features)


# --- 7: the crossover ceiling and the age/frailty reduction ------------------------------------
DIAZEPAM_TABS = ("diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_tab_10mg")


def crossover(**kw: Any) -> PlanningInput:
    return patient(crossover_wanted=True, duration_weeks=300, **kw)


def refusal(inp: PlanningInput) -> PlanningError:
    with pytest.raises(PlanningError) as err:
        plan(inp)
    return err.value


def test_alprazolam_2mg_x3_at_72_is_refused_not_crossed_over_to_120mg() -> None:
    inp = crossover(
        drug="alprazolam",
        administrations_mg=(D(2), D(2), D(2)),
        age=72,
        formulations=("alprazolam_tab_2mg", *DIAZEPAM_TABS),
    )
    err = refusal(inp)  # was: diazepam 120 mg/day
    assert err.field == "crossover_wanted" and "ceiling" in err.problem


def test_lorazepam_3mg_x4_at_70_is_refused_above_its_plausible_maximum() -> None:
    inp = crossover(
        drug="lorazepam",
        administrations_mg=(D(3), D(3), D(3), D(3)),
        age=70,
        formulations=("lorazepam_tab_1mg", *DIAZEPAM_TABS),
    )
    assert refusal(inp).field == "administrations_mg"  # 12 mg/day; was: diazepam 120 mg/day
    at_8mg = replace(inp, administrations_mg=(D(2),) * 4)  # 80 mg eq: above 20 mg at 70
    assert refusal(at_8mg).field == "crossover_wanted"


def test_the_ceiling_is_halved_for_an_older_or_frail_patient() -> None:
    assert REF.defaults.crossover_ceiling_mg(40, False) == D(40)
    assert REF.defaults.crossover_ceiling_mg(65, False) == D(20)
    assert REF.defaults.crossover_ceiling_mg(40, True) == D(20)
    inp = crossover(
        drug="alprazolam",
        administrations_mg=(D("0.5"), D("0.5")),  # 20 mg diazepam-eq
        formulations=("alprazolam_tab_0_5mg", *DIAZEPAM_TABS),
    )
    for age, frail in ((40, False), (80, False), (40, True)):  # at the older/frail ceiling
        assert plan(replace(inp, age=age, frail=frail)).final_drug == "diazepam"
    over = replace(inp, administrations_mg=(D("0.5"), D("0.5"), D("0.5")))  # 30 mg
    assert plan(over).final_drug == "diazepam"  # 40 years old, not frail
    assert refusal(replace(over, age=80)).field == "crossover_wanted"
    assert refusal(replace(over, frail=True)).field == "crossover_wanted"
    strategy = replace(over, frail=True, crossover_wanted=False)
    with pytest.raises(PlanningError) as err:
        plan(strategy, Strategy.CROSSOVER_THEN_PROPORTIONAL)
    assert err.value.field == "strategy"  # the refusal names the field that asked for it


def test_temazepam_22_5mg_at_71_is_not_cut_11_percent_by_rounding() -> None:
    inp = crossover(
        drug="temazepam",
        administrations_mg=(D("22.5"),),  # 11.25 mg diazepam-eq
        age=71,
        frail=True,
        formulations=("temazepam_cap_7_5mg", "temazepam_cap_15mg", "diazepam_tab_10mg"),
    )
    p = plan(inp)  # was: diazepam 10 mg (an 11% cut hidden in the switch)
    assert not p.steps
    (need,) = p.formulation_needs
    assert need.drug == "diazepam" and need.reason_code == "crossover_dose_not_makeable"
    finer = plan(replace(inp, formulations=(*inp.formulations, "diazepam_tab_2mg")))
    last = [s for s in finer.steps if s.kind is StepKind.CROSSOVER][-1]
    assert last.daily_dose_mg_of("diazepam") == D(11)  # within 10% of 11.25, under 20 mg


def test_a_crossover_need_names_a_product_that_switches_every_administration() -> None:
    """0.1 + 0.6 mg clobazam (10 mg diazepam = 15 mg): 0.067 + 0.4 mg diazepam. A 0.1 mg
    diazepam liquid makes the 0.4 mg dose but not the 0.067 mg one, so the need must not ask
    for that liquid (the re-plan with it on file stopped again with no step; hypothesis)."""
    inp = crossover(
        drug="clobazam",
        administrations_mg=(D("0.1"), D("0.6")),
        equivalence_override=EquivalenceOverride(D(15), "clinician_judgement"),
        formulations=("clobazam_susp_1mg_ml", "diazepam_tab_2mg"),
    )
    p = plan(inp)
    assert not p.steps
    (need,) = p.formulation_needs
    assert need.reason_code == "crossover_dose_not_makeable"
    assert need.kind is not NeedKind.LIQUID  # was: a liquid giving 0.1 mg
    assert need.needed_unit_mg == D("0.0167")  # a quarter of 0.067 mg: the smaller dose
    liquids = replace(inp, formulations=(*inp.formulations, "diazepam_sol_1mg_ml"))
    assert plan(liquids).formulation_needs == (need,)  # the liquid alone does not help


def test_clonazepam_6_x_166mg_is_refused_not_planned_over_16_years() -> None:
    inp = crossover(
        drug="clonazepam",
        administrations_mg=(D(166),) * 6,
        formulations=("clonazepam_tab_2mg", *DIAZEPAM_TABS),
    )
    assert refusal(inp).field == "administrations_mg"  # was: 19,920 mg/day diazepam
    confirmed = replace(inp, dose_above_maximum_reason_code="clinician_confirmed")
    assert refusal(confirmed).field == "crossover_wanted"  # still far above the ceiling


def test_an_override_of_0_0001mg_is_refused_unless_confirmed() -> None:
    tiny = EquivalenceOverride(D("0.0001"), "clinician_judgement")
    inp = patient(
        drug="alprazolam",
        administrations_mg=(D("0.5"),),
        formulations=("alprazolam_tab_0_5mg",),
        equivalence_override=tiny,
    )
    assert refusal(inp).field == "equivalence_override"  # was: accepted
    assert REF.equivalence.override_range("alprazolam") == (D("0.25"), D(4))
    edge = replace(inp, equivalence_override=EquivalenceOverride(D(4), "clinician_judgement"))
    assert plan(edge).equivalence[0] == ("alprazolam", D(4))
    confirmed = EquivalenceOverride(D(8), "clinician_judgement", "lab_level_checked")
    assert plan(replace(inp, equivalence_override=confirmed)).equivalence[0][1] == D(8)
    bad = EquivalenceOverride(D(8), "clinician_judgement", "Not a code!")
    assert refusal(replace(inp, equivalence_override=bad)).field == "equivalence_override"
