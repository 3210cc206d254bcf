"""Build a whole taper schedule from a patient's planning input. Pure and deterministic.

Rules, in the order the planner applies them:

1. Crossover (optional): one administration at a time, the last of the day first, is replaced by
   its diazepam equivalent rounded to the nearest makeable diazepam dose; stages are
   ``crossover.stage_days`` apart; the first cut waits one pace interval after the last stage.
2. The first step takes effect one interval (a crossover: one stage) after the start date: the
   patient starts the plan on the dose they take, unless the clinician asks for the first step
   on the start date (``PlanningInput.first_step_on_start``).
3. The pace is a ceiling on every cut: ``pace.step_fraction`` of the current dose, or the minimum
   step, whichever is larger, never more than the window bound. Every interval is at least the
   bound's 14-day window, so this is also the most a 14-day window falls. A proportional cut
   aims at the ceiling; a linear one at ``step_fraction`` of the starting dose, under the same
   ceiling. Only a recorded bound override lifts the ceiling to the override's bound.
4. The new dose is the makeable dose nearest the target *at or above it*, searched over every
   combination of the products on file (halves of scored tablets, liquid measures), each
   administration lowered or kept: the largest lowered first, the last of the day last. A
   maintenance target is never passed and, being makeable, is landed on exactly.
5. If no makeable dose lies within the pace, the plan stops and raises a ``FormulationNeed``
   (``smallest_cut_exceeds_pace``, or ``smallest_cut_exceeds_bound`` when even the bound would
   break) instead of cutting more. With a recorded bound override the smallest makeable cut
   within the override is taken instead, with a longer hold so the average stays at the pace.
6. At or below the final-step dose, the next step is to zero after one more interval.
7. Duration of use shapes the plan (§2.4, ``taper_length_by_use`` in the data): when the risk
   pace would make the plan longer than its band allows, the next faster pace is tried, up to
   the band's fastest (one slower for a patient who asked for a slower pace; never for a
   maintenance plan). The plan states its expected duration and the band; a plan outside the
   band says so in its notes.
The scheduler must not schedule beyond a ``FormulationNeed``'s dose until the product is on file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from math import ceil, floor

from services.scheduler.domain.planning.bounds import cut_fraction, diazepam_eq, window_baseline
from services.scheduler.domain.planning.doses import grid_unit, lower_to, makeable
from services.scheduler.domain.planning.duration import band_for, faster_paces
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
    PacePreference,
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
        *,
        first_on_start: bool = False,
        overridden: bool = False,
    ) -> None:
        self.start_on = start_on
        self.first_on_start = first_on_start
        self.overridden = overridden  # a recorded bound override: the clinician set the ceiling
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
        if not self.drafts:  # the patient starts the plan on the dose they take (unless asked)
            return self.start_on + timedelta(weeks=0 if self.first_on_start else weeks)
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
    # Every administration's switched dose is checked before any stage is planned: a need
    # raised by the first administration that fails would name a product (say a liquid) that
    # still cannot make a smaller one, and the re-plan with it on file would stop again with
    # no step. The need is sized by the smallest administration that fails, so the product it
    # names makes the whole switch.
    switched: dict[int, Decimal] = {}
    unmakeable: list[Fraction] = []
    for i, a in enumerate(sched.baseline):
        if a.dose_mg == 0:
            continue
        exact = Fraction(a.dose_mg) * 10 / Fraction(sched.equivalence[a.drug])
        k = max(1, floor(exact / funit + Fraction(1, 2)))  # nearest, ties up, never zero
        switched[i] = unit * k
        if Fraction(switched[i]) > exact * max_up or Fraction(switched[i]) < exact * min_down:
            unmakeable.append(exact)
    if unmakeable:
        return _crossover_failed(
            sched, min(unmakeable), "crossover_dose_not_makeable", on_hand, ref
        )
    doses = list(sched.baseline)
    for i in reversed(range(len(doses))):
        a = doses[i]
        if a.dose_mg == 0:
            doses[i] = Administration(DIAZEPAM, ZERO)
            continue
        exact = Fraction(a.dose_mg) * 10 / Fraction(sched.equivalence[a.drug])
        doses[i] = Administration(DIAZEPAM, switched[i])
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
        # The pace is a ceiling on every cut: its share of today's dose (each interval is at
        # least the 14-day window, so this is also the cut per window), or the minimum step;
        # never more than the window bound. A linear plan aims at a share of the starting dose
        # under the same ceiling; only a recorded bound override lifts the ceiling to the bound.
        pace_cut = max(pace.step_fraction * daily, min_cut)
        ceiling = limit * daily if sched.overridden else min(pace_cut, limit * daily)
        linear_cut = max(pace.step_fraction * start_daily, min_cut)
        aim = min(linear_cut if linear else pace_cut, ceiling)
        new = lower_to(doses, forms, max(daily - aim, maintenance))
        intervals = 1
        if new is None and sched.overridden:
            # The clinician recorded a faster ceiling: the smallest makeable cut within it, held
            # longer so the average stays at the pace.
            new = lower_to(doses, forms, max(daily - limit * daily, maintenance), gentlest=True)
            if new is not None:
                intervals = ceil(Fraction(daily - sum(new, ZERO)) / Fraction(aim))
        if new is None:
            # No makeable dose within the pace: a product giving smaller amounts, never a
            # bigger cut (item 5). Say whether even the bound would have been broken.
            gentlest = lower_to(doses, forms, maintenance, gentlest=True)
            over_bound = gentlest is None or sum(gentlest, ZERO) < (1 - limit) * daily
            reason = "smallest_cut_exceeds_bound" if over_bound else "smallest_cut_exceeds_pace"
            if gentlest is not None and sum(gentlest, ZERO) == 0:
                reason = "final_step_above_final_dose"
            return _need(drug, daily, aim, reason, len(sched.drafts), on_hand, ref)
        step = tuple(Administration(drug, x) for x in new)
        after = intervals * interval
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
    maintenance = inp.maintenance_mg or ZERO
    band = band_for(inp.duration_weeks)
    # Duration of use shapes the plan (§2.4): if the risk pace would overrun the band's longest
    # taper, the next faster pace is tried, up to the band's fastest (one pace slower than that
    # for a patient who asked for a slower pace); never for a plan to a maintenance dose (the
    # table is for stopping).
    candidates = [pace.code]
    if not maintenance:
        order = [p.code for p in ref.defaults.paces]
        fastest = order.index(band.fastest_pace)
        if inp.pace is PacePreference.SLOWER:
            fastest = min(fastest + 1, len(order) - 1)
        candidates = faster_paces(pace.code, order[fastest], order)
    for code in candidates:
        tried = ref.defaults.pace(code)
        sched = _Schedule(
            inp.start_on,
            baseline,
            equivalence,
            bound,
            first_on_start=inp.first_step_on_start,
            overridden=inp.bound_override is not None,
        )
        drug, need = _build(sched, inp, strategy, tried, on_hand, drug_forms, maintenance, ref)
        days = _days(inp, sched)
        if band.max_weeks is None or days <= band.max_weeks * 7:
            break
    if tried.code != pace.code:
        notes += ("pace_faster_for_duration_of_use",)
    pace = tried
    if band.max_weeks is not None and days > band.max_weeks * 7:
        notes += ("expected_duration_above_reference",)
    elif not need and not maintenance and days < band.min_weeks * 7:
        notes += ("expected_duration_below_reference",)
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
        expected_duration_days=days,
        reference_duration_weeks=(band.min_weeks, band.max_weeks),
    )


def _days(inp: PlanningInput, sched: _Schedule) -> int:
    """The plan's expected length: start date to its last step (to where it stops, if a product
    is missing)."""
    return (sched.drafts[-1].effective_on - inp.start_on).days if sched.drafts else 0


def _build(
    sched: _Schedule,
    inp: PlanningInput,
    strategy: Strategy,
    pace: Pace,
    on_hand: Sequence[Formulation],
    drug_forms: Sequence[Formulation],
    maintenance: Decimal,
    ref: PlanningReference,
) -> tuple[str, FormulationNeed | None]:
    """Fill ``sched`` (crossover, then the taper); the drug it ends on and any need."""
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
            maintenance=maintenance,
            ref=ref,
        )
    return drug, need
