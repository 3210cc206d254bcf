"""The matching configuration: stages, stage groups, the session window and grid, cohort sizes and
the weights of the objective, read from the versioned ``data/matching.v1.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

MINUTES_PER_DAY = 1440

PRE_TAPER = "pre_taper"
CROSSOVER = "crossover"
ACTIVE = "active"
FINAL_PHASE = "final_phase"
HELD = "held"
POST_TAPER_EARLY = "post_taper_early"  # completed under 6 months ago
POST_TAPER_LATE = "post_taper_late"  # completed 6 months ago or more
MATCHING_STAGES = (
    PRE_TAPER,
    CROSSOVER,
    ACTIVE,
    FINAL_PHASE,
    HELD,
    POST_TAPER_EARLY,
    POST_TAPER_LATE,
)


class InvalidMatchingInput(ValueError):
    """Inputs matching cannot use; the message names the input, never a patient's value."""


class InfeasibleResult(ValueError):
    """A result that breaks a hard constraint (raised by ``check_result``/``total_score``)."""


@dataclass(frozen=True)
class Weights:
    placement: float
    existing_cohort: float
    same_drug: float
    same_diazepam_status: float
    session_time: float
    waiting: float

    def __post_init__(self) -> None:
        values = (
            self.placement,
            self.existing_cohort,
            self.same_drug,
            self.same_diazepam_status,
            self.session_time,
            self.waiting,
        )
        if any(v < 0 for v in values):
            raise ValueError("weights must not be negative")
        # Placement must pay for itself, else "place as many as possible" stops being the
        # first priority and a patient could be left waiting to make others' group nicer.
        if self.placement <= 0:
            raise ValueError("placement weight must be positive")


@dataclass(frozen=True)
class MatchingConfig:
    version: str
    source: str
    min_size: int
    max_size: int
    stage_groups: Mapping[str, str]  # matching stage -> stage group
    window_start_minute: int  # local, minutes after midnight
    window_end_minute: int  # local; the session must end by then
    session_minutes: int
    grid_minutes: int  # new cohorts start on multiples of this (UTC)
    weights: Weights
    waiting_full_after_days: float
    post_taper_stages: frozenset[str] = field(
        default=frozenset({POST_TAPER_EARLY, POST_TAPER_LATE})
    )

    def __post_init__(self) -> None:
        if not 1 <= self.min_size <= self.max_size:
            raise ValueError("cohort sizes need 1 <= min_size <= max_size")
        if not 0 <= self.window_start_minute < self.window_end_minute <= MINUTES_PER_DAY:
            # A window across midnight is not supported: nobody asked for night sessions.
            raise ValueError("the local window must lie within one day")
        if not 0 < self.session_minutes <= self.window_end_minute - self.window_start_minute:
            raise ValueError("the session must fit in the local window")
        if self.grid_minutes <= 0 or MINUTES_PER_DAY % self.grid_minutes:
            raise ValueError("grid_minutes must divide a day")
        if self.waiting_full_after_days <= 0:
            raise ValueError("waiting_full_after_days must be positive")
        unknown = set(self.stage_groups) - set(MATCHING_STAGES)
        if unknown or set(MATCHING_STAGES) - set(self.stage_groups):
            raise ValueError("stage_groups must map every matching stage, and only those")
        members: dict[str, set[str]] = {}
        for stage, group in self.stage_groups.items():
            members.setdefault(group, set()).add(stage)
        for stages in members.values():
            post = stages & self.post_taper_stages
            if post and post != stages:
                raise ValueError("a stage group must not mix tapering and post-taper stages")

    @property
    def earliest_start(self) -> int:
        """Earliest local start minute."""
        return self.window_start_minute

    @property
    def latest_start(self) -> int:
        """Latest local start minute (the session still ends inside the window)."""
        return self.window_end_minute - self.session_minutes

    def session_grid(self) -> range:
        """The UTC start minutes a new cohort may take."""
        return range(0, MINUTES_PER_DAY, self.grid_minutes)

    def stage_group(self, stage: str) -> str:
        try:
            return self.stage_groups[stage]
        except KeyError:
            raise InvalidMatchingInput("stage is not a matching stage") from None


def _hhmm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def config_from_dict(raw: Mapping[str, Any]) -> MatchingConfig:
    """A config from the JSON layout of ``data/matching.v1.json`` (keys starting "_" are notes)."""
    groups = {
        stage: group
        for group, stages in raw["stage_groups"].items()
        if not group.startswith("_")
        for stage in stages
    }
    w = raw["weights"]
    session = raw["session"]
    return MatchingConfig(
        version=raw["version"],
        source=raw["source"],
        min_size=int(raw["cohort_size"]["min"]),
        max_size=int(raw["cohort_size"]["max"]),
        stage_groups=groups,
        post_taper_stages=frozenset(raw["post_taper_stages"]),
        window_start_minute=_hhmm(session["local_window_start"]),
        window_end_minute=_hhmm(session["local_window_end"]),
        session_minutes=int(session["duration_minutes"]),
        grid_minutes=int(session["grid_minutes"]),
        weights=Weights(
            placement=float(w["placement"]),
            existing_cohort=float(w["existing_cohort"]),
            same_drug=float(w["same_drug"]),
            same_diazepam_status=float(w["same_diazepam_status"]),
            session_time=float(w["session_time"]),
            waiting=float(w["waiting"]),
        ),
        waiting_full_after_days=float(raw["waiting_full_after_days"]),
    )


@cache
def matching_v1() -> MatchingConfig:
    data = resources.files("services.group_matching.domain").joinpath("data", "matching.v1.json")
    return config_from_dict(json.loads(data.read_text("utf-8")))
