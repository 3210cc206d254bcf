"""The taper stage the scheduler announces in its events (``contracts.TaperStage``). Pure.

The taper's own ``Stage`` says where it is in its lifecycle (pre-taper, crossover, active, held,
maintenance, completed). Peer groups also need the final phase (clinical reference §5: "below
about 10% of start" ⚠, data in ``data/taper_stages.v1.json``): an active taper whose day is below
that fraction of the day it started from, compared in diazepam-equivalents so that a crossover
does not count as a fall. Only the events carry it; the stored stage stays ``active``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import cache
from importlib import resources

from services.scheduler.domain.model import PatientTaper, Stage

FINAL_PHASE = "final_phase"


@dataclass(frozen=True)
class StageRules:
    version: str
    source: str
    final_phase_below_fraction: Decimal

    def __post_init__(self) -> None:
        if not Decimal(0) < self.final_phase_below_fraction < Decimal(1):
            raise ValueError("final_phase_below_fraction must be between 0 and 1")


@cache
def taper_stages_v1() -> StageRules:
    text = resources.files(__package__).joinpath("data", "taper_stages.v1.json").read_text("utf-8")
    raw = json.loads(text)
    return StageRules(
        version=raw["version"],
        source=raw["source"],
        final_phase_below_fraction=Decimal(raw["final_phase_below_fraction_of_start"]),
    )


def announced_stage(taper: PatientTaper, rules: StageRules | None = None) -> str:
    """The stage value to announce: the taper's stage, or ``final_phase`` for an active taper
    below the configured fraction of its starting day (the day before its first step)."""
    if taper.stage is not Stage.ACTIVE or not taper.steps:
        return taper.stage.value
    rules = rules or taper_stages_v1()
    start = taper.diazepam_eq(taper.steps[0].regimen_before)
    now = taper.diazepam_eq(taper.current_regimen)
    if start > 0 and now < start * Fraction(rules.final_phase_below_fraction):
        return FINAL_PHASE
    return taper.stage.value
