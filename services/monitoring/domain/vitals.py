"""Plausible ranges for reported vital signs (``data/vitals.v1.json``). Pure.

A value outside its range cannot be a living patient's reading (a typing error), so the domain
refuses it; every value inside is left to the escalation rules. The ranges are data, marked ⚠.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from services.monitoring.domain.model import InvalidReport
from services.monitoring.domain.reference import _load


@dataclass(frozen=True)
class Range:
    field: str
    low: int
    high: int

    def check(self, value: object) -> int:
        """``value`` when it is an integer inside the range; else ``InvalidReport`` naming the
        field (never the value). ``bool`` is not an integer here."""
        if type(value) is not int or not self.low <= value <= self.high:
            raise InvalidReport(self.field, f"must be an integer {self.low}..{self.high}")
        return value


@cache
def pulse_bpm() -> Range:
    raw = _load("vitals.v1.json")["pulse_bpm"]
    low, high = raw["min"], raw["max"]
    if type(low) is not int or type(high) is not int or not 0 < low < high:
        raise ValueError("vitals.v1.json: pulse_bpm needs integers 0 < min < max")
    return Range("pulse_bpm", low, high)
