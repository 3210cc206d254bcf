"""Planner survey (issue 13): plan thousands of awkward generated patients and count, with the
independent oracle in tests/support/planning_oracle.py, the figures the clinician's
review quotes. Deterministic for a given --seed.

    python -m bench.planner_survey --patients 12800 [--seed 13] [--output FILE|-]
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench.report import INTERPRETATION, PLACEHOLDER, git_state, write_results
from services.scheduler.domain.planning import (
    PacePreference,
    PlanningError,
    RiskCategory,
)
from tests.support.planning_oracle import (
    awkward_patient,
    check,
    needless,
    plan_confirming,
    reference_range_weeks,
)

YEAR_DAYS = 365.25


def survey(patients: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    refused = confirmed = 0
    rules: Counter[str] = Counter()
    refused_by: Counter[str] = Counter()  # by the input the planner names (never a value)
    high = high_above = 0
    lengths: list[float] = []
    over5_not_slower = over5 = complete = maintenance_above = needless_pace = needless_bound = (
        outside
    ) = 0
    for _ in range(patients):
        inp, strategy = awkward_patient(rng)
        try:
            inp, p, was_confirmed = plan_confirming(inp, strategy)
        except PlanningError as exc:
            refused += 1
            refused_by[f"{exc.field}: {exc.problem}"] += 1
            continue
        confirmed += was_confirmed
        v = check(inp, p)
        rules.update(v.rules)
        if p.risk.category is RiskCategory.HIGH:
            high += 1
            high_above += v.window_above_pace
        needless_pace += "needless_formulation_need" in v.rules
        needless_bound += needless(inp, p, within_pace=False)
        if p.complete:
            complete += 1
            years = v.expected_days / YEAR_DAYS
            lengths.append(years)
            over5 += years > 5
            over5_not_slower += years > 5 and inp.pace is not PacePreference.SLOWER
            maintenance_above += "complete_not_at_target" in v.rules
            lo, hi = reference_range_weeks(inp.duration_weeks)
            weeks = v.expected_days / 7
            outside += weeks < lo or (hi is not None and weeks > hi)
    deciles = statistics.quantiles(lengths, n=10) if len(lengths) > 1 else [0.0] * 9
    return {
        "patients": patients,
        "planned only with a recorded clinician confirmation (dose above the drug's maximum, "
        "equivalence outside the published range)": confirmed,
        "refused (PlanningError)": refused,
        "refused, by field and reason": ", ".join(f"{k} {n}" for k, n in refused_by.most_common())
        or "none",
        "high-risk plans with a 14-day window above their pace": f"{high_above} of {high}"
        + (f" ({100 * high_above / high:.0f}%)" if high else ""),
        "complete plans": complete,
        "median plan length (years, complete plans)": f"{statistics.median(lengths):.2f}"
        if lengths
        else "-",
        "p90 plan length (years, complete plans)": f"{deciles[8]:.2f}",
        "complete plans over 5 years": over5,
        "... of which the patient did not ask for a slower pace": over5_not_slower,
        "complete plans outside the §2.4 range for their duration of use": outside,
        "complete plans not at their (makeable) maintenance target": maintenance_above,
        "needless formulation needs (a makeable cut within the 25%/14-day bound exists)": (
            needless_bound
        ),
        "needless formulation needs (a makeable cut within the pace exists)": needless_pace,
        "oracle rule counts": dict(sorted(rules.items())),
    }


def render(figures: dict[str, object], seed: int) -> str:
    lines = [
        "# Planner survey (issue 13)",
        "",
        f"Measured: {git_state()}; seed {seed}; generator and oracle: "
        "tests/support/planning_oracle.py.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for k, v in figures.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {b}" for a, b in v.items()) or "none"
        lines.append(f"| {k} | {v} |")
    return "\n".join([*lines, "", INTERPRETATION, "", PLACEHOLDER, ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--patients", type=int, default=12800)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--output", type=Path, default=None, help="results file, or - for none")
    args = p.parse_args(argv)
    started = datetime.now(UTC)
    figures = survey(args.patients, args.seed)
    write_results(render(figures, args.seed), args.output, "planner-survey", started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
