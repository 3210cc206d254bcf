"""When to check in on a patient after a dose step. Pure: no I/O, no clock.

Clinical reference §3.5: assess after every reduction [S1]; a short-acting drug at 24-72 h, diazepam
across weeks 1-3 [S16]. The cadence is versioned data (``data/checkins.v1.json``) with its sources
and the values the reference does not give marked unconfirmed.

A check-in is due ``offset`` hours after the moment the step took effect and stays open
``window_hours``; a check-in with no report in that window is missed (an ``engagement`` signal,
found by the check-in timers). The moment is the patient's first dose on the step's date in their
time zone when the scheduler says so (``DoseReduced.effective_at``), else 00:00 UTC of the date
(events from before it did). With the patient's time zone the whole days of an offset are counted
on the patient's calendar (72 h is the same local time three days later, 71 or 73 hours when the
clocks change in between) so check-ins follow the patient's day; the rest are hours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class CheckInStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its due time
    DUE = "due"  # the patient was reminded; the window is open
    COMPLETED = "completed"  # a report of one of its instruments arrived inside the window
    MISSED = "missed"  # the window closed with no such report (an engagement signal)
    SUPERSEDED = "superseded"  # a later dose step took over before it fell due


class UnknownHalfLifeClass(ValueError):
    """The cadence has no check-ins for this half-life class (safe to show: a class code)."""

    def __init__(self, half_life_class: str) -> None:
        super().__init__(f"half_life_class: no check-in cadence for {half_life_class!r}")
        self.half_life_class = half_life_class


@dataclass(frozen=True)
class CheckInCadence:
    version: str
    source: str
    offsets_hours: Mapping[str, tuple[int, ...]]  # half-life class -> hours after the step
    window_hours: int
    instruments: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.window_hours <= 0:
            raise ValueError("window_hours must be positive")
        if not self.instruments:
            raise ValueError("a check-in needs at least one instrument")
        for klass, offsets in self.offsets_hours.items():
            if not offsets or list(offsets) != sorted(set(offsets)) or offsets[0] < 0:
                raise ValueError(f"offsets for {klass!r} must be distinct, ascending, >= 0")


class PlannedCheckIn(NamedTuple):
    """``(due_at, window_closes_at)``: the report window is ``[due_at, window_closes_at)``."""

    due_at: datetime
    window_closes_at: datetime


def plan_checkins(
    step_effective_on: date,
    half_life_class: str,
    cadence: CheckInCadence,
    *,
    starts_at: datetime | None = None,
    timezone: str | None = None,
) -> list[PlannedCheckIn]:
    """The check-ins after a step taking effect on ``step_effective_on`` (at ``starts_at`` when
    known, in the patient's ``timezone`` when known), earliest first.

    Raises ``UnknownHalfLifeClass`` (a ``ValueError``) for a class the cadence does not list.
    """
    offsets = cadence.offsets_hours.get(half_life_class)
    if offsets is None:
        raise UnknownHalfLifeClass(half_life_class)
    start = step_start(step_effective_on, starts_at)
    local = _local_zone(timezone)
    window = timedelta(hours=cadence.window_hours)
    planned = []
    for h in offsets:
        if local is None:
            due = start + timedelta(hours=h)
        else:  # aware arithmetic in a ZoneInfo is wall-clock: same local time, days later
            days, hours = divmod(h, 24)
            due = (start.astimezone(local) + timedelta(days=days, hours=hours)).astimezone(UTC)
        planned.append(PlannedCheckIn(due, due + window))
    return planned


def step_start(step_effective_on: date, starts_at: datetime | None) -> datetime:
    """When the step took effect: ``starts_at``, or 00:00 UTC of its date for older events."""
    return starts_at or datetime.combine(step_effective_on, time.min, tzinfo=UTC)


def _local_zone(name: str | None) -> ZoneInfo | None:
    """The patient's zone; None (count hours) when absent or not in this host's tz database:
    the check-ins still start at the right instant, only a clock change may shift them an hour."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _load(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def cadence_from(raw: Mapping[str, Any]) -> CheckInCadence:
    return CheckInCadence(
        version=str(raw["version"]),
        source=raw["source"],
        offsets_hours={
            klass: tuple(int(h) for h in hours)
            for klass, hours in raw["offsets_hours_by_half_life"].items()
        },
        window_hours=int(raw["window_hours"]),
        instruments=tuple(raw["instruments"]),
    )


@cache
def cadence_v1() -> CheckInCadence:
    return cadence_from(_load("checkins.v1.json"))
