"""A matching run over live cohorts (issue 17): cohorts below their minimum are topped up, merged
or closed, so that after every run each active cohort has ``min_size..max_size`` members. Pure.

The run, in order:

1. **Top up.** The matcher (``matching.match``) places waiting candidates into cohorts with room,
   small ones included; a cohort below the minimum keeps its newcomers only if they bring it to
   the minimum (a newcomer never joins a group of two that stays a group of three).
2. **Merge.** A cohort still below the minimum moves, whole, into a compatible cohort at or above
   it (same language and stage group, a session every member can attend, room for all of them):
   the one where the members score best. Members keep their group; they change its session.
3. **Close.** Otherwise it closes: its members go back to the waitlist with the waiting time
   they had when placed (they were not at fault), and an empty cohort simply closes.
4. **Re-place.** Whoever step 1 turned away or step 3 released is matched again, into cohorts at
   or above the minimum or new ones (which ``matching`` forms at ``min_size`` at least).

Ties break on ids: the run is deterministic.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from services.group_matching.domain import matching


@dataclass(frozen=True)
class LiveCohort:
    """An active cohort and its current members (as candidates: what a merge must check)."""

    cohort: matching.OpenCohort  # ``size`` is ignored: ``len(members)`` is the size
    members: tuple[matching.Candidate, ...]

    @property
    def cohort_id(self) -> uuid.UUID:
        return self.cohort.cohort_id


@dataclass(frozen=True)
class RunPlan:
    """What a run decides. ``placements`` name existing cohorts or ``new_cohorts`` by key."""

    placements: tuple[matching.Placement, ...]
    new_cohorts: tuple[matching.NewCohort, ...]
    merged: dict[uuid.UUID, uuid.UUID]  # closed cohort -> the cohort its members moved to
    closed: frozenset[uuid.UUID]  # closed without a merge (members released, or none left)
    released: dict[uuid.UUID, uuid.UUID]  # member of a closed cohort -> that cohort
    waiting: tuple[uuid.UUID, ...]


def plan_run(
    live: Sequence[LiveCohort],
    waiting: Sequence[matching.Candidate],
    config: matching.MatchingConfig,
    *,
    now: datetime,
    hold_back: frozenset[uuid.UUID] = frozenset(),
) -> RunPlan:
    """Steps 1-4 of the module docstring. ``waiting`` are the candidates that may be placed;
    released members in ``hold_back`` (an open RED episode) are not placed again this run."""
    live = sorted(live, key=lambda c: c.cohort_id.int)
    size = {c.cohort_id: len(c.members) for c in live}
    room = {c.cohort_id: max(0, c.cohort.capacity - size[c.cohort_id]) for c in live}
    opens = [replace(c.cohort, size=size[c.cohort_id]) for c in live]

    # 1. top up
    first = matching.match(waiting, [o for o in opens if o.room], config, now=now)
    joining: dict[uuid.UUID, list[matching.Placement]] = {}
    kept: list[matching.Placement] = []
    for p in first.placements:
        if p.cohort_id is None:
            kept.append(p)
        else:
            joining.setdefault(p.cohort_id, []).append(p)
    turned_away: set[uuid.UUID] = set()
    for cohort_id, ps in joining.items():
        if size[cohort_id] + len(ps) >= config.min_size:
            kept.extend(ps)
            size[cohort_id] += len(ps)
            room[cohort_id] -= len(ps)
        else:
            turned_away.update(p.patient_id for p in ps)

    # 2. merge, 3. close: smallest first, so that a small cohort is not the target of another
    merged: dict[uuid.UUID, uuid.UUID] = {}
    closed: set[uuid.UUID] = set()
    released: dict[uuid.UUID, uuid.UUID] = {}
    by_id = {c.cohort_id: c for c in live}
    for c in sorted(live, key=lambda c: (size[c.cohort_id], c.cohort_id.int)):
        if size[c.cohort_id] >= config.min_size:
            continue
        target = _merge_target(c, live, size, room, merged, closed, config, now)
        if target is not None and c.members:
            merged[c.cohort_id] = target
            size[target] += len(c.members)
            room[target] -= len(c.members)
        else:
            closed.add(c.cohort_id)
            released.update((m.patient_id, c.cohort_id) for m in c.members)
        size[c.cohort_id] = 0

    # 4. re-place whoever was turned away or released, into cohorts at the minimum or new ones
    placed = {p.patient_id for p in kept}
    again = [c for c in waiting if c.patient_id in turned_away]
    again += [
        m
        for c in live
        if c.cohort_id in closed
        for m in by_id[c.cohort_id].members
        if m.patient_id not in hold_back
    ]
    new_cohorts = list(first.new_cohorts)
    if again:
        healthy = [
            replace(by_id[i].cohort, size=size[i])
            for i in size
            if i not in merged and i not in closed and room[i] > 0
        ]
        second = matching.match(again, healthy, config, now=now)
        kept.extend(second.placements)
        new_cohorts.extend(second.new_cohorts)
        placed |= {p.patient_id for p in second.placements}
    everyone = [c.patient_id for c in waiting] + list(released)
    return RunPlan(
        placements=tuple(sorted(kept, key=lambda p: p.patient_id.int)),
        new_cohorts=tuple(sorted(new_cohorts, key=lambda n: n.key)),
        merged=merged,
        closed=frozenset(closed),
        released=released,
        waiting=tuple(sorted((p for p in everyone if p not in placed), key=lambda p: p.int)),
    )


def _merge_target(
    small: LiveCohort,
    live: Sequence[LiveCohort],
    size: dict[uuid.UUID, int],
    room: dict[uuid.UUID, int],
    merged: dict[uuid.UUID, uuid.UUID],
    closed: set[uuid.UUID],
    config: matching.MatchingConfig,
    now: datetime,
) -> uuid.UUID | None:
    """The compatible cohort at or above the minimum with room for every member of ``small``
    where they score best together; ``None`` when there is none."""
    # Members are scored as members of their group: one whose new stage has not settled yet
    # (hysteresis) stays with their peers, so the group's stage group is what must match.
    as_member = next(s for s, g in config.stage_groups.items() if g == small.cohort.stage_group)
    members = [replace(m, stage=as_member) for m in small.members]
    best: tuple[float, int, uuid.UUID] | None = None
    for c in live:
        i = c.cohort_id
        if i == small.cohort_id or i in merged or i in closed:
            continue
        if size[i] < config.min_size or room[i] < len(members):
            continue
        if (c.cohort.language, c.cohort.stage_group) != (
            small.cohort.language,
            small.cohort.stage_group,
        ):
            continue
        scores = [matching.score_pair(m, c.cohort, config, now) for m in members]
        if any(s is None for s in scores):
            continue
        total = sum(s for s in scores if s is not None)
        if best is None or (total, -i.int) > best[:2]:
            best = (total, -i.int, i)
    return None if best is None else best[2]
