"""An independent oracle for taper plans, and a generator of awkward patients (issue 13).

The oracle re-derives every rule from the data files themselves (never from ``doses.py`` or
``bounds.py``): which doses the products make (brute force over the pieces), the 25%/14-day
window bound, the patient's pace, and the §2.4 taper length by duration of use.

The pace, precisely: within any 14-day window (the bound's window) the diazepam-equivalent daily
dose may fall by at most ``max(step_fraction x top, minimum step)`` where ``top`` is the highest
dose in effect during the window (the dose when it opened, or a higher one a step inside it
reached) and ``step_fraction`` is the stated pace's step percent. Every pace's interval is at
least the window (2 or 4 weeks), so one window holds one cut: the pace per window is the pace per
step. The minimum step (``minimum_step_diazepam_eq_mg``) is part of the pace in the data: a tail
cut of 0.1 mg diazepam-equivalent is allowed even where it is more than ``step_fraction``.
Exempt: a FINAL step to zero from at or below the final-step dose, crossover stages (a switch
rounds to a makeable diazepam dose), and plans with a recorded bound override (the clinician
chose the pace).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

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
)
from services.scheduler.domain.planning import plan as make_plan

DATA = Path(__file__).resolve().parents[2] / "services" / "scheduler" / "domain" / "data"
SCALE = 1000  # every unit in the data is a whole number of micrograms
WEEK = 7


def _json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return data


@cache
def products() -> dict[str, dict[str, Any]]:
    return {f["code"]: f for f in _json("formulations.v1.json")["formulations"]}


@cache
def defaults() -> dict[str, Any]:
    return _json("planning_defaults.v1.json")


@cache
def bounds() -> dict[str, Any]:
    return _json("taper_bounds.v1.json")


def pieces(code: str) -> tuple[int, ...]:
    """Micrograms one piece of a product gives, read from the data's own rules."""
    f = products()[code]
    if f["kind"] == "liquid":
        return (int(Decimal(f["concentration_mg_per_ml"]) * Decimal(f["increment_ml"]) * SCALE),)
    whole = int(Decimal(f["strength_mg"]) * SCALE)
    return (whole, whole // 2) if f.get("scored") else (whole,)


_REACH: dict[tuple[int, ...], bytearray] = {}


def _sums(units: tuple[int, ...], target: int) -> bool:
    """Brute force: is ``target`` a sum of any number of each unit? (a table built upwards,
    one amount at a time, from the pieces alone)"""
    table = _REACH.setdefault(units, bytearray(b"\x01"))
    for n in range(len(table), target + 1):
        table.append(any(u <= n and table[n - u] for u in units))
    return bool(table[target])


def makes(dose: Decimal, codes: Iterable[str], drug: str) -> bool:
    scaled = dose * SCALE
    if scaled != scaled.to_integral_value() or dose < 0:
        return False
    units = tuple(sorted({u for c in codes if products()[c]["drug"] == drug for u in pieces(c)}))
    return bool(units) and _sums(units, int(scaled))


def singles(codes: Iterable[str], drug: str, ceiling: Decimal) -> list[Decimal]:
    """Every makeable single dose from 0 to ``ceiling`` (brute force over the micrograms)."""
    units = tuple(sorted({u for c in codes if products()[c]["drug"] == drug for u in pieces(c)}))
    g = units[0]
    for u in units:
        while u % g:
            g, u = u % g, g
    top = int(ceiling * SCALE)
    return [Decimal(n) / SCALE for n in range(0, top + 1, g) if _sums(units, n)]


# --- the patient's numbers, from the data -----------------------------------------------------
def eq(doses: Sequence[tuple[str, Decimal]], equivalence: dict[str, Decimal]) -> Fraction:
    return sum((Fraction(d) * 10 / Fraction(equivalence[drug]) for drug, d in doses), Fraction(0))


def reference_range_weeks(duration_weeks: int) -> tuple[int, int | None]:
    """The §2.4 table (read from the data): (at least, at most) weeks of taper."""
    for band in defaults()["taper_length_by_use"]["bands"]:
        below = band.get("use_below_weeks")
        if below is None or duration_weeks < below:
            return int(band["min_weeks"]), band.get("max_weeks")
    raise AssertionError("the bands must end with an open one")


@dataclasses.dataclass
class Verdict:
    rules: list[str]
    window_above_pace: bool
    expected_days: int

    def __bool__(self) -> bool:
        return not self.rules


def _windows(
    plan: TaperPlan, equivalence: dict[str, Decimal]
) -> Iterable[tuple[int, Fraction, Fraction, Fraction]]:
    """(step index, window top, new dose, previous dose) for every step."""
    window = int(bounds()["window_days"])
    start = eq([(a.drug, a.dose_mg) for a in plan.baseline], equivalence)
    history: list[tuple[date, Fraction]] = []
    prev = start
    for i, s in enumerate(plan.steps):
        new = eq([(a.drug, a.dose_mg) for a in s.administrations], equivalence)
        opens = s.effective_on - timedelta(days=window)
        before = [e for d, e in history if d <= opens]
        inside = [e for d, e in history if d > opens]
        top = max([before[-1] if before else start, *inside])
        yield i, top, new, prev
        history.append((s.effective_on, new))
        prev = new


def check(inp: PlanningInput, plan: TaperPlan) -> Verdict:
    """Every rule of issue 13 this plan breaks (codes); empty when it is right."""
    rules: list[str] = []
    d = defaults()
    equivalence = dict(plan.equivalence)
    codes = inp.formulations
    limit = Fraction(bounds()["max_fraction_per_step"])
    if inp.bound_override is not None:
        limit = Fraction(inp.bound_override.max_fraction_per_window)
    pace = Fraction(plan.pace.step_fraction)
    min_step = Fraction(d["minimum_step_diazepam_eq_mg"])
    final_at = Fraction(d["final_step_at_or_below_diazepam_eq_mg"])
    above_pace = False
    for i, top, new, prev in _windows(plan, equivalence):
        s = plan.steps[i]
        if not all(makes(a.dose_mg, codes, a.drug) for a in s.administrations):
            rules.append("not_makeable")
        final_ok = s.kind is StepKind.FINAL and new == 0 and prev <= final_at
        cut = (top - new) / top if top > 0 else Fraction(0)
        if cut > limit and not final_ok:
            rules.append("window_above_bound")
        if s.kind is StepKind.CROSSOVER or final_ok or inp.bound_override is not None:
            continue
        if top - new > max(pace * top, min_step):
            above_pace = True
            rules.append("window_above_pace")
        if new > prev:
            rules.append("dose_rises")
    if plan.steps and plan.steps[0].effective_on == inp.start_on:
        if not getattr(inp, "first_step_on_start", False):
            rules.append("first_step_on_start_date")
    last = plan.steps[-1].administrations if plan.steps else plan.baseline
    end_drug = plan.final_drug
    ends = sum((a.dose_mg for a in last if a.drug == end_drug), Decimal(0))
    target = inp.maintenance_mg or Decimal(0)
    if plan.complete and ends != target:
        rules.append("complete_not_at_target")
    if plan.formulation_needs and needless(inp, plan, within_pace=True):
        rules.append("needless_formulation_need")
    days = (plan.steps[-1].effective_on - inp.start_on).days if plan.steps else 0
    stated = getattr(plan, "expected_duration_days", None)
    if stated is not None and stated != days:
        rules.append("expected_duration_wrong")
    lo, hi = reference_range_weeks(inp.duration_weeks)
    outside = (days < lo * WEEK) or (hi is not None and days > hi * WEEK)
    if plan.complete and target == 0 and outside:
        flags = {"expected_duration_below_reference", "expected_duration_above_reference"}
        if not flags & set(plan.notes):
            rules.append("duration_outside_reference_unflagged")
    return Verdict(sorted(set(rules)), above_pace, days)


def needless(inp: PlanningInput, plan: TaperPlan, *, within_pace: bool) -> bool:
    """A formulation need although a makeable cut within the pace (or, ``within_pace=False``,
    within the window bound) and not below the target exists: each administration lowered or
    kept, every one makeable from the products on file."""
    if not plan.formulation_needs:
        return False
    equivalence = dict(plan.equivalence)
    pace = Fraction(plan.pace.step_fraction)
    min_step = Fraction(defaults()["minimum_step_diazepam_eq_mg"])
    target = inp.maintenance_mg or Decimal(0)
    need = plan.formulation_needs[0]
    if need.reason_code.startswith("crossover"):
        return False
    current = plan.steps[-1].administrations if plan.steps else plan.baseline
    drug = need.drug
    daily = sum((a.dose_mg for a in current), Decimal(0))
    top = eq([(drug, daily)], equivalence)
    bound = top * Fraction(bounds()["max_fraction_per_step"])
    if inp.bound_override is not None:
        bound = top * Fraction(inp.bound_override.max_fraction_per_window)
    allowed = bound
    if within_pace and inp.bound_override is None:
        allowed = min(max(pace * top, min_step), bound)
    sums = {Decimal(0)}
    for a in current:
        options = singles(inp.formulations, drug, a.dose_mg)
        sums = {s + o for s in sums for o in options}
    for s in sums:
        if 0 < s < daily and s >= target and top - eq([(drug, s)], equivalence) <= allowed:
            return True
    return False


# --- the generator ----------------------------------------------------------------------------
def drugs_with_products() -> tuple[str, ...]:
    return tuple(sorted({f["drug"] for f in products().values()}))


def codes_of(drug: str) -> tuple[str, ...]:
    return tuple(c for c, f in products().items() if f["drug"] == drug)


def _input_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(PlanningInput)}


