"""The window bound on a whole schedule, reusable by the service layer.

Within any ``window_days`` window the diazepam-equivalent daily dose may fall by at most
``max_fraction_per_step`` of the highest dose in effect during the window (the same reading as
``PatientTaper.change``). The one exemption: a FINAL step to zero from at or below the
final-step dose. Comparisons use exact fractions, so a cut of exactly 25% passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from services.scheduler.domain.planning.values import (
    Administration,
    PlannedStep,
    StepKind,
    Violation,
)
from services.scheduler.domain.reference import TaperBounds

TEN = Fraction(10)


def diazepam_eq(
    administrations: Sequence[Administration], equivalence: Mapping[str, Decimal]
) -> Fraction:
    """Exact daily diazepam-equivalent mg of a day's administrations."""
    total = Fraction(0)
    for a in administrations:
        total += Fraction(a.dose_mg) * TEN / Fraction(equivalence[a.drug])
    return total


def window_baseline(
    history: Sequence[tuple[date, Fraction]], baseline: Fraction, on: date, window_days: int
) -> Fraction:
    """The highest dose in effect during the window ending at ``on``: the dose when it began, or
    a higher one a step inside it reached (a crossover rounding up, a return to the prior dose),
    so a cut after a rise is measured from the top, not from the lower dose before it.

    ``history`` is (effective_on, eq) of earlier steps, oldest first.
    """
    window_start = on - timedelta(days=window_days)
    i = len(history)
    while i > 0 and history[i - 1][0] > window_start:
        i -= 1
    top = history[i - 1][1] if i > 0 else baseline
    return max([top, *(eq for _, eq in history[i:])])


def cut_fraction(base: Fraction, new: Fraction) -> Fraction:
    return Fraction(0) if base <= 0 else (base - new) / base


def check_bounds(
    baseline: Sequence[Administration],
    steps: Sequence[PlannedStep],
    bound: TaperBounds,
    equivalence: Mapping[str, Decimal],
    *,
    final_step_at_or_below_eq_mg: Decimal,
) -> list[Violation]:
    """Every rule a schedule breaks; empty when it is safe to schedule as planned."""
    violations: list[Violation] = []
    limit = Fraction(bound.max_fraction_per_step)
    start = diazepam_eq(baseline, equivalence)
    history: list[tuple[date, Fraction]] = []
    previous_eq = start
    previous_date: date | None = None
    for step in steps:
        if any(a.dose_mg < 0 for a in step.administrations):
            violations.append(Violation(step.number, "negative_dose"))
        if previous_date is not None and step.effective_on <= previous_date:
            violations.append(Violation(step.number, "dates_not_increasing"))
        eq = diazepam_eq(step.administrations, equivalence)
        base = window_baseline(history, start, step.effective_on, bound.window_days)
        cut = cut_fraction(base, eq)
        final_ok = (
            step.kind is StepKind.FINAL
            and eq == 0
            and previous_eq <= Fraction(final_step_at_or_below_eq_mg)
        )
        if cut > limit and not final_ok:
            violations.append(
                Violation(
                    step.number, "max_cut_in_window", Decimal(cut.numerator) / cut.denominator
                )
            )
        if step.kind is StepKind.FINAL and not final_ok:
            violations.append(Violation(step.number, "final_step_not_allowed"))
        history.append((step.effective_on, eq))
        previous_eq = eq
        previous_date = step.effective_on
    return violations
