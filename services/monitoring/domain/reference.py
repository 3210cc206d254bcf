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


def _load(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def ciwa_b_v1() -> CiwaBDefinition:
    """CIWA-B v1 in its original shape, read from its instrument-catalogue data file."""
    raw = _load("ciwa_b.v1.json")
    observed = tuple(raw["observed_items"])
    ranges = {(item["min"], item["max"]) for item in raw["items"]}
    if len(ranges) != 1:
        raise ValueError("ciwa_b.v1.json: every CIWA-B item must share one range")
    ((item_min, item_max),) = ranges
    return CiwaBDefinition(
        version=raw["version"],
        source=raw["source"],
        item_min=item_min,
        item_max=item_max,
        patient_items=tuple(i["code"] for i in raw["items"] if i["code"] not in observed),
        clinician_items=observed,
        bands=tuple(Band(b["band"], b["min"], b["max"]) for b in raw["bands"]),
    )
