"""The pure taper planner: examples for each strategy, risk rule, rounding rule and override."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest

from services.scheduler.domain.planning import (
    Administration,
    BoundOverride,
    EquivalenceOverride,
    History,
    NeedKind,
    PacePreference,
    PlannedStep,
    PlanningError,
    PlanningInput,
    RiskCategory,
    StepKind,
    Strategy,
    TaperPlan,
    assess_risk,
    check_bounds,
    choose_pace,
    formulations_v1,
    lower_by_notches,
    makeable,
    plan,
    planning_reference_v1,
    round_to_makeable,
)

D = Decimal
START = date(2026, 1, 5)
REF = planning_reference_v1()
FINAL_AT = REF.defaults.final_step_at_or_below_eq_mg


def forms(*codes: str):
    return tuple(formulations_v1().get(c) for c in codes)


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


def violations(p: TaperPlan):
    return check_bounds(
        p.baseline, p.steps, p.bound, dict(p.equivalence), final_step_at_or_below_eq_mg=FINAL_AT
    )


# --- reference data ---------------------------------------------------------------------------
def test_reference_data_is_versioned_with_sources():
    for name, version in REF.versions:
        assert version == "1", name
    assert "Ashton" in REF.equivalence.source
    assert REF.equivalence.default_column == "ashton"
    alprazolam = REF.equivalence.get("alprazolam")
    assert alprazolam is not None
    assert alprazolam.mg_per_10mg_diazepam("ashton") == D("0.5")
    assert alprazolam.mg_per_10mg_diazepam("va_dod") == D("1")
    assert REF.bounds.max_fraction_per_step == D("0.25")
    for pace in REF.defaults.paces[1:]:  # ASAM 5-10% every 2-4 weeks
        assert D("0.05") <= pace.step_fraction <= D("0.10")
        assert 2 <= pace.interval_weeks <= 4
    for f in REF.formulations.formulations:
        assert REF.equivalence.get(f.drug) is not None


# --- makeable doses ---------------------------------------------------------------------------
def test_scored_tablets_give_halves_never_quarters():
    two = forms("diazepam_tab_2mg")
    assert makeable(D(1), two)
    assert makeable(D(3), two)
    assert not makeable(D("0.5"), two)
    assert not makeable(D("1.5"), two)
    assert makeable(D(0), two)
    assert not makeable(D(-1), two)


def test_unscored_capsules_give_whole_strengths_and_their_sums():
    caps = forms("temazepam_cap_7_5mg", "temazepam_cap_15mg")
    assert makeable(D("22.5"), caps)
    assert not makeable(D("3.75"), caps)
    mixed = forms("diazepam_tab_5mg", "diazepam_tab_2mg")  # 2.5 and 1
    assert makeable(D("3.5"), mixed)
    assert not makeable(D("0.5"), mixed)


def test_liquid_gives_multiples_of_its_measurable_amount():
    liquid = forms("diazepam_sol_1mg_ml")  # 0.1 mL of 1 mg/mL
    assert makeable(D("0.3"), liquid)
    assert not makeable(D("0.35"), liquid)
    conc = forms("diazepam_conc_5mg_ml")  # 0.1 mL of 5 mg/mL
    assert makeable(D("1.5"), conc)
    assert not makeable(D("0.3"), conc)


def test_round_to_makeable_is_nearest_and_never_above_the_ceiling():
    two = forms("diazepam_tab_2mg")
    assert round_to_makeable(D("2.4"), two) == D(2)
    assert round_to_makeable(D("2.5"), two) == D(3)  # ties: the higher
    assert round_to_makeable(D("2.5"), two, not_above=D("2.9")) == D(2)
    assert round_to_makeable(D("0.2"), two) == D(0)
    assert round_to_makeable(D("0.37"), forms("diazepam_sol_1mg_ml")) == D("0.4")


def test_lowering_takes_the_largest_dose_first_and_the_last_of_the_day_last():
    assert lower_by_notches((D(3), D(5), D(5)), D(1), 3) == (D(3), D(3), D(4))
    assert lower_by_notches((D(2), D(2)), D(1), 1) == (D(1), D(2))
    assert lower_by_notches((D("2.5"),), D(1), 1) == (D(2),)  # off the grid: to the grid first
    assert lower_by_notches((D(1), D(1)), D(1), 5) == (D(0), D(0))


# --- risk ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "category", "reason"),
    [
        ({}, RiskCategory.LOW, None),
        ({"history": History(seizures=True)}, RiskCategory.HIGH, "seizure_history"),
        ({"history": History(pregnancy=True)}, RiskCategory.HIGH, "pregnancy"),
        ({"history": History(failed_taper=True)}, RiskCategory.HIGH, "failed_taper_history"),
        ({"administrations_mg": (D(25), D(20))}, RiskCategory.HIGH, "high_dose"),
        ({"administrations_mg": (D(15), D(10))}, RiskCategory.MODERATE, "moderate_dose"),
        ({"age": 70}, RiskCategory.MODERATE, "older_age"),
        ({"frail": True}, RiskCategory.MODERATE, "frail"),
        ({"history": History(falls=True)}, RiskCategory.MODERATE, "falls_history"),
        (
            {"history": History(anxiety_or_depression=True)},
            RiskCategory.MODERATE,
            "anxiety_or_depression",
        ),
        ({"duration_weeks": 60}, RiskCategory.MODERATE, "long_use"),
        (
            {
                "drug": "lorazepam",
                "administrations_mg": (D(1),),
                "formulations": ("lorazepam_tab_1mg",),
            },
            RiskCategory.MODERATE,  # short-acting (issue 13 item 10): was LOW as "intermediate"
            "short_half_life",
        ),
        (
            {
                "drug": "oxazepam",
                "administrations_mg": (D(10),),
                "formulations": ("oxazepam_cap_10mg",),
            },
            RiskCategory.MODERATE,
            "short_half_life",
        ),
    ],
)
def test_risk_category(changes, category, reason):
    risk = assess_risk(patient(**changes))
    assert risk.category is category
    if reason is None:
        assert risk.reasons == ()
    else:
        assert reason in risk.reasons


def test_any_high_feature_wins_over_moderate_ones():
    risk = assess_risk(patient(age=80, frail=True, history=History(seizures=True, falls=True)))
    assert risk.category is RiskCategory.HIGH
    features = {"seizure_history", "older_age", "frail", "falls_history"}
    combinations = {"older_age_with_falls", "three_or_more_moderate_features"}  # issue 13 12b
    assert set(risk.reasons) == features | combinations


def _risk_pace(inp: PlanningInput) -> str:
    return choose_pace(inp, assess_risk(inp), REF)[0].code


def test_risk_sets_the_default_pace_and_preference_slows_it():
    # The risk pace (before duration of use shapes the plan: see test_planning_pace.py)
    assert _risk_pace(patient()) == "low"
    assert _risk_pace(patient(age=70)) == "moderate"
    assert _risk_pace(patient(history=History(seizures=True))) == "high"
    assert _risk_pace(patient(duration_weeks=8)) == "short_use"
    assert _risk_pace(patient(duration_weeks=8, age=70)) == "moderate"
    slower = plan(patient(pace=PacePreference.SLOWER))
    assert slower.pace.code == "moderate"  # a slower preference is never sped up for duration
    assert "preference_slower_applied" in slower.notes
    faster = plan(patient(age=70, pace=PacePreference.FASTER))
    assert _risk_pace(patient(age=70, pace=PacePreference.FASTER)) == "moderate"
    assert "preference_faster_not_applied" in faster.notes


# --- strategies -------------------------------------------------------------------------------
def _daily(step: PlannedStep) -> Decimal:
    return step.daily_dose_mg


def test_proportional_taper_cuts_a_share_of_the_current_dose_and_ends_at_zero():
    p = plan(patient(), Strategy.PROPORTIONAL)
    assert p.pace.step_fraction == D("0.1") and p.pace.interval_weeks == 2
    doses = [_daily(s) for s in p.steps]
    assert doses[:4] == [D(9), D("8.1"), D("7.3"), D("6.6")]  # 10% of the current, rounded up
    assert p.steps[-1].kind is StepKind.FINAL and p.ends_at == 0
    assert p.steps[-2].daily_dose_mg <= FINAL_AT
    # the patient stays on the current dose for one interval (the first cut was on the start
    # date before issue 13)
    assert p.steps[0].effective_on == START + timedelta(weeks=2)
    assert all(
        b.effective_on - a.effective_on == timedelta(weeks=a.hold_weeks)
        for a, b in pairwise(p.steps)
    )
    assert p.steps[-1].hold_weeks == 0
    assert violations(p) == []
    assert p.complete


def test_linear_taper_cuts_the_same_mg_until_the_bound_takes_over():
    # Only with a recorded bound override: without one the pace caps every cut (issue 13 item 5;
    # before, linear plans cut 1 mg of 5 mg = 20% at a 10% pace).
    override = BoundOverride(D("0.25"), "clinician_linear_taper")
    p = plan(patient(bound_override=override), Strategy.LINEAR)
    cuts = [
        a - b for a, b in zip([D(10), *map(_daily, p.steps)], map(_daily, p.steps), strict=False)
    ]
    assert cuts[:5] == [D(1)] * 5
    assert p.ends_at == 0
    assert violations(p) == []
    assert len(p.steps) < len(plan(patient(), Strategy.PROPORTIONAL).steps)
    capped = plan(patient(), Strategy.LINEAR)
    for a, b in pairwise([D(10), *map(_daily, capped.steps[:-1])]):
        assert a - b <= max(a / 10, D("0.1"))


def test_crossover_switches_one_dose_a_week_then_tapers_diazepam():
    p = plan(
        patient(
            drug="alprazolam",
            administrations_mg=(D("0.5"),) * 4,
            formulations=("alprazolam_tab_0_5mg", "diazepam_tab_2mg", "diazepam_sol_1mg_ml"),
            crossover_wanted=True,
        )
    )
    assert p.strategy is Strategy.CROSSOVER_THEN_PROPORTIONAL and p.final_drug == "diazepam"
    stages = [s for s in p.steps if s.kind is StepKind.CROSSOVER]
    assert len(stages) == 4
    assert stages[0].administrations[-1] == Administration("diazepam", D(10))  # bedtime first
    assert stages[0].drug is None  # a mixed day
    assert all(b.effective_on - a.effective_on == timedelta(days=7) for a, b in pairwise(stages))
    assert stages[-1].drug == "diazepam" and stages[-1].daily_dose_mg == D(40)
    assert {s.diazepam_eq_mg for s in stages} == {D(40)}
    first_cut = p.steps[4]
    assert first_cut.kind is StepKind.REDUCTION
    assert first_cut.effective_on - stages[-1].effective_on == timedelta(
        weeks=p.pace.interval_weeks
    )
    assert p.ends_at == 0 and violations(p) == []


def test_crossover_uses_the_clinician_override_and_records_it():
    p = plan(
        patient(
            drug="lorazepam",
            administrations_mg=(D(1), D(1)),
            formulations=("lorazepam_tab_1mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml"),
            crossover_wanted=True,
            equivalence_override=EquivalenceOverride(D(2), "va_dod_equivalence"),
        )
    )
    assert p.steps[0].administrations[-1] == Administration("diazepam", D(5))
    assert ("lorazepam", D(2)) in p.equivalence
    assert "equivalence_override" in p.notes
    with pytest.raises(PlanningError):
        plan(patient(equivalence_override=EquivalenceOverride(D(2), "")))


def test_crossover_needs_diazepam_on_file():
    with pytest.raises(PlanningError) as err:
        plan(
            patient(
                drug="lorazepam", administrations_mg=(D(1),), formulations=("lorazepam_tab_1mg",)
            ),
            Strategy.CROSSOVER_THEN_PROPORTIONAL,
        )
    assert err.value.field == "formulations"


def test_va_dod_column_can_be_chosen():
    p = plan(
        patient(
            drug="alprazolam",
            administrations_mg=(D(1),),
            formulations=("alprazolam_tab_1mg", "diazepam_tab_10mg"),
            equivalence_column="va_dod",
        ),
        Strategy.CROSSOVER_THEN_PROPORTIONAL,
    )
    assert p.steps[0].administrations == (Administration("diazepam", D(10)),)


# --- rounding, holds, formulation needs -------------------------------------------------------
def test_when_no_makeable_cut_is_within_the_pace_a_formulation_need_is_raised():
    # 2 mg halves only: from 4 mg a 10% cut (0.4) cannot be made and 1 mg is 25%. Before issue 13
    # the plan cut 25% and held longer; now it asks for a product instead of cutting more.
    p = plan(patient(administrations_mg=(D(2), D(2)), formulations=("diazepam_tab_2mg",)))
    assert p.steps == () and p.ends_at == D(4)
    (need,) = p.formulation_needs
    assert need.reason_code == "smallest_cut_exceeds_pace"
    assert need.needed_unit_mg == D("0.4")
    assert violations(p) == []


def test_a_cut_the_bound_forbids_raises_a_formulation_need_instead():
    p = plan(patient(administrations_mg=(D(2), D(1)), formulations=("diazepam_tab_2mg",)))
    assert p.ends_at == D(3)  # 3 -> 2 would be 33% in one step
    (need,) = p.formulation_needs
    assert need.kind is NeedKind.LIQUID and need.at_dose_mg == D(3)
    assert need.reason_code == "smallest_cut_exceeds_bound"
    assert need.after_step == len(p.steps)
    assert need.needed_unit_mg == D("0.3")  # a product cutting within the 10% pace
    assert not p.complete
    assert violations(p) == []


def test_without_a_liquid_in_the_catalogue_the_need_is_compounded_or_a_strip():
    ox = plan(
        patient(drug="oxazepam", administrations_mg=(D(30),), formulations=("oxazepam_cap_10mg",))
    )
    assert ox.formulation_needs[0].kind is NeedKind.COMPOUNDED
    assert ox.ends_at == D(30)  # 30 -> 20 is a third at once
    assert ox.steps == ()
    tem = plan(
        patient(
            drug="temazepam",
            administrations_mg=(D(30),),
            formulations=("temazepam_cap_7_5mg", "temazepam_sol_2mg_ml"),
        )
    )
    assert tem.ends_at == 0 and tem.complete


def test_final_step_needs_a_dose_at_or_below_the_final_step_dose():
    p = plan(
        patient(
            administrations_mg=(D(1),),
            formulations=("diazepam_tab_2mg",),
            bound_override=BoundOverride(D("0.9"), "patient_request_reviewed"),
        )
    )
    (need,) = p.formulation_needs
    assert need.reason_code == "final_step_above_final_dose" and need.at_dose_mg == D(1)


def test_bound_override_allows_bigger_cuts_and_is_recorded():
    p = plan(
        patient(
            administrations_mg=(D(2), D(2)),
            formulations=("diazepam_tab_2mg",),
            bound_override=BoundOverride(D("0.5"), "clinician_fast_taper"),
        )
    )
    assert "bound_override" in p.notes
    assert p.ends_at == D(1)  # 4 -> 3 -> 2 -> 1; 1 -> 0 is above the final-step dose
    assert check_bounds(
        p.baseline, p.steps, REF.bounds, dict(p.equivalence), final_step_at_or_below_eq_mg=FINAL_AT
    )
    assert violations(p) == []


def test_maintenance_target_ends_the_plan_there():
    p = plan(patient(maintenance_mg=D(4)))
    assert p.ends_at == D(4) and p.steps[-1].kind is StepKind.REDUCTION and p.complete
    with pytest.raises(PlanningError):
        plan(patient(maintenance_mg=D(10)))


def test_check_bounds_flags_a_fast_cut_and_unordered_dates():
    base = (Administration("diazepam", D(10)),)
    eq = {"diazepam": D(10)}

    def step(n, day, dose, kind=StepKind.REDUCTION):
        return PlannedStep(
            n, START + timedelta(days=day), kind, (Administration("diazepam", D(dose)),), D(dose), 0
        )

    ok = [step(1, 0, "7.5"), step(2, 14, "6")]
    assert check_bounds(base, ok, REF.bounds, eq, final_step_at_or_below_eq_mg=FINAL_AT) == []
    two_in_window = [step(1, 0, 9), step(2, 7, 7)]
    (v,) = check_bounds(base, two_in_window, REF.bounds, eq, final_step_at_or_below_eq_mg=FINAL_AT)
    assert v.rule == "max_cut_in_window" and v.step_number == 2 and v.cut_fraction == D("0.3")
    backwards = [step(1, 14, 9), step(2, 0, 9)]
    rules = {
        v.rule
        for v in check_bounds(
            base, backwards, REF.bounds, eq, final_step_at_or_below_eq_mg=FINAL_AT
        )
    }
    assert "dates_not_increasing" in rules
    abrupt = [step(1, 0, 0, StepKind.FINAL)]
    rules = {
        v.rule
        for v in check_bounds(base, abrupt, REF.bounds, eq, final_step_at_or_below_eq_mg=FINAL_AT)
    }
    assert rules == {"max_cut_in_window", "final_step_not_allowed"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"drug": "zolpidem"}, "drug"),
        ({"formulations": ("no_such_product",)}, "formulations"),
        ({"formulations": ("lorazepam_tab_1mg",)}, "formulations"),
        ({"administrations_mg": (D("0.35"),)}, "administrations_mg"),
        ({"administrations_mg": (D(0),)}, "administrations_mg"),
        ({"duration_weeks": -1}, "duration_weeks"),
        ({"bound_override": BoundOverride(D("0.5"), "")}, "bound_override"),
        (
            {
                "equivalence_column": "va_dod",
                "drug": "nitrazepam",
                "formulations": ("nitrazepam_tab_5mg",),
            },
            "equivalence_column",
        ),
    ],
)
def test_unplannable_input_is_refused_naming_the_field(changes, field):
    with pytest.raises(PlanningError) as err:
        plan(patient(**changes))
    assert err.value.field == field


def test_plans_are_deterministic():
    p = patient(
        drug="clonazepam",
        administrations_mg=(D("0.5"), D(1)),
        formulations=("clonazepam_tab_0_5mg", "clonazepam_odt_0_125mg"),
    )
    assert plan(p) == plan(p)
