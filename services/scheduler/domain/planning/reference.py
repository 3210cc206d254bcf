"""Versioned planning data (equivalence, formulations, pace defaults), loaded with its source.

The numbers live in ``services/scheduler/domain/data/*.json``, never in code. Values the clinical
reference marks unconfirmed carry an ``unconfirmed`` note in the data itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from services.scheduler.domain.reference import TaperBounds, taper_bounds_v1


class RiskCategory(StrEnum):
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RISK_RANK[self]


_RISK_RANK = {RiskCategory.LOW: 0, RiskCategory.MODERATE: 1, RiskCategory.HIGH: 2}


@dataclass(frozen=True)
class DrugEquivalence:
    drug: str
    columns: tuple[tuple[str, Decimal | None], ...]  # column -> mg equal to 10 mg diazepam
    half_life_class: str
    max_daily_mg: Decimal | None = None  # a plausible maximum (label, ⚠): above it, confirm
    published_range_mg: tuple[Decimal, Decimal] | None = None  # §1.1, all columns

    def mg_per_10mg_diazepam(self, column: str) -> Decimal | None:
        return dict(self.columns).get(column)


@dataclass(frozen=True)
class EquivalenceTable:
    version: str
    source: str
    default_column: str
    drugs: tuple[DrugEquivalence, ...]
    override_range_widening_factor: Decimal = Decimal(1)

    def override_range(self, drug: str) -> tuple[Decimal, Decimal] | None:
        """The per-patient override range: the published range widened by the data's factor."""
        row = self.get(drug)
        if row is None or row.published_range_mg is None:
            return None
        low, high = row.published_range_mg
        factor = self.override_range_widening_factor
        return low / factor, high * factor

    def get(self, drug: str) -> DrugEquivalence | None:
        return next((d for d in self.drugs if d.drug == drug), None)

    @property
    def drug_codes(self) -> tuple[str, ...]:
        return tuple(d.drug for d in self.drugs)


@dataclass(frozen=True)
class Formulation:
    """A product: a tablet/capsule (``strength_mg``, ``scored``) or a liquid (``unit_mg``)."""

    code: str
    drug: str
    kind: str  # "tablet" | "liquid"
    strength_mg: Decimal | None = None
    scored: bool = False
    concentration_mg_per_ml: Decimal | None = None
    increment_ml: Decimal | None = None

    @property
    def units_mg(self) -> tuple[Decimal, ...]:
        """The amounts one piece of this product gives; any sum of them can be made."""
        if self.kind == "liquid":
            assert self.concentration_mg_per_ml is not None and self.increment_ml is not None
            return (self.concentration_mg_per_ml * self.increment_ml,)
        assert self.strength_mg is not None
        if self.scored:
            return (self.strength_mg, self.strength_mg / 2)
        return (self.strength_mg,)


@dataclass(frozen=True)
class FormulationCatalogue:
    version: str
    source: str
    formulations: tuple[Formulation, ...]
    tapering_strip_drugs: frozenset[str]

    def get(self, code: str) -> Formulation | None:
        return next((f for f in self.formulations if f.code == code), None)

    def for_drug(self, drug: str) -> tuple[Formulation, ...]:
        return tuple(f for f in self.formulations if f.drug == drug)


@dataclass(frozen=True)
class Pace:
    code: str
    step_fraction: Decimal
    interval_weeks: int


@dataclass(frozen=True)
class RiskCombination:
    """Features that together lift the category: all of ``all_of`` present, or at least
    ``at_least_moderate`` moderate features (issue 13 item 12b; sources in the data)."""

    code: str
    category: RiskCategory
    all_of: tuple[str, ...] = ()
    at_least_moderate: int | None = None


@dataclass(frozen=True)
class PlanningDefaults:
    version: str
    source: str
    paces: tuple[Pace, ...]  # fastest first
    pace_by_risk: tuple[tuple[RiskCategory, str], ...]
    risk_features: tuple[tuple[str, RiskCategory], ...]
    high_dose_above_eq_mg: Decimal
    moderate_dose_above_eq_mg: Decimal
    older_age_from_years: int
    long_use_above_weeks: int
    short_use_below_weeks: int
    minimum_step_eq_mg: Decimal
    final_step_at_or_below_eq_mg: Decimal
    crossover_stage_days: int
    crossover_max_rounding_up_fraction: Decimal
    risk_combinations: tuple[RiskCombination, ...] = ()
    crossover_max_rounding_down_fraction: Decimal = Decimal(0)
    crossover_diazepam_ceiling_mg: Decimal | None = None
    crossover_older_or_frail_ceiling_factor: Decimal = Decimal(1)

    def crossover_ceiling_mg(self, age: int, frail: bool) -> Decimal | None:
        """The most diazepam a crossover may end on for this patient (None: no ceiling)."""
        ceiling = self.crossover_diazepam_ceiling_mg
        if ceiling is None:
            return None
        if frail or age >= self.older_age_from_years:
            return ceiling * self.crossover_older_or_frail_ceiling_factor
        return ceiling

    def pace(self, code: str) -> Pace:
        return next(p for p in self.paces if p.code == code)

    def pace_for(self, risk: RiskCategory) -> Pace:
        return self.pace(dict(self.pace_by_risk)[risk])


