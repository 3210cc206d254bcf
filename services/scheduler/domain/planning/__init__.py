"""The pure taper planner (issue 3): risk category, pace, strategies, makeable doses, bounds.

Public API::

    plan(PlanningInput, Strategy | None) -> TaperPlan
    assess_risk(PlanningInput) -> RiskAssessment
    makeable(dose, formulations) -> bool; round_to_makeable(target, formulations, not_above=)
    check_bounds(baseline, steps, bound, equivalence, final_step_at_or_below_eq_mg=) -> [Violation]
    planning_reference_v1() -> PlanningReference (equivalence, formulations, defaults, bounds)
"""

from services.scheduler.domain.planning.bounds import check_bounds, diazepam_eq
from services.scheduler.domain.planning.doses import (
    grid_unit,
    lower_by_notches,
    makeable,
    round_to_makeable,
)
from services.scheduler.domain.planning.planner import plan
from services.scheduler.domain.planning.reference import (
    DrugEquivalence,
    EquivalenceTable,
    Formulation,
    FormulationCatalogue,
    Pace,
    PlanningDefaults,
    PlanningReference,
    RiskCategory,
    equivalence_v1,
    final_step_threshold_mg,
    formulations_v1,
    planning_defaults_v1,
    planning_reference_v1,
)
from services.scheduler.domain.planning.risk import assess_risk, choose_pace, equivalence_for
from services.scheduler.domain.planning.values import (
    DIAZEPAM,
    Administration,
    BoundOverride,
    EquivalenceOverride,
    FormulationNeed,
    History,
    NeedKind,
    PacePreference,
    PlannedStep,
    PlanningError,
    PlanningInput,
    RiskAssessment,
    StepKind,
    Strategy,
    TaperPlan,
    Violation,
)

__all__ = [
    "DIAZEPAM",
    "Administration",
    "BoundOverride",
    "DrugEquivalence",
    "EquivalenceOverride",
    "EquivalenceTable",
    "Formulation",
    "FormulationCatalogue",
    "FormulationNeed",
    "History",
    "NeedKind",
    "Pace",
    "PacePreference",
    "PlannedStep",
    "PlanningDefaults",
    "PlanningError",
    "PlanningInput",
    "PlanningReference",
    "RiskAssessment",
    "RiskCategory",
    "StepKind",
    "Strategy",
    "TaperPlan",
    "Violation",
    "assess_risk",
    "check_bounds",
    "choose_pace",
    "diazepam_eq",
    "equivalence_for",
    "equivalence_v1",
    "final_step_threshold_mg",
    "formulations_v1",
    "grid_unit",
    "lower_by_notches",
    "makeable",
    "plan",
    "planning_defaults_v1",
    "planning_reference_v1",
    "round_to_makeable",
]
