"""A patient's scores on one instrument over time, with the dose steps and the patient's AMBER
and RED thresholds: what the trend views (JSON, SVG) show. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from services.monitoring.domain.rules import RuleSet


@dataclass(frozen=True)
class Point:
    at: datetime
    total: int
    band: str
    severity: str | None


@dataclass(frozen=True)
class Trend:
    instrument: str
    total_max: int
    points: tuple[Point, ...]
    dose_steps: tuple[date, ...]
    thresholds: tuple[tuple[str, int], ...]  # ("AMBER", 21), ("RED", 41)


def threshold_levels(
    ruleset: RuleSet, instrument: str, overrides: Mapping[str, int]
) -> tuple[tuple[str, int], ...]:
    """The instrument's AMBER and RED totals for a patient with these ``overrides``."""
    levels: list[tuple[str, int]] = []
    for band in ruleset.bands:
        if band.instrument != instrument:
            continue
        amber, red = ruleset.band_levels(band, overrides)
        for level, at in (("AMBER", amber), ("RED", red)):
            if at is not None:
                levels.append((level, at))
    return tuple(levels)