@dataclass(frozen=True)
class PlanningReference:
    equivalence: EquivalenceTable
    formulations: FormulationCatalogue
    defaults: PlanningDefaults
    bounds: TaperBounds

    @property
    def versions(self) -> tuple[tuple[str, str], ...]:
        return (
            ("equivalence", self.equivalence.version),
            ("formulations", self.formulations.version),
            ("planning_defaults", self.defaults.version),
            ("taper_bounds", self.bounds.version),
        )


def _load(name: str) -> dict[str, Any]:
    base = resources.files("services.scheduler.domain")
    data: dict[str, Any] = json.loads(base.joinpath("data", name).read_text(encoding="utf-8"))
    return data


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@cache
def equivalence_v1() -> EquivalenceTable:
    raw = _load("equivalence.v1.json")
    columns = tuple(raw["columns"])
    return EquivalenceTable(
        version=raw["version"],
        source=raw["source"],
        default_column=raw["default_column"],
        drugs=tuple(
            DrugEquivalence(
                drug=drug,
                columns=tuple((c, _dec(row[c])) for c in columns),
                half_life_class=row["half_life_class"],
                max_daily_mg=_dec(row.get("max_daily_mg")),
                published_range_mg=_range(row.get("published_range_mg")),
            )
            for drug, row in raw["drugs"].items()
        ),
        override_range_widening_factor=Decimal(raw.get("override_range_widening_factor", "1")),
    )


def _range(value: list[str] | None) -> tuple[Decimal, Decimal] | None:
    if value is None:
        return None
    low, high = (Decimal(v) for v in value)
    return low, high


@cache
def formulations_v1() -> FormulationCatalogue:
    raw = _load("formulations.v1.json")
    return FormulationCatalogue(
        version=raw["version"],
        source=raw["source"],
        formulations=tuple(
            Formulation(
                code=f["code"],
                drug=f["drug"],
                kind=f["kind"],
                strength_mg=_dec(f.get("strength_mg")),
                scored=bool(f.get("scored", False)),
                concentration_mg_per_ml=_dec(f.get("concentration_mg_per_ml")),
                increment_ml=_dec(f.get("increment_ml")),
            )
            for f in raw["formulations"]
        ),
        tapering_strip_drugs=frozenset(raw["tapering_strip_drugs"]),
    )


@cache
def planning_defaults_v1() -> PlanningDefaults:
    raw = _load("planning_defaults.v1.json")
    thresholds = raw["thresholds"]
    return PlanningDefaults(
        version=raw["version"],
        source=raw["source"],
        paces=tuple(
            Pace(
                code=code,
                step_fraction=Decimal(raw["paces"][code]["step_percent"]) / 100,
                interval_weeks=int(raw["paces"][code]["interval_weeks"]),
            )
            for code in raw["pace_order_fastest_first"]
        ),
        pace_by_risk=tuple((RiskCategory(k), v) for k, v in raw["pace_by_risk"].items()),
        risk_features=tuple((k, RiskCategory(v)) for k, v in raw["risk_features"].items()),
        high_dose_above_eq_mg=Decimal(thresholds["high_dose_above_diazepam_eq_mg"]),
        moderate_dose_above_eq_mg=Decimal(thresholds["moderate_dose_above_diazepam_eq_mg"]),
        older_age_from_years=int(thresholds["older_age_from_years"]),
        long_use_above_weeks=int(thresholds["long_use_above_weeks"]),
        short_use_below_weeks=int(thresholds["short_use_below_weeks"]),
        minimum_step_eq_mg=Decimal(raw["minimum_step_diazepam_eq_mg"]),
        final_step_at_or_below_eq_mg=Decimal(raw["final_step_at_or_below_diazepam_eq_mg"]),
        crossover_stage_days=int(raw["crossover"]["stage_days"]),
        crossover_max_rounding_up_fraction=Decimal(raw["crossover"]["max_rounding_up_fraction"]),
        risk_combinations=tuple(
            RiskCombination(
                code=c["code"],
                category=RiskCategory(c["category"]),
                all_of=tuple(c.get("all_of", ())),
                at_least_moderate=c.get("at_least_moderate"),
            )
            for c in raw.get("risk_combinations", ())
        ),
        crossover_max_rounding_down_fraction=Decimal(
            raw["crossover"].get("max_rounding_down_fraction", "0")
        ),
        crossover_diazepam_ceiling_mg=_dec(raw["crossover"].get("diazepam_ceiling_mg_per_day")),
        crossover_older_or_frail_ceiling_factor=Decimal(
            raw["crossover"].get("older_or_frail_ceiling_factor", "1")
        ),
    )


@cache
def planning_reference_v1() -> PlanningReference:
    return PlanningReference(
        equivalence=equivalence_v1(),
        formulations=formulations_v1(),
        defaults=planning_defaults_v1(),
        bounds=taper_bounds_v1(),
    )


def final_step_threshold_mg(
    drug: str, mg_per_10mg_diazepam: Decimal | None = None
) -> Decimal | None:
    """The final-step dose (planning defaults, diazepam-eq) in mg of ``drug``; None if unknown.

    A step to zero from at or below it is exempt from the rate bound (``model.PatientTaper``)."""
    if mg_per_10mg_diazepam is None:
        table = equivalence_v1()
        known = table.get(drug)
        if known is None:
            return None
        mg_per_10mg_diazepam = known.mg_per_10mg_diazepam(table.default_column)
        if mg_per_10mg_diazepam is None:
            return None
    return planning_defaults_v1().final_step_at_or_below_eq_mg * mg_per_10mg_diazepam / 10
