"""The state of matching one hard key (language, stage group): each candidate as an index, what
scoring needs precomputed per index, and the cohorts (``Group``) the heuristic moves them between.
The steps that work on it live beside it: ``sweep``, ``existing_seats``, ``local_search``,
``repair``, and ``heuristic`` that runs them."""

from __future__ import annotations

import uuid
from bisect import bisect_left
from datetime import datetime

from services.group_matching.domain.matching.config import MINUTES_PER_DAY, MatchingConfig
from services.group_matching.domain.matching.inputs import Candidate, OpenCohort
from services.group_matching.domain.matching.scoring import waiting_points

# Gains below this are float noise, not improvements; keeps the local search from cycling.
EPS = 1e-9
# Keys up to this many candidates and open cohorts get the full local-search neighbourhood
# (quadratic and worse); larger ones a bounded one.
_FULL_SEARCH_MAX = 80
_FULL_SEARCH_MAX_COHORTS = 30
# Larger keys look this many cohorts either side of a candidate, ordered round the clock.
NEAR = 3


class Group:
    """A cohort while the heuristic works: existing (fixed profile, ``cap`` = its room) or new
    (profile re-chosen for its members, ``min_size <= len(members) <= max_size``)."""

    __slots__ = ("cap", "center", "cohort_id", "drug", "dz", "floor", "members", "settled", "slot")

    def __init__(
        self,
        cohort_id: uuid.UUID | None,
        slot: int,
        drug: str | None,
        dz: bool | None,
        cap: int,
        floor: int,
        members: list[int],
    ) -> None:
        self.cohort_id = cohort_id
        self.slot = slot
        self.drug = drug
        self.dz = dz
        self.cap = cap
        self.floor = floor
        self.members = members
        self.center = 0  # the UTC offset this session suits best, unwrapped like the sweep
        self.settled: tuple[int, ...] = ()  # members when the profile was last found best

    @property
    def existing(self) -> bool:
        return self.cohort_id is not None


def floor_to(x: float, step: int) -> int:
    return int(x // step) * step


def ceil_to(x: float, step: int) -> int:
    return -int(-x // step) * step


class KeyMatcher:
    """The heuristic for one hard key (language, stage group); indices are into ``cands``."""

    def __init__(
        self,
        cands: list[Candidate],
        opens: list[OpenCohort],
        config: MatchingConfig,
        now: datetime,
    ) -> None:
        self.opens = opens
        self.cfg = config
        self.n = len(cands)
        w = config.weights
        self.w = w
        self.lo = config.earliest_start
        self.hi = config.latest_start
        self.mid = (self.lo + self.hi) / 2
        half = (self.hi - self.lo) / 2
        self.kt = w.session_time / half if half else 0.0  # session points lost per minute off mid
        self.grid = config.grid_minutes
        self.om = [c.utc_offset_minutes % MINUTES_PER_DAY for c in cands]
        self.drug = [c.drug for c in cands]
        self.dz = [c.on_diazepam for c in cands]
        # placement + waiting + a perfectly timed session: the part of s(p, c) that depends on p
        self.base = [w.placement + w.session_time + waiting_points(c, config, now) for c in cands]
        self.starts: dict[int, list[int]] = {}
        self.full = self.n <= _FULL_SEARCH_MAX and len(opens) <= _FULL_SEARCH_MAX_COHORTS
        # Round-the-clock order: the circle of offsets is cut at a gap, widest first, so that
        # groups of neighbouring offsets are contiguous in the sweep. A lone offset's gap is the
        # whole day.
        distinct = sorted(set(self.om))
        gaps = sorted(
            (-((d - distinct[k - 1]) % MINUTES_PER_DAY or MINUTES_PER_DAY), d)
            for k, d in enumerate(distinct)
        )
        self.cut_order = [d for _, d in gaps]
        self.widest_gap = -gaps[0][0]
        self.cut = start = self.cut_order[0]
        self.uo = [start + (o - start) % MINUTES_PER_DAY for o in self.om]  # unwrapped offset

    # The per-pair score s(i, g) of the module docstring, None when not allowed.
    def sc(self, i: int, g: Group) -> float | None:
        local = (g.slot + self.om[i]) % MINUTES_PER_DAY
        if local < self.lo or local > self.hi:
            return None
        w = self.w
        v = self.base[i] - self.kt * abs(local - self.mid)
        if g.cohort_id is not None:
            v += w.existing_cohort
        if self.drug[i] == g.drug:
            v += w.same_drug
        if self.dz[i] == g.dz:
            v += w.same_diazepam_status
        return v

    def center_of(self, slot: int) -> int:
        return self.cut + (round(self.mid) - slot - self.cut) % MINUTES_PER_DAY

    def existing_groups(self) -> list[Group]:
        groups = []
        for o in self.opens:
            g = Group(o.cohort_id, o.session_utc_minute, o.drug, o.on_diazepam, o.room, 0, [])
            g.center = self.center_of(g.slot)
            groups.append(g)
        return groups

    def cuts(self) -> list[int]:
        """Where to cut the circle for the sweep. A gap wider than the window cannot lie inside
        any cohort, so cutting there loses nothing; without one, small keys try every gap."""
        if self.widest_gap > self.hi - self.lo or not self.full:
            return [self.cut]
        return self.cut_order

    def choose_labels(self, g: Group) -> None:
        """The drug and diazepam status that score best for the members (their majority)."""
        counts: dict[str, int] = {}
        for i in g.members:
            counts[self.drug[i]] = counts.get(self.drug[i], 0) + 1
        g.drug = min(counts, key=lambda d: (-counts[d], d))
        z = sum(self.dz[i] for i in g.members)
        g.dz = 2 * z > len(g.members)

    def targets(self, i: int, groups: list[Group], centers: list[tuple[int, int]]) -> list[int]:
        if self.full:
            return list(range(len(groups)))
        at = bisect_left(centers, (self.uo[i], -1))
        return [h for _, h in centers[max(0, at - NEAR) : at + NEAR]]

    def centers(self, groups: list[Group]) -> list[tuple[int, int]]:
        return sorted((g.center, h) for h, g in enumerate(groups))

    def removable(self, g: Group) -> bool:
        return len(g.members) > g.floor

    def starts_for(self, offset: int) -> list[int]:
        """The grid starts a patient at ``offset`` can attend."""
        starts = self.starts.get(offset)
        if starts is None:
            starts = self.starts[offset] = [
                s
                for s in self.cfg.session_grid()
                if self.lo <= (s + offset) % MINUTES_PER_DAY <= self.hi
            ]
        return starts
