"""Withdrawal-risk category and the default pace it sets (Maudsley [S7], ASAM [S1])."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from services.scheduler.domain.planning.bounds import diazepam_eq
from services.scheduler.domain.planning.reference import (
    Pace,
    PlanningReference,
    RiskCategory,
    RiskCombination,
    planning_reference_v1,
)
from services.scheduler.domain.planning.values import (
    DIAZEPAM,
    Administration,
    EquivalenceOverride,
    PacePreference,
    PlanningError,
    PlanningInput,
    RiskAssessment,
    is_code,
)

SHORT_HALF_LIVES = frozenset({"short", "ultra_short"})


def equivalence_for(inp: PlanningInput, ref: PlanningReference) -> dict[str, Decimal]:
    """mg equal to 10 mg diazepam for the patient's drug (override, else the chosen column)."""
    table = ref.equivalence
    row = table.get(inp.drug)
    if row is None:
        raise PlanningError("drug", "not in the equivalence table")
    column = inp.equivalence_column or table.default_column
    value = row.mg_per_10mg_diazepam(column)
    override = inp.equivalence_override
    if override is not None:
        if not is_code(override.reason_code):
            raise PlanningError("equivalence_override", "an override requires a reason code")
        if not override.mg_equal_to_10mg_diazepam > 0:
            raise PlanningError("equivalence_override", "must be greater than 0")
        _check_override_range(inp.drug, override, ref)
        value = override.mg_equal_to_10mg_diazepam
    if value is None:
        raise PlanningError("equivalence_column", "no value for this drug in that column")
    return {inp.drug: value, DIAZEPAM: Decimal(10)} if inp.drug != DIAZEPAM else {DIAZEPAM: value}


def _check_override_range(drug: str, override: EquivalenceOverride, ref: PlanningReference) -> None:
    """Far outside every published value is refused unless a clinician confirms it (issue 13)."""
    allowed = ref.equivalence.override_range(drug)
    if allowed is None or allowed[0] <= override.mg_equal_to_10mg_diazepam <= allowed[1]:
        return
    if override.outside_range_reason_code is None:
        raise PlanningError(
            "equivalence_override",
            "outside the published range widened by its factor (equivalence data): "
            "a confirmation reason code is required",
        )
    if not is_code(override.outside_range_reason_code):
        raise PlanningError("equivalence_override", "the confirmation must be a reason code")


def risk_features(
    inp: PlanningInput, equivalence: Mapping[str, Decimal], ref: PlanningReference
) -> tuple[str, ...]:
    """Feature codes present for this patient (the data maps each to a category)."""
    d = ref.defaults
    eq = diazepam_eq(
        tuple(Administration(inp.drug, x) for x in inp.administrations_mg), equivalence
    )
    drug = ref.equivalence.get(inp.drug)
    present = {
        "seizure_history": inp.history.seizures,
        "pregnancy": inp.history.pregnancy,
        "failed_taper_history": inp.history.failed_taper,
        "high_dose": eq > d.high_dose_above_eq_mg,
        "moderate_dose": d.moderate_dose_above_eq_mg < eq <= d.high_dose_above_eq_mg,
        "older_age": inp.age >= d.older_age_from_years,
        "frail": inp.frail,
        "falls_history": inp.history.falls,
        "anxiety_or_depression": inp.history.anxiety_or_depression,
        "long_use": inp.duration_weeks > d.long_use_above_weeks,
        "short_half_life": drug is not None and drug.half_life_class in SHORT_HALF_LIVES,
    }
    return tuple(code for code, _ in d.risk_features if present.get(code, False))


def assess_risk(
    inp: PlanningInput,
    equivalence: Mapping[str, Decimal] | None = None,
    ref: PlanningReference | None = None,
) -> RiskAssessment:
    """Any high feature makes the patient high risk, else any moderate one moderate, else low;
    then each combination rule present (data: ``risk_combinations``) lifts the category."""
    ref = ref or planning_reference_v1()
    if equivalence is None:
        equivalence = equivalence_for(inp, ref)
    features = risk_features(inp, equivalence, ref)
    category_of = dict(ref.defaults.risk_features)
    combos = combinations_present(features, ref)
    category = max(
        [category_of[f] for f in features] + [c.category for c in combos],
        key=lambda c: c.rank,
        default=RiskCategory.LOW,
    )
    short_use = inp.duration_weeks < ref.defaults.short_use_below_weeks
    reasons = features + tuple(c.code for c in combos)
    return RiskAssessment(category=category, reasons=reasons, short_use=short_use)


def combinations_present(
    features: tuple[str, ...], ref: PlanningReference
) -> tuple[RiskCombination, ...]:
    """The combination rules these features meet (moderate features counted from the data)."""
    category_of = dict(ref.defaults.risk_features)
    moderate = sum(1 for f in features if category_of[f] is RiskCategory.MODERATE)
    return tuple(
        c
        for c in ref.defaults.risk_combinations
        if (c.all_of and set(c.all_of) <= set(features))
        or (c.at_least_moderate is not None and moderate >= c.at_least_moderate)
    )


def choose_pace(
    inp: PlanningInput, risk: RiskAssessment, ref: PlanningReference
) -> tuple[Pace, tuple[str, ...]]:
    """The pace for this patient, and note codes saying how the preference was applied.

    Standard: the risk category's pace (short use at low risk: the short-use pace). Slower: one
    pace slower. Faster: ignored, because a taper is easily sped up later, slowed down less so
    [S7]; the short-use pace is already the default where ASAM allows it.
    """
    d = ref.defaults
    order = [p.code for p in d.paces]
    code = d.pace_for(risk.category).code
    notes: list[str] = []
    if risk.category is RiskCategory.LOW and risk.short_use:
        code = "short_use"
        notes.append("short_use_pace")
    if inp.pace is PacePreference.SLOWER:
        code = order[min(order.index(code) + 1, len(order) - 1)]
        notes.append("preference_slower_applied")
    elif inp.pace is PacePreference.FASTER:
        notes.append("preference_faster_not_applied")
    return d.pace(code), tuple(notes)
