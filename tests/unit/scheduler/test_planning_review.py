"""Regression tests for the clinical review of generated patients (issue 13, items 7, 10, 11,
11a, 12b): each example the reviewer gave, planned as given."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from services.scheduler.domain.planning import (
    History,
    PlanningInput,
    RiskCategory,
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
