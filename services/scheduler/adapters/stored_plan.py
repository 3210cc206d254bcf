"""A stored plan (a ``plans`` row and its ``plan_steps`` rows) back as the planner's ``TaperPlan``.

Why: a stored plan renders through the same adapters as a preview (``fhir.plan_to_fhir``,
``chart.plan_to_svg``), which take the pure ``TaperPlan`` value. Rebuilding that value from the
rows, instead of teaching each renderer the row layout, keeps one rendering path: a stored plan
and the preview it came from give the same FHIR resources and the same chart.

The rows hold what ``adapters.plan_repository`` wrote: the row's ``strategy`` and
``reference_versions``, its JSON ``summary`` (``summary_json`` below, the one place that writes it:
drug, final drug, risk, pace, bound, baseline, formulation needs, ``ends_at_mg``, equivalence,
notes; decimals as strings) and one row per step. The summary is read back here too: whole
(``stored_plan``) or the parts the taper's rules need (``summary_bounds``,
``summary_equivalence``).
Numeric columns come back as ``Decimal`` or ``float`` depending on the database (PostgreSQL or
SQLite), so every decimal goes through ``Decimal(str(x))``.

A ``cancelled`` step is left out: a clinician's adjustment cancels the remaining steps and adds
new ones with higher stored numbers. The others are numbered 1..n in stored order, as the plan's
JSON shows its schedule in force (``domain.plan_view.schedule``).

Pure: no database, no I/O; a malformed row raises ``KeyError``/``ValueError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from services.scheduler.domain.plan_view import schedule
from services.scheduler.domain.planning import (
    Administration,
    FormulationNeed,
    NeedKind,
    Pace,
    PlannedStep,
    RiskAssessment,
    RiskCategory,
    StepKind,
    Strategy,
    TaperPlan,
)
from services.scheduler.domain.reference import TaperBounds


def _dec(value: Any) -> Decimal:
    """A JSON string, a ``Decimal`` (PostgreSQL) or a ``float`` (SQLite) as an exact Decimal."""
    return Decimal(str(value))


def _date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _administrations(raw: Sequence[Mapping[str, Any]]) -> tuple[Administration, ...]:
    return tuple(Administration(drug=a["drug"], dose_mg=_dec(a["dose_mg"])) for a in raw)


def _step(number: int, row: Mapping[str, Any]) -> PlannedStep:
    return PlannedStep(
        number=number,
        effective_on=_date(row["effective_on"]),
        kind=StepKind(row["kind"]),
        administrations=_administrations(row["administrations"]),
        diazepam_eq_mg=_dec(row["diazepam_eq_mg"]),
        hold_weeks=int(row["hold_weeks"]),
    )


def _need(raw: Mapping[str, Any]) -> FormulationNeed:
    return FormulationNeed(
        kind=NeedKind(raw["kind"]),
        drug=raw["drug"],
        at_dose_mg=_dec(raw["at_dose_mg"]),
        needed_unit_mg=_dec(raw["needed_unit_mg"]),
        reason_code=raw["reason_code"],
        after_step=int(raw["after_step"]),
    )


def record_to_plan(row: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> TaperPlan:
    """The ``TaperPlan`` a stored plan row and its step rows were written from, without the
    cancelled steps."""
    summary: Mapping[str, Any] = row["summary"]
    risk, pace, bound = summary["risk"], summary["pace"], summary["bound"]
    kept, _ = schedule(steps)
    return TaperPlan(
        drug=summary["drug"],
        final_drug=summary["final_drug"],
        strategy=Strategy(row["strategy"]),
        risk=RiskAssessment(
            category=RiskCategory(risk["category"]),
            reasons=tuple(risk["reasons"]),
            short_use=bool(risk["short_use"]),
        ),
        pace=Pace(
            code=pace["code"],
            step_fraction=_dec(pace["step_fraction"]),
            interval_weeks=int(pace["interval_weeks"]),
        ),
        bound=TaperBounds(
            version=bound["version"],
            source=bound["source"],
            max_fraction_per_step=_dec(bound["max_fraction_per_window"]),
            window_days=int(bound["window_days"]),
        ),
        baseline=_administrations(summary["baseline"]),
        steps=tuple(_step(n, s) for n, s in kept),
        formulation_needs=tuple(_need(n) for n in summary["formulation_needs"]),
        ends_at=_dec(summary["ends_at_mg"]),
        equivalence=tuple((d, _dec(mg)) for d, mg in summary["equivalence"].items()),
        notes=tuple(summary["notes"]),
        reference_versions=tuple((k, str(v)) for k, v in row["reference_versions"].items()),
    )


def summary_json(p: TaperPlan) -> dict[str, Any]:
    """The plan's summary as stored in ``plans.summary`` (decimals as strings)."""
    return {
        "drug": p.drug,
        "final_drug": p.final_drug,
        "complete": p.complete,
        "risk": {
            "category": p.risk.category.value,
            "reasons": list(p.risk.reasons),
            "short_use": p.risk.short_use,
        },
        "pace": {
            "code": p.pace.code,
            "step_fraction": str(p.pace.step_fraction),
            "interval_weeks": p.pace.interval_weeks,
        },
        "bound": {
            "version": p.bound.version,
            "source": p.bound.source,
            "max_fraction_per_window": str(p.bound.max_fraction_per_step),
            "window_days": p.bound.window_days,
        },
        "baseline": [{"drug": a.drug, "dose_mg": str(a.dose_mg)} for a in p.baseline],
        "formulation_needs": [
            {
                "kind": n.kind.value,
                "drug": n.drug,
                "at_dose_mg": str(n.at_dose_mg),
                "needed_unit_mg": str(n.needed_unit_mg),
                "reason_code": n.reason_code,
                "after_step": n.after_step,
            }
            for n in p.formulation_needs
        ],
        "ends_at_mg": str(p.ends_at),
        "equivalence": {d: str(mg) for d, mg in p.equivalence},
        "notes": list(p.notes),
    }


def summary_bounds(summary: Mapping[str, Any]) -> TaperBounds:
    """The rate bound the plan was made with (the taper's rules check its steps against it)."""
    b = summary["bound"]
    return TaperBounds(
        version=b["version"],
        source=b["source"],
        max_fraction_per_step=Decimal(b["max_fraction_per_window"]),
        window_days=int(b["window_days"]),
    )


def summary_equivalence(summary: Mapping[str, Any]) -> dict[str, Decimal]:
    """mg equal to 10 mg diazepam per drug, as the plan used."""
    return {d: Decimal(mg) for d, mg in summary["equivalence"].items()}


def summary_interval_weeks(summary: Mapping[str, Any]) -> int:
    """Weeks between the plan's steps at its pace."""
    return int(summary["pace"]["interval_weeks"])
