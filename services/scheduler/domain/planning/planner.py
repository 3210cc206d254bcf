"""Build a whole taper schedule from a patient's planning input. Pure and deterministic.

Rules, in the order the planner applies them:

1. Crossover (optional): one administration at a time, the last of the day first, is replaced by
   its diazepam equivalent rounded to the nearest makeable diazepam dose; stages are
   ``crossover.stage_days`` apart; the first cut waits one pace interval after the last stage.
2. Each cut aims at ``pace.step_fraction`` of the current dose (proportional) or of the dose the
   taper started from (linear), at least the minimum step, never more than the window bound.
3. The new dose is the makeable dose nearest the target *at or above it* (the pace is a ceiling);
   the largest administration is lowered first, the last of the day last.
4. If no makeable dose lies between the target and the current dose, the plan takes the smallest
   makeable cut and lengthens the hold before it, so the average pace stays at or below the target.
5. At or below the final-step dose, the next step is to zero after one more interval.
6. If the smallest makeable cut breaks the window bound (or would go to zero from above the
   final-step dose), the plan stops there and raises a ``FormulationNeed`` instead of cutting more.
   The scheduler must not schedule beyond that dose until the product is on file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from math import ceil, floor

from services.scheduler.domain.planning.bounds import cut_fraction, diazepam_eq, window_baseline
from services.scheduler.domain.planning.doses import grid_unit, lower_by_notches, makeable
from services.scheduler.domain.planning.reference import (
    Formulation,
    Pace,
    PlanningReference,
    planning_reference_v1,
)
from services.scheduler.domain.planning.risk import assess_risk, choose_pace, equivalence_for
from services.scheduler.domain.planning.values import (
    DIAZEPAM,
    Administration,
    FormulationNeed,
    NeedKind,
    PlannedStep,
    PlanningError,
    PlanningInput,
    StepKind,
    Strategy,
    TaperPlan,
    is_code,
)
from services.scheduler.domain.reference import TaperBounds

ZERO = Decimal(0)
_DISPLAY = Decimal("0.0001")
# Keeps step-date arithmetic far from date.max (9999-12-20 overflowed into a 500, issue 13);
# the same window as services.chassis.dates, which the domain may not import.
_EARLIEST_START, _LATEST_START = date(1900, 1, 1), date(2100, 12, 31)


@dataclass
class _Draft:
    effective_on: date
    kind: StepKind
    administrations: tuple[Administration, ...]
    eq: Fraction
    hold_weeks: int = 0


class _Schedule:
    """Steps in the making; knows the window bound so every added step is checked."""

    def __init__(
        self,
        start_on: date,
        baseline: tuple[Administration, ...],
        equivalence: Mapping[str, Decimal],
        bound: TaperBounds,
    ) -> None:
        self.start_on = start_on
        self.baseline = baseline
        self.baseline_eq = diazepam_eq(baseline, equivalence)
        self.equivalence = equivalence
        self.bound = bound
        self.limit = Fraction(bound.max_fraction_per_step)
        self.drafts: list[_Draft] = []
        self.history: list[tuple[date, Fraction]] = []

    @property
    def current(self) -> tuple[Administration, ...]:
        return self.drafts[-1].administrations if self.drafts else self.baseline

    def _date_after(self, weeks: int) -> date:
        if not self.drafts:
            return self.start_on
        return self.drafts[-1].effective_on + timedelta(weeks=weeks)

    def fits(self, administrations: tuple[Administration, ...], after_weeks: int) -> bool:
        on = self._date_after(after_weeks)
        base = window_baseline(self.history, self.baseline_eq, on, self.bound.window_days)
        new = diazepam_eq(administrations, self.equivalence)
        return cut_fraction(base, new) <= self.limit

    def add(
        self, administrations: tuple[Administration, ...], kind: StepKind, after_weeks: int
    ) -> None:
        on = self._date_after(after_weeks)
        if self.drafts:
            self.drafts[-1].hold_weeks = after_weeks
        eq = diazepam_eq(administrations, self.equivalence)
        self.drafts.append(_Draft(on, kind, administrations, eq))
        self.history.append((on, eq))

    def steps(self) -> tuple[PlannedStep, ...]:
        return tuple(
            PlannedStep(
                number=i,
                effective_on=d.effective_on,
                kind=d.kind,
                administrations=d.administrations,
                diazepam_eq_mg=(Decimal(d.eq.numerator) / d.eq.denominator).quantize(
                    _DISPLAY, ROUND_HALF_EVEN
                ),
                hold_weeks=d.hold_weeks,
            )
            for i, d in enumerate(self.drafts, start=1)
        )


# --- inputs -----------------------------------------------------------------------------------
def _on_hand(inp: PlanningInput, ref: PlanningReference) -> tuple[Formulation, ...]:
    forms = []
    for code in inp.formulations:
        f = ref.formulations.get(code)
        if f is None:
            raise PlanningError("formulations", "unknown formulation code")
        forms.append(f)
    return tuple(forms)


def _validate(
    inp: PlanningInput, drug_forms: Sequence[Formulation], ref: PlanningReference
) -> None:
    if not drug_forms:
        raise PlanningError("formulations", "no formulation of the drug on file")
    if not inp.administrations_mg or not any(d > 0 for d in inp.administrations_mg):
        raise PlanningError("administrations_mg", "at least one dose greater than 0 is required")
    if not all(makeable(d, drug_forms) for d in inp.administrations_mg):
        raise PlanningError("administrations_mg", "not makeable from the formulations on file")
    _validate_plausible_day(inp, ref)
    if not _EARLIEST_START <= inp.start_on <= _LATEST_START:
        raise PlanningError("start_on", "outside the plausible window (1900-2100)")
    if inp.duration_weeks < 0:
        raise PlanningError("duration_weeks", "must not be negative")
    if not 0 <= inp.age <= 130:
        raise PlanningError("age", "out of range")
    if inp.maintenance_mg is not None and inp.maintenance_mg < 0:
        raise PlanningError("maintenance_mg", "must not be negative")
    bo = inp.bound_override
    if bo is not None:
        if not is_code(bo.reason_code):
            raise PlanningError("bound_override", "an override requires a reason code")
        if not ZERO < bo.max_fraction_per_window < 1:
            raise PlanningError("bound_override", "must be between 0 and 1")


def _validate_plausible_day(inp: PlanningInput, ref: PlanningReference) -> None:
    """A day above the drug's plausible maximum (label, ⚠ data) needs a clinician's confirmation
    reason code: implausible input (clonazepam 6 x 166 mg, issue 13) is refused, not planned."""
    row = ref.equivalence.get(inp.drug)
    if row is None or row.max_daily_mg is None or inp.daily_dose_mg <= row.max_daily_mg:
        return
    code = inp.dose_above_maximum_reason_code
    if code is None:
        raise PlanningError(
            "administrations_mg",
            "the daily total is above the plausible maximum for this drug (equivalence data): "
            "a confirmation reason code is required",
        )
    if not is_code(code):
        raise PlanningError("dose_above_maximum_reason_code", "must be a reason code")


def _bound(inp: PlanningInput, ref: PlanningReference) -> TaperBounds:
    if inp.bound_override is None:
        return ref.bounds
    return replace(
        ref.bounds,
        max_fraction_per_step=inp.bound_override.max_fraction_per_window,
        version=f"{ref.bounds.version}+override:{inp.bound_override.reason_code}",
    )


def _need(
    drug: str,
    at_dose: Decimal,
    needed_unit: Decimal,
    reason: str,
    after_step: int,
    on_hand: Sequence[Formulation],
    ref: PlanningReference,
) -> FormulationNeed:
    """A liquid if one not on file would give small enough amounts; else a tapering strip for
    drugs the strip service makes; else a compounded product."""
    liquid = any(
        f.kind == "liquid" and f not in on_hand and min(f.units_mg) <= needed_unit
        for f in ref.formulations.for_drug(drug)
    )
    if liquid:
        kind = NeedKind.LIQUID
    elif drug in ref.formulations.tapering_strip_drugs:
        kind = NeedKind.TAPERING_STRIP
    else:
        kind = NeedKind.COMPOUNDED
    return FormulationNeed(
        kind=kind,
        drug=drug,
        at_dose_mg=at_dose,
        needed_unit_mg=needed_unit.quantize(_DISPLAY, ROUND_HALF_EVEN),
        reason_code=reason,
        after_step=after_step,
    )


# --- the two phases ---------------------------------------------------------------------------
def _crossover(
    sched: _Schedule,
    dz_forms: Sequence[Formulation],
    on_hand: Sequence[Formulation],
    ref: PlanningReference,
    ceiling: _CrossoverCeiling | None = None,
) -> FormulationNeed | None:
    """Switch one administration at a time to diazepam; on any failure leave ``sched`` empty.

    The diazepam day must stay at or below ``ceiling`` (refused with the reason otherwise), and
    no administration's diazepam may be rounded up or down past the data's fractions."""
    unit = grid_unit(dz_forms)
    funit = Fraction(unit)
    d = ref.defaults
    stage_weeks = max(1, ceil(d.crossover_stage_days / 7))
    max_up = 1 + Fraction(d.crossover_max_rounding_up_fraction)
    min_down = 1 - Fraction(d.crossover_max_rounding_down_fraction)
    if ceiling is not None:
        ceiling.check(diazepam_eq(sched.baseline, sched.equivalence), "full diazepam equivalent")
    doses = list(sched.baseline)
    for i in reversed(range(len(doses))):
        a = doses[i]
        if a.dose_mg == 0:
            doses[i] = Administration(DIAZEPAM, ZERO)
            continue
        exact = Fraction(a.dose_mg) * 10 / Fraction(sched.equivalence[a.drug])
        k = max(1, floor(exact / funit + Fraction(1, 2)))  # nearest, ties up, never zero
        dz = unit * k
        if Fraction(dz) > exact * max_up or Fraction(dz) < exact * min_down:
            return _crossover_failed(sched, exact, "crossover_dose_not_makeable", on_hand, ref)
        doses[i] = Administration(DIAZEPAM, dz)
        stage = tuple(doses)
        if not sched.fits(stage, stage_weeks):
            return _crossover_failed(sched, exact, "crossover_cut_exceeds_bound", on_hand, ref)
        sched.add(stage, StepKind.CROSSOVER, stage_weeks)
    if ceiling is not None:
        ceiling.check(Fraction(sum((a.dose_mg for a in doses), ZERO)), "rounded diazepam day")
    return None


@dataclass(frozen=True)
class _CrossoverCeiling:
    """The most diazepam a switch may end on for this patient (data: ``crossover``; lower for an
    older or frail patient), and the input field a refusal names."""

    mg: Decimal
    field: str

    def check(self, diazepam_mg: Fraction, what: str) -> None:
        if diazepam_mg > Fraction(self.mg):
            raise PlanningError(
                self.field,
                f"the {what} is above the crossover ceiling for this patient's age or frailty "
                "(planning data): taper the current drug below it first, or taper it directly",
            )


def _crossover_ceiling(inp: PlanningInput, ref: PlanningReference) -> _CrossoverCeiling | None:
    mg = ref.defaults.crossover_ceiling_mg(inp.age, inp.frail)
    if mg is None:
        return None
    return _CrossoverCeiling(mg, "crossover_wanted" if inp.crossover_wanted else "strategy")


def _crossover_failed(
    sched: _Schedule,
    exact: Fraction,
    reason: str,
    on_hand: Sequence[Formulation],
    ref: PlanningReference,
) -> FormulationNeed:
    sched.drafts.clear()
    sched.history.clear()
    needed = exact * Fraction(ref.defaults.crossover_max_rounding_up_fraction)
    daily = sum((x.dose_mg for x in sched.baseline), ZERO)
    return _need(
        DIAZEPAM, daily, Decimal(needed.numerator) / needed.denominator, reason, 0, on_hand, ref
    )


def _lower_to(
    doses: tuple[Decimal, ...], unit: Decimal, target: Decimal
) -> tuple[tuple[Decimal, ...], tuple[Decimal, ...]]:
    """(gentlest makeable split at or above ``target``, the next one below it)."""
    daily = sum(doses, ZERO)
    if all(d % unit == 0 for d in doses):
        k = int((daily - target) // unit)
        return lower_by_notches(doses, unit, k), lower_by_notches(doses, unit, k + 1)
    at = doses
    while True:  # off the grid (a half of another tablet): walk one notch at a time
        below = lower_by_notches(at, unit, 1)
        if sum(below, ZERO) < target or below == at:
            return at, below
        at = below


def _taper(
    sched: _Schedule,
    drug: str,
    forms: Sequence[Formulation],
    on_hand: Sequence[Formulation],
    pace: Pace,
    *,
    linear: bool,
    maintenance: Decimal,
    ref: PlanningReference,
) -> FormulationNeed | None:
    unit = grid_unit(forms)
    per_eq = sched.equivalence[drug] / 10  # mg of the drug per mg diazepam-equivalent
    min_cut = ref.defaults.minimum_step_eq_mg * per_eq
    final_at = ref.defaults.final_step_at_or_below_eq_mg * per_eq
    limit = sched.bound.max_fraction_per_step
    interval = pace.interval_weeks
    doses = tuple(a.dose_mg for a in sched.current)
    start_daily = sum(doses, ZERO)
    if maintenance >= start_daily:
        raise PlanningError("maintenance_mg", "must be below the daily dose the taper starts from")
    if maintenance and not makeable(maintenance, forms):
        raise PlanningError("maintenance_mg", "not makeable from the formulations on file")
    while True:
        daily = sum(doses, ZERO)
        if daily <= maintenance:
            return None
        if maintenance == 0 and daily <= final_at:
            zeros = tuple(Administration(drug, ZERO) for _ in doses)
            sched.add(zeros, StepKind.FINAL, interval)
            return None
        aim = pace.step_fraction * (start_daily if linear else daily)
        aim = min(max(aim, min_cut), limit * daily)
        target = max(daily - aim, maintenance)
        at, below = _lower_to(doses, unit, target)
        intervals = 1
        new = at
        if sum(at, ZERO) >= daily:  # rounding makes no progress: smallest cut, longer hold
            new = below
            if sum(new, ZERO) < maintenance:
                return None  # the next makeable cut passes the target: stop just above it
            intervals = ceil(Fraction(daily - sum(new, ZERO)) / Fraction(aim))
        step = tuple(Administration(drug, x) for x in new)
        after = intervals * interval
        if sum(new, ZERO) == 0:
            reason = "final_step_above_final_dose"
            return _need(drug, daily, final_at, reason, len(sched.drafts), on_hand, ref)
        if not sched.fits(step, after):
            reason = "smallest_cut_exceeds_bound"
            return _need(drug, daily, limit * daily, reason, len(sched.drafts), on_hand, ref)
        sched.add(step, StepKind.REDUCTION, after)
        doses = new


# --- the entry point --------------------------------------------------------------------------
def plan(
    inp: PlanningInput,
    strategy: Strategy | None = None,
    *,
    ref: PlanningReference | None = None,
) -> TaperPlan:
    """The patient's whole schedule. ``strategy`` defaults to crossover when the patient wants
    it, else proportional. Raises ``PlanningError`` for input it cannot plan."""
    ref = ref or planning_reference_v1()
    if strategy is None:
        strategy = (
            Strategy.CROSSOVER_THEN_PROPORTIONAL if inp.crossover_wanted else Strategy.PROPORTIONAL
        )
    equivalence = equivalence_for(inp, ref)
    on_hand = _on_hand(inp, ref)
    drug_forms = tuple(f for f in on_hand if f.drug == inp.drug)
    _validate(inp, drug_forms, ref)
    risk = assess_risk(inp, equivalence, ref)
    pace, notes = choose_pace(inp, risk, ref)
    if inp.equivalence_override is not None:
        notes += ("equivalence_override",)
    if inp.bound_override is not None:
        notes += ("bound_override",)
    bound = _bound(inp, ref)
    baseline = tuple(Administration(inp.drug, d) for d in inp.administrations_mg)
    sched = _Schedule(inp.start_on, baseline, equivalence, bound)

    drug, forms = inp.drug, drug_forms
    need: FormulationNeed | None = None
    if strategy is Strategy.CROSSOVER_THEN_PROPORTIONAL and inp.drug != DIAZEPAM:
        dz_forms = tuple(f for f in on_hand if f.drug == DIAZEPAM)
        if not dz_forms:
            raise PlanningError("formulations", "a crossover needs a diazepam formulation on file")
        need = _crossover(sched, dz_forms, on_hand, ref, _crossover_ceiling(inp, ref))
        if need is None:
            drug, forms = DIAZEPAM, dz_forms
    if need is None:
        need = _taper(
            sched,
            drug,
            forms,
            on_hand,
            pace,
            linear=strategy is Strategy.LINEAR,
            maintenance=inp.maintenance_mg or ZERO,
            ref=ref,
        )
    ends_at = sum((a.dose_mg for a in sched.current if a.drug == drug), ZERO)
    return TaperPlan(
        drug=inp.drug,
        final_drug=drug,
        strategy=strategy,
        risk=risk,
        pace=pace,
        bound=bound,
        baseline=baseline,
        steps=sched.steps(),
        formulation_needs=(need,) if need else (),
        ends_at=ends_at,
        equivalence=tuple(sorted(equivalence.items())),
        notes=notes,
        reference_versions=ref.versions,
    )
