"""Versioned clinical reference data (instrument definitions, rule thresholds) with sources.

The numbers live in ``data/*.json`` beside this module, never in code: a clinical team changes a
threshold by shipping a new data version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Band:
    name: str
    low: int
    high: int


@dataclass(frozen=True)
class CiwaBDefinition:
    version: str
    source: str
    item_min: int
    item_max: int
    patient_items: tuple[str, ...]
    clinician_items: tuple[str, ...]
    bands: tuple[Band, ...]

    def band_for(self, total: int) -> str:
        for band in self.bands:
            if band.low <= total <= band.high:
                return band.name
        raise ValueError(f"total {total} outside every band")


@dataclass(frozen=True)
class RuleSet:
    version: str
    source: str
    ciwa_b_red_at: int
    ciwa_b_amber_at: int
    red_flags: frozenset[str]


def _load(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def ciwa_b_v1() -> CiwaBDefinition:
    raw = _load("ciwa_b.v1.json")
    return CiwaBDefinition(
        version=raw["version"],
        source=raw["source"],
        item_min=raw["item_min"],
        item_max=raw["item_max"],
        patient_items=tuple(raw["patient_items"]),
        clinician_items=tuple(raw["clinician_items"]),
        bands=tuple(Band(b["band"], b["min"], b["max"]) for b in raw["bands"]),
    )


@cache
def rules_v1() -> RuleSet:
    raw = _load("rules.v1.json")
    return RuleSet(
        version=raw["version"],
        source=raw["source"],
        ciwa_b_red_at=raw["ciwa_b"]["red_at_or_above"],
        ciwa_b_amber_at=raw["ciwa_b"]["amber_at_or_above"],
        red_flags=frozenset(raw["red_flags"]),
    )
