"""The hard constraints: inputs matching can use (``validate_inputs``) and results that keep every
rule (``check_result``/``total_score``, how the heuristic and the exact solver are compared)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.group_matching.domain.matching.config import (
    MINUTES_PER_DAY,
    InfeasibleResult,
    InvalidMatchingInput,
    MatchingConfig,
)
from services.group_matching.domain.matching.inputs import (
    Candidate,
    CohortLike,
    MatchResult,
    NewCohort,
    OpenCohort,
    Placement,
)
from services.group_matching.domain.matching.scoring import score_pair


def validate_inputs(
    cands: Sequence[Candidate], opens: Sequence[OpenCohort], config: MatchingConfig
) -> None:
    """Raise ``InvalidMatchingInput`` for inputs matching cannot use."""
    if len({c.patient_id for c in cands}) != len(cands):
        raise InvalidMatchingInput("a patient appears twice among the candidates")
    if len({o.cohort_id for o in opens}) != len(opens):
        raise InvalidMatchingInput("a cohort appears twice among the open cohorts")
    for c in cands:
        config.stage_group(c.stage)
        if not -MINUTES_PER_DAY < c.utc_offset_minutes < MINUTES_PER_DAY:
            raise InvalidMatchingInput("utc_offset_minutes is out of range")
        if c.waiting_since.tzinfo is None:
            raise InvalidMatchingInput("waiting_since must be timezone-aware")
    groups = set(config.stage_groups.values())
    for o in opens:
        if o.stage_group not in groups:
            raise InvalidMatchingInput("an open cohort has an unknown stage group")
        if not 0 <= o.session_utc_minute < MINUTES_PER_DAY:
            raise InvalidMatchingInput("session_utc_minute is out of range")
        if o.size < 0 or o.capacity < 0:
            raise InvalidMatchingInput("cohort size and capacity must not be negative")


def check_result(
    result: MatchResult,
    candidates: Sequence[Candidate],
    open_cohorts: Sequence[OpenCohort],
    config: MatchingConfig,
    now: datetime,
) -> None:
    """Raise ``InfeasibleResult`` unless every hard constraint holds and everyone is accounted
    for (placed once, or waiting)."""
    total_score(result, candidates, open_cohorts, config, now)


def total_score(
    result: MatchResult,
    candidates: Sequence[Candidate],
    open_cohorts: Sequence[OpenCohort],
    config: MatchingConfig,
    now: datetime,
) -> float:
    """The objective recomputed from a result (placements summed in id order), after checking
    every hard constraint; how the heuristic and the exact solver are compared."""
    new = {n.key: n for n in result.new_cohorts}
    if len(new) != len(result.new_cohorts):
        raise InfeasibleResult("two new cohorts share a key")
    tally = _Tally(
        by_id={c.patient_id: c for c in candidates},
        existing={o.cohort_id: o for o in open_cohorts},
        new=new,
        members={k: [] for k in new},
    )
    for placement in result.placements:
        tally.add(placement, config, now)
    _check_existing_rooms(tally)
    _check_new_cohorts(tally, config)
    _check_everyone_accounted_for(result, tally)
    return sum(s for _, s in sorted(tally.points, key=lambda item: item[0].int))


@dataclass
class _Tally:
    """The placements of a result read so far, each checked against its cohort."""

    by_id: dict[uuid.UUID, Candidate]
    existing: dict[uuid.UUID, OpenCohort]
    new: dict[str, NewCohort]
    members: dict[str, list[uuid.UUID]]  # new cohort key -> the patients placed in it
    seen: set[uuid.UUID] = field(default_factory=set)
    joined: dict[uuid.UUID, int] = field(default_factory=dict)  # existing cohort -> newcomers
    points: list[tuple[uuid.UUID, float]] = field(default_factory=list)

    def add(self, placement: Placement, config: MatchingConfig, now: datetime) -> None:
        pid = placement.patient_id
        if pid not in self.by_id:
            raise InfeasibleResult("a placement names an unknown patient")
        if pid in self.seen:
            raise InfeasibleResult("a patient is placed twice")
        self.seen.add(pid)
        s = score_pair(self.by_id[pid], self._cohort_of(placement), config, now)
        if s is None:
            raise InfeasibleResult("a placement breaks a hard constraint")
        self.points.append((pid, s))

    def _cohort_of(self, placement: Placement) -> CohortLike:
        if placement.cohort_id is not None:
            if placement.cohort_id not in self.existing:
                raise InfeasibleResult("a placement names an unknown cohort")
            self.joined[placement.cohort_id] = self.joined.get(placement.cohort_id, 0) + 1
            return self.existing[placement.cohort_id]
        key = placement.new_cohort_key
        if key not in self.new:
            raise InfeasibleResult("a placement names an unknown new cohort")
        self.members[key].append(placement.patient_id)
        return self.new[key]


def _check_existing_rooms(tally: _Tally) -> None:
    for cohort_id, count in tally.joined.items():
        if count > tally.existing[cohort_id].room:
            raise InfeasibleResult("an existing cohort is over capacity")


def _check_new_cohorts(tally: _Tally, config: MatchingConfig) -> None:
    for key, cohort in tally.new.items():
        placed = sorted(tally.members[key], key=lambda u: u.int)
        if placed != sorted(cohort.members, key=lambda u: u.int):
            raise InfeasibleResult("a new cohort's members and placements disagree")
        if not config.min_size <= len(cohort.members) <= config.max_size:
            raise InfeasibleResult("a new cohort is outside the size limits")
        if cohort.session_utc_minute % config.grid_minutes:
            raise InfeasibleResult("a new cohort's session is off the grid")


def _check_everyone_accounted_for(result: MatchResult, tally: _Tally) -> None:
    waiting = set(result.waiting)
    if len(waiting) != len(result.waiting) or waiting & tally.seen:
        raise InfeasibleResult("a patient is both waiting and placed, or waiting twice")
    if waiting | tally.seen != set(tally.by_id):
        raise InfeasibleResult("a patient is missing from the result")
