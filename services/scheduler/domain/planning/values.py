"""The planner's inputs and outputs: frozen values, codes instead of free text (no PHI)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum

from services.scheduler.domain.model import (
    CODE_PATTERN,
    Administration,
    TaperRuleViolation,
)
from services.scheduler.domain.model import DIAZEPAM as DIAZEPAM  # the planner's unit drug
from services.scheduler.domain.planning.reference import Pace, RiskCategory
from services.scheduler.domain.reference import TaperBounds

_CODE = re.compile(CODE_PATTERN)


class PlanningError(TaperRuleViolation):
    """The planning input cannot be planned; ``field`` names the input (never its value)."""


def is_code(value: str | None) -> bool:
    return bool(_CODE.fullmatch(value or ""))


class Strategy(StrEnum):
    PROPORTIONAL = "proportional"  # a fixed % of the current dose: the hyperbolic-like default
    LINEAR = "linear"  # a fixed mg cut (% of the starting dose), never above the bound
    CROSSOVER_THEN_PROPORTIONAL = "crossover_then_proportional"


class PacePreference(StrEnum):
    SLOWER = "slower"
    STANDARD = "standard"
    FASTER = "faster"


class StepKind(StrEnum):
    CROSSOVER = "crossover"  # one administration switched to its diazepam equivalent
    REDUCTION = "reduction"
    FINAL = "final"  # the step to zero (the only step exempt from the window bound)


class NeedKind(StrEnum):
    LIQUID = "liquid"
    COMPOUNDED = "compounded"
    TAPERING_STRIP = "tapering_strip"


@dataclass(frozen=True)
class History:
    seizures: bool = False
    falls: bool = False
    pregnancy: bool = False
    anxiety_or_depression: bool = False
    failed_taper: bool = False


@dataclass(frozen=True)
class EquivalenceOverride:
    """A clinician's per-patient equivalence: mg of the patient's drug equal to 10 mg diazepam."""

    mg_equal_to_10mg_diazepam: Decimal
    reason_code: str
    # Outside the published range (widened by the data's factor) only with this confirmation.
    outside_range_reason_code: str | None = None


@dataclass(frozen=True)
class BoundOverride:
    """A clinician allows a faster cut than the default bound for this patient, with a reason."""

    max_fraction_per_window: Decimal
    reason_code: str


@dataclass(frozen=True)
class PlanningInput:
    drug: str
    administrations_mg: tuple[Decimal, ...]  # the day's doses in order, e.g. 0.5 mg x 4
    duration_weeks: int
    age: int
    start_on: date
    formulations: tuple[str, ...]  # product codes on file (formulations.v1.json)
    frail: bool = False
    history: History = field(default_factory=History)
    pace: PacePreference = PacePreference.STANDARD
    crossover_wanted: bool = False
    maintenance_mg: Decimal | None = None  # in mg of the drug the taper ends on
    equivalence_override: EquivalenceOverride | None = None
    equivalence_column: str | None = None  # None: the table's default column (Ashton)
    bound_override: BoundOverride | None = None
    # A day above the drug's plausible maximum (equivalence data) only with this confirmation.
    dose_above_maximum_reason_code: str | None = None
    # The first step takes effect on ``start_on`` only when the clinician asks; by default the
    # patient stays on the current dose for one interval (a crossover: one stage) first.
    first_step_on_start: bool = False

    @property
    def daily_dose_mg(self) -> Decimal:
        return sum(self.administrations_mg, Decimal(0))


@dataclass(frozen=True)
class RiskAssessment:
    category: RiskCategory
    reasons: tuple[str, ...]  # feature codes present, e.g. ("seizure_history", "older_age")
    short_use: bool = False


@dataclass(frozen=True)
class PlannedStep:
    """From ``effective_on`` the patient takes ``administrations``; held ``hold_weeks``.

    ``hold_weeks`` is the time until the next step (0 on the last step). ``diazepam_eq_mg`` is
    for display (rounded to 0.0001 mg); bound checks use exact fractions.
    """

    number: int
    effective_on: date
    kind: StepKind
    administrations: tuple[Administration, ...]
    diazepam_eq_mg: Decimal
    hold_weeks: int

    @property
    def drugs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.drug for a in self.administrations if a.dose_mg > 0))

    @property
    def drug(self) -> str | None:
        """The one drug taken, or None during a crossover stage that mixes two (or at zero)."""
        drugs = self.drugs
        return drugs[0] if len(drugs) == 1 else None

    def daily_dose_mg_of(self, drug: str) -> Decimal:
        return sum((a.dose_mg for a in self.administrations if a.drug == drug), Decimal(0))

    @property
    def daily_dose_mg(self) -> Decimal:
        """Total mg; only meaningful when ``drug`` is not None (use ``diazepam_eq_mg`` else)."""
        return sum((a.dose_mg for a in self.administrations), Decimal(0))


@dataclass(frozen=True)
class FormulationNeed:
    """The next step cannot be made within the bound from the products on file.

    The plan stops at ``at_dose_mg``: the scheduler must not schedule beyond it until a product
    giving amounts of at most ``needed_unit_mg`` (e.g. a liquid) is on file, then plan again.
    """

    kind: NeedKind
    drug: str  # the drug of the product needed (diazepam when a crossover cannot be made)
    at_dose_mg: Decimal  # the daily mg taken where the plan stops, of the drug taken then
    needed_unit_mg: Decimal  # a product giving amounts this small (or smaller) would do
    reason_code: str
    after_step: int  # the last planned step's number (0: before the first)


@dataclass(frozen=True)
class Violation:
    step_number: int
    rule: str  # "max_cut_in_window" | "dates_not_increasing" | "negative_dose" | ...
    cut_fraction: Decimal | None = None


@dataclass(frozen=True)
class TaperPlan:
    drug: str  # the drug the patient takes now
    final_drug: str  # diazepam after a crossover, else ``drug``
    strategy: Strategy
    risk: RiskAssessment
    pace: Pace
    bound: TaperBounds
    baseline: tuple[Administration, ...]
    steps: tuple[PlannedStep, ...]
    formulation_needs: tuple[FormulationNeed, ...]
    ends_at: Decimal  # daily mg of ``final_drug`` (or of ``drug`` if stopped before a switch)
    equivalence: tuple[tuple[str, Decimal], ...]  # drug -> mg equal to 10 mg diazepam, used
    notes: tuple[str, ...]  # codes: pace choices, overrides applied
    reference_versions: tuple[tuple[str, str], ...]
    # Days from the start date to the last step (to where the plan stops, if a product is
    # missing); 0 for a plan without steps. The §2.4 range for the patient's duration of use is
    # (at least, at most) weeks; a plan outside it carries a note saying so.
    # Derived from the steps and the data, so left out of equality (a stored plan read back
    # without them is the same plan).
    expected_duration_days: int = field(default=0, compare=False)
    reference_duration_weeks: tuple[int, int | None] | None = field(default=None, compare=False)

    @property
    def complete(self) -> bool:
        """Ends at zero or the maintenance target, with no product missing."""
        return not self.formulation_needs
