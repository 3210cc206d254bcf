"""Versioned cohort-stage reference data, with its source (numbers live in ``data/*.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class StageRules:
    version: str
    source: str
    final_phase_below_fraction: Decimal

    def __post_init__(self) -> None:
        if not Decimal(0) < self.final_phase_below_fraction < Decimal(1):
            raise ValueError("final_phase_below_fraction must be between 0 and 1")


@cache
def stages_v1() -> StageRules:
    text = resources.files(__package__).joinpath("data", "stages.v1.json").read_text("utf-8")
    raw = json.loads(text)
    return StageRules(
        version=raw["version"],
        source=raw["source"],
        final_phase_below_fraction=Decimal(raw["final_phase_below_fraction_of_start"]),
    )
