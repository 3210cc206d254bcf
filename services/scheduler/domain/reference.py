"""Versioned taper-rule reference data, with its source.

The numbers live in ``data/*.json`` beside this module, never in code: the clinical team changes a
bound by shipping a new data version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class TaperBounds:
    """How fast a taper may go without a clinician override.

    A reduction, together with every other step taking effect within ``window_days`` before it,
    may cut at most ``max_fraction_per_step`` of the dose in effect at the start of that window.
    """

    version: str
    source: str
    max_fraction_per_step: Decimal
    window_days: int

    def __post_init__(self) -> None:
        if not Decimal(0) < self.max_fraction_per_step < Decimal(1):
            raise ValueError("max_fraction_per_step must be between 0 and 1")
        if self.window_days < 1:
            raise ValueError("window_days must be at least 1")


def _load(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def taper_bounds_v1() -> TaperBounds:
    raw = _load("taper_bounds.v1.json")
    return TaperBounds(
        version=raw["version"],
        source=raw["source"],
        max_fraction_per_step=Decimal(raw["max_fraction_per_step"]),
        window_days=int(raw["window_days"]),
    )