def awkward_patient(rng: random.Random) -> tuple[PlanningInput, Strategy]:
    """Every drug, sparse product sets (often one), awkward makeable doses, ages 18-95, every
    risk flag, preference and strategy, maintenance targets, overrides now and then."""
    drug = rng.choice(drugs_with_products())
    all_codes = codes_of(drug)
    k = rng.choice([1, 1, 1, 2, 2, len(all_codes)])
    on_hand = tuple(rng.sample(all_codes, min(k, len(all_codes))))
    strategy = rng.choice(tuple(Strategy))
    if drug != DIAZEPAM and (
        strategy is Strategy.CROSSOVER_THEN_PROPORTIONAL or rng.random() < 0.2
    ):
        dz = codes_of(DIAZEPAM)
        on_hand += tuple(rng.sample(dz, rng.randint(1, len(dz))))
    units = sorted(
        {Decimal(u) / SCALE for c in on_hand if products()[c]["drug"] == drug for u in pieces(c)}
    )
    n = rng.choice([1, 1, 2, 2, 3, 4])
    doses = tuple(
        sum((rng.choice(units) for _ in range(rng.randint(1 if i == 0 else 0, 4))), Decimal(0))
        for i in range(n)
    )
    if rng.random() < 0.3:  # a big dose too
        doses = (doses[0] + max(units) * rng.randint(1, 4), *doses[1:])
    daily = sum(doses, Decimal(0))
    duration = rng.choice(
        [rng.randint(1, 7), rng.randint(8, 34), rng.randint(26, 52), rng.randint(53, 1040)]
    )
    maintenance = None
    if rng.random() < 0.15:
        below = [m for m in singles(on_hand, drug, daily) if 0 < m < daily]
        if below:
            maintenance = rng.choice(below)
    history = History(
        seizures=rng.random() < 0.1,
        falls=rng.random() < 0.15,
        pregnancy=rng.random() < 0.05,
        anxiety_or_depression=rng.random() < 0.3,
        failed_taper=rng.random() < 0.15,
    )
    extra: dict[str, Any] = {}
    if rng.random() < 0.05:
        extra["bound_override"] = BoundOverride(Decimal("0.4"), "clinician_override")
    if rng.random() < 0.05 and drug != DIAZEPAM:
        extra["equivalence_override"] = EquivalenceOverride(Decimal("1"), "clinician_judgement")
    if rng.random() < 0.05 and "first_step_on_start" in _input_fields():
        extra["first_step_on_start"] = True
    inp = PlanningInput(
        drug=drug,
        administrations_mg=doses,
        duration_weeks=duration,
        age=rng.randint(18, 95),
        start_on=date(2026, 1, 5) + timedelta(days=rng.randint(0, 365)),
        formulations=on_hand,
        frail=rng.random() < 0.15,
        history=history,
        pace=rng.choice(tuple(PacePreference)),
        crossover_wanted=rng.random() < 0.2,
        maintenance_mg=maintenance,
        **extra,
    )
    return inp, strategy


def plan_confirming(
    inp: PlanningInput, strategy: Strategy | None
) -> tuple[PlanningInput, TaperPlan, bool]:
    """Plan ``inp``; where the planner asks for a clinician's confirmation (issue 13 item 11a: a
    day above the drug's plausible maximum, an equivalence far outside the published range),
    plan it again as if the clinician had recorded one, so the survey's population stays the
    one the review generated. Every other refusal (e.g. the crossover ceiling) stands."""
    confirmed = False
    for _ in range(3):
        try:
            return inp, make_plan(inp, strategy), confirmed
        except PlanningError as exc:
            eo = inp.equivalence_override
            if exc.field == "administrations_mg" and inp.dose_above_maximum_reason_code is None:
                inp = dataclasses.replace(inp, dose_above_maximum_reason_code="survey_confirmed")
            elif exc.field == "equivalence_override" and eo and not eo.outside_range_reason_code:
                inp = dataclasses.replace(
                    inp,
                    equivalence_override=dataclasses.replace(
                        eo, outside_range_reason_code="survey_confirmed"
                    ),
                )
            else:
                raise
            confirmed = True
    return inp, make_plan(inp, strategy), confirmed
