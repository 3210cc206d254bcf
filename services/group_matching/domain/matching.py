"""Peer-cohort matching (issue 6): which waiting patient joins which live peer-support group.

Pure: no I/O apart from reading the versioned reference data in ``data/matching.v1.json``; the
clock is an argument (``now``). Stdlib only.

The model (clinical-reference §5)
---------------------------------
A **candidate** is a waiting patient (an opaque id and the few attributes matching needs). A
**cohort** is a weekly live group with a *profile*: language, stage group, weekly session start
(minute of the day, UTC), drug and diazepam status. Existing groups with empty seats come in as
``OpenCohort``; the run may also form ``NewCohort``s. Whoever is not placed stays on the waitlist.

Hard constraints (a pair that breaks one scores ``None``, "not allowed"):

* same language (BCP 47 primary tag);
* same stage group. Groups come from the reference's cohort keys (pre-taper/crossover, active,
  final phase, held, post-taper < 6 months, post-taper >= 6 months) and, checked on load, never
  mix a tapering stage with a post-taper one: §5 asks to keep people with acute symptoms apart
  from protracted-recovery groups;
* the session starts and ends inside the patient's local window (⚠ 09:00-21:00, 60 min), using
  the patient's UTC offset at matching time. Offsets change with daylight saving, so the service
  re-checks on each run;
* an existing cohort takes at most ``capacity - size`` new members; a new cohort has between
  ``min_size`` and ``max_size`` members (⚠ 6-10 from §5). A new cohort starts on the session grid
  (every ``grid_minutes`` UTC);
* each patient is placed at most once.

The objective (the exact solver in ``tests/group_matching_exact.py`` maximises exactly this)
------------------------------------------------------------------------------------------
``total = sum over placed patients p in cohort c of s(p, c)``; a waiting patient adds 0. With W
the weights and ``local = (c.session_utc_minute + p.utc_offset_minutes) mod 1440``::

    s(p, c) = W.placement
            + W.existing_cohort      * [c is an existing cohort]
            + W.same_drug            * [p.drug == c.drug]
            + W.same_diazepam_status * [p.on_diazepam == c.on_diazepam]
            + W.session_time         * (1 - |local - mid| / half)
            + W.waiting              * min(1, days_waited(p, now) / waiting_full_after_days)

where ``[earliest, latest]`` is the window of allowed local starts (window start to window end
minus the session length), ``mid`` its middle and ``half`` half its width (``session_time`` is
``W.session_time`` when ``half`` is 0). The session term is what keeps members' timezones close:
the further a member's offset is from the others', the further the shared start is from the
middle of their day. A new cohort's drug and diazepam status are chosen by the run (the
members' majority maximises the sum); they describe the group, they admit nobody.
``placement`` (60) is worth more than everything else one patient can gain or lose (45 at
most), so placing people comes first and preferences second; the waiting term gives the
longest-waiting priority when seats run short.

The heuristic
-------------
Per hard key (language, stage group), independently:

1. **Sweep.** Candidates are sorted round the clock by UTC offset (the circle cut at a gap
   between offsets), then drug, status and longest wait. A dynamic programme over that order cuts
   it into consecutive runs of ``min_size..max_size`` members, or skips a candidate, maximising
   the exact score of each run as a new cohort: its best grid start (a grid neighbour of the
   median member's ideal start, clamped to what every member allows, by prefix sums) plus its
   majority drug and status. ``O(n * max_size)`` after an ``O(n log n)`` sort.
2. **Existing cohorts** take waiting candidates, best pair first, within their room (a heap over
   look-alike types rather than all pairs).
3. **Local improvement**, every step strictly improving the objective: move a candidate into a
   cohort with room; swap two candidates between cohorts, or with the waitlist; re-choose each
   new cohort's start, drug and status for its members; let a waiting candidate take a seat whose
   holder moves on to a cohort with room; form a new cohort around waiting candidates with seats
   given up by cohorts above their minimum.

Small keys (up to 80 candidates and 30 open cohorts) build several drafts (a cut at each gap
between offsets; mixed or same-drug cohorts first; existing cohorts filled before or after the
sweep), improve each distinct draft with the full neighbourhood and keep the best. Large keys
build one draft (widest-gap cut, existing cohorts first), skip the last two steps, swap only
with the waitlist and look only at the nearest cohorts round the clock, for two rounds: 100k
candidates take about three seconds.

Everything is deterministic: inputs are sorted by id first, ties break on ids, and the result
does not depend on input order.
"""

from __future__ import annotations

import heapq
import json
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Protocol

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

# Gains below this are float noise, not improvements; keeps the local search from cycling.
_EPS = 1e-9
# Keys up to this many candidates and open cohorts get the full local-search neighbourhood
# (quadratic and worse); larger ones a bounded one.
_FULL_SEARCH_MAX = 80
_FULL_SEARCH_MAX_COHORTS = 30
# Larger keys look this many cohorts either side of a candidate, ordered round the clock.
_NEAR = 3
_NAMESPACE = uuid.UUID("5b0f2d8e-7d54-4c1e-9a53-3f7a8c1e6b21")


class InvalidMatchingInput(ValueError):
    """Inputs matching cannot use; the message names the input, never a patient's value."""


class InfeasibleResult(ValueError):
    """A result that breaks a hard constraint (raised by ``check_result``/``total_score``)."""


# --- configuration ----------------------------------------------------------------------------
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
    text = resources.files(__package__).joinpath("data", "matching.v1.json").read_text("utf-8")
    return config_from_dict(json.loads(text))


# --- inputs and outputs -----------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """A waiting patient: an opaque id and what matching needs, nothing else (no PHI)."""

    patient_id: uuid.UUID
    stage: str  # one of MATCHING_STAGES
    drug: str  # original benzodiazepine, e.g. "alprazolam"
    on_diazepam: bool  # switched (crossed over) to diazepam
    utc_offset_minutes: int  # current offset of the patient's IANA timezone
    language: str  # BCP 47 primary tag, e.g. "en"
    waiting_since: datetime  # timezone-aware


class CohortLike(Protocol):
    """What scoring needs of a cohort, existing or formed by this run."""

    @property
    def stage_group(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def session_utc_minute(self) -> int: ...
    @property
    def drug(self) -> str | None: ...
    @property
    def on_diazepam(self) -> bool | None: ...
    @property
    def existing(self) -> bool: ...


@dataclass(frozen=True)
class OpenCohort:
    """An existing cohort with ``capacity - size`` empty seats."""

    cohort_id: uuid.UUID
    stage_group: str
    language: str
    session_utc_minute: int  # weekly live session start, minute of the day in UTC
    drug: str | None  # None: a mixed-drug group
    size: int
    capacity: int
    on_diazepam: bool | None = None  # None: mixed

    @property
    def existing(self) -> bool:
        return True

    @property
    def room(self) -> int:
        return max(0, self.capacity - self.size)


@dataclass(frozen=True)
class NewCohort:
    """A cohort formed by this run. ``key`` is derived from the members, so a retried run that
    forms the same group proposes the same key (idempotent creation downstream)."""

    key: str
    stage_group: str
    language: str
    session_utc_minute: int
    drug: str | None
    on_diazepam: bool | None
    members: tuple[uuid.UUID, ...]

    @property
    def existing(self) -> bool:
        return False


@dataclass(frozen=True)
class Placement:
    """Exactly one of ``cohort_id`` (an existing cohort) and ``new_cohort_key`` is set."""

    patient_id: uuid.UUID
    cohort_id: uuid.UUID | None = None
    new_cohort_key: str | None = None

    def __post_init__(self) -> None:
        if (self.cohort_id is None) == (self.new_cohort_key is None):
            raise ValueError("a placement names either an existing or a new cohort")


@dataclass(frozen=True)
class MatchResult:
    placements: tuple[Placement, ...]
    new_cohorts: tuple[NewCohort, ...]
    waiting: tuple[uuid.UUID, ...]
    score: float


def new_cohort_key(members: Iterable[uuid.UUID]) -> str:
    return str(uuid.uuid5(_NAMESPACE, ",".join(sorted(str(m) for m in members))))


def _int(u: uuid.UUID) -> int:
    return u.int


# --- the score --------------------------------------------------------------------------------
def waiting_points(candidate: Candidate, config: MatchingConfig, now: datetime) -> float:
    days = (now - candidate.waiting_since).total_seconds() / 86400
    return config.weights.waiting * min(1.0, max(0.0, days) / config.waiting_full_after_days)


def _time_points(local: int, config: MatchingConfig) -> float:
    earliest, latest = config.earliest_start, config.latest_start
    half = (latest - earliest) / 2
    if half == 0:
        return config.weights.session_time
    return config.weights.session_time * (1 - abs(local - (earliest + latest) / 2) / half)


def score_pair(
    candidate: Candidate, cohort: CohortLike, config: MatchingConfig, now: datetime
) -> float | None:
    """``s(p, c)`` of the module docstring; ``None`` when a hard constraint forbids the pair.

    Capacity and cohort sizes are about the whole result; ``check_result`` checks them."""
    if candidate.language != cohort.language:
        return None
    if config.stage_group(candidate.stage) != cohort.stage_group:
        return None
    local = (cohort.session_utc_minute + candidate.utc_offset_minutes) % MINUTES_PER_DAY
    if not config.earliest_start <= local <= config.latest_start:
        return None
    w = config.weights
    total = w.placement
    if cohort.existing:
        total += w.existing_cohort
    if candidate.drug == cohort.drug:
        total += w.same_drug
    if candidate.on_diazepam == cohort.on_diazepam:
        total += w.same_diazepam_status
    return total + _time_points(local, config) + waiting_points(candidate, config, now)


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
    by_id = {c.patient_id: c for c in candidates}
    existing = {o.cohort_id: o for o in open_cohorts}
    new = {n.key: n for n in result.new_cohorts}
    if len(new) != len(result.new_cohorts):
        raise InfeasibleResult("two new cohorts share a key")
    seen: set[uuid.UUID] = set()
    joined: dict[uuid.UUID, int] = {}
    members: dict[str, list[uuid.UUID]] = {k: [] for k in new}
    points: list[tuple[uuid.UUID, float]] = []
    for placement in result.placements:
        pid = placement.patient_id
        if pid not in by_id:
            raise InfeasibleResult("a placement names an unknown patient")
        if pid in seen:
            raise InfeasibleResult("a patient is placed twice")
        seen.add(pid)
        cohort: CohortLike
        if placement.cohort_id is not None:
            if placement.cohort_id not in existing:
                raise InfeasibleResult("a placement names an unknown cohort")
            cohort = existing[placement.cohort_id]
            joined[placement.cohort_id] = joined.get(placement.cohort_id, 0) + 1
        else:
            key = placement.new_cohort_key
            if key not in new:
                raise InfeasibleResult("a placement names an unknown new cohort")
            cohort = new[key]
            members[key].append(pid)
        s = score_pair(by_id[pid], cohort, config, now)
        if s is None:
            raise InfeasibleResult("a placement breaks a hard constraint")
        points.append((pid, s))
    for cohort_id, count in joined.items():
        if count > existing[cohort_id].room:
            raise InfeasibleResult("an existing cohort is over capacity")
    for key, cohort in new.items():
        if sorted(members[key], key=_int) != sorted(cohort.members, key=_int):
            raise InfeasibleResult("a new cohort's members and placements disagree")
        if not config.min_size <= len(cohort.members) <= config.max_size:
            raise InfeasibleResult("a new cohort is outside the size limits")
        if cohort.session_utc_minute % config.grid_minutes:
            raise InfeasibleResult("a new cohort's session is off the grid")
    waiting = set(result.waiting)
    if len(waiting) != len(result.waiting) or waiting & seen:
        raise InfeasibleResult("a patient is both waiting and placed, or waiting twice")
    if waiting | seen != set(by_id):
        raise InfeasibleResult("a patient is missing from the result")
    return sum(s for _, s in sorted(points, key=lambda item: item[0].int))


# --- the heuristic ----------------------------------------------------------------------------
def match(
    candidates: Sequence[Candidate],
    open_cohorts: Sequence[OpenCohort],
    config: MatchingConfig | None = None,
    *,
    now: datetime,
) -> MatchResult:
    """Place ``candidates`` into ``open_cohorts`` and new cohorts; see the module docstring."""
    config = config or matching_v1()
    if now.tzinfo is None:
        raise InvalidMatchingInput("now must be timezone-aware")
    cands = sorted(candidates, key=lambda c: c.patient_id.int)
    opens = sorted(open_cohorts, key=lambda o: o.cohort_id.int)
    _validate(cands, opens, config)

    keyed: dict[tuple[str, str], tuple[list[Candidate], list[OpenCohort]]] = {}
    for c in cands:
        keyed.setdefault((c.language, config.stage_group(c.stage)), ([], []))[0].append(c)
    for o in opens:
        if o.room and (o.language, o.stage_group) in keyed:
            keyed[(o.language, o.stage_group)][1].append(o)

    placements: list[Placement] = []
    new_cohorts: list[NewCohort] = []
    for (language, stage_group), (members, cohorts) in sorted(keyed.items()):
        if not cohorts and len(members) < config.min_size:
            continue  # nowhere to go: they all wait
        solved = _KeyMatcher(members, cohorts, config, now).solve()
        for group in solved:
            ids = tuple(sorted((members[i].patient_id for i in group.members), key=_int))
            if group.cohort_id is not None:
                placements.extend(Placement(pid, cohort_id=group.cohort_id) for pid in ids)
            elif group.members:
                key = new_cohort_key(ids)
                new_cohorts.append(
                    NewCohort(
                        key=key,
                        stage_group=stage_group,
                        language=language,
                        session_utc_minute=group.slot,
                        drug=group.drug,
                        on_diazepam=group.dz,
                        members=ids,
                    )
                )
                placements.extend(Placement(pid, new_cohort_key=key) for pid in ids)
    placed = {p.patient_id for p in placements}
    waiting = [c.patient_id for c in cands if c.patient_id not in placed]
    placements.sort(key=lambda p: p.patient_id.int)
    new_cohorts.sort(key=lambda n: n.key)
    result = MatchResult(tuple(placements), tuple(new_cohorts), tuple(waiting), 0.0)
    score = total_score(result, cands, opens, config, now)
    return MatchResult(result.placements, result.new_cohorts, result.waiting, score)


def _validate(
    cands: Sequence[Candidate], opens: Sequence[OpenCohort], config: MatchingConfig
) -> None:
    if len({c.patient_id for c in cands}) != len(cands):
        raise InvalidMatchingInput("a patient appears twice among the candidates")
    if len({o.cohort_id for o in opens}) != len(opens):
        raise InvalidMatchingInput("a cohort appears twice among the open cohorts")
    groups = set(config.stage_groups.values())
    for c in cands:
        config.stage_group(c.stage)
        if not -MINUTES_PER_DAY < c.utc_offset_minutes < MINUTES_PER_DAY:
            raise InvalidMatchingInput("utc_offset_minutes is out of range")
        if c.waiting_since.tzinfo is None:
            raise InvalidMatchingInput("waiting_since must be timezone-aware")
    for o in opens:
        if o.stage_group not in groups:
            raise InvalidMatchingInput("an open cohort has an unknown stage group")
        if not 0 <= o.session_utc_minute < MINUTES_PER_DAY:
            raise InvalidMatchingInput("session_utc_minute is out of range")
        if o.size < 0 or o.capacity < 0:
            raise InvalidMatchingInput("cohort size and capacity must not be negative")


class _Group:
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


def _floor_to(x: float, step: int) -> int:
    return int(x // step) * step


def _ceil_to(x: float, step: int) -> int:
    return -int(-x // step) * step


class _KeyMatcher:
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
    def sc(self, i: int, g: _Group) -> float | None:
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

    def existing_groups(self) -> list[_Group]:
        groups = []
        for o in self.opens:
            g = _Group(o.cohort_id, o.session_utc_minute, o.drug, o.on_diazepam, o.room, 0, [])
            g.center = self.center_of(g.slot)
            groups.append(g)
        return groups

    # --- construction ----------------------------------------------------------------------
    def cuts(self) -> list[int]:
        """Where to cut the circle for the sweep. A gap wider than the window cannot lie inside
        any cohort, so cutting there loses nothing; without one, small keys try every gap."""
        if self.widest_gap > self.hi - self.lo or not self.full:
            return [self.cut]
        return self.cut_order

    def sweep(self, pool: list[int], cut: int) -> list[_Group]:
        """Best partition of ``pool`` (in round-the-clock order from ``cut``) into consecutive
        new cohorts, skipping whoever fits none; exact score of each run as a new cohort."""
        cfg, w = self.cfg, self.w
        mn, mx, step = cfg.min_size, cfg.max_size, self.grid
        if len(pool) < mn:
            return []
        uo = {i: cut + (self.om[i] - cut) % MINUTES_PER_DAY for i in pool}
        order = sorted(pool, key=lambda i: (uo[i], self.drug[i], self.dz[i], -self.base[i], i))
        n = len(order)
        u = [uo[i] for i in order]
        drug_of = [self.drug[i] for i in order]
        pu = [0] * (n + 1)
        pb = [0.0] * (n + 1)
        pz = [0] * (n + 1)
        for k, i in enumerate(order):
            pu[k + 1] = pu[k] + u[k]
            pb[k + 1] = pb[k] + self.base[i]
            pz[k + 1] = pz[k] + self.dz[i]
        lo, hi, mid, kt = self.lo, self.hi, self.mid, self.kt

        def deviation(j: int, i: int, s: int) -> float:
            # sum over the run of |local start - mid| = sum |u_p - (mid - s)|, by prefix sums
            t = mid - s
            m = bisect_right(u, t, j, i)
            return (t * (m - j) - (pu[m] - pu[j])) + ((pu[i] - pu[m]) - t * (i - m))

        dp = [0.0] * (n + 1)
        take = [0] * (n + 1)
        slot_at = [0] * (n + 1)
        w_drug, w_dz = w.same_drug, w.same_diazepam_status
        twice_mid, two_steps = lo + hi, 2 * step  # integer arithmetic for grid rounding
        for i in range(1, n + 1):
            best, best_k, best_s = dp[i - 1], 0, 0
            s_hi = (hi - u[i - 1]) // step * step  # latest grid start the last member allows
            counts: dict[str, int] = {}
            top = 0  # the most frequent drug's count in the run, grown with the run
            for k in range(1, (mx if mx < i else i) + 1):
                j = i - k
                s_lo = -((u[j] - lo) // step) * step  # earliest grid start the first allows
                if s_lo > s_hi:
                    break  # a longer run only spans more offsets
                c = counts[drug_of[j]] = counts.get(drug_of[j], 0) + 1
                if c > top:
                    top = c
                if k < mn:
                    continue
                # the best start is a grid neighbour of the median member's ideal, clamped
                ideal = (twice_mid - 2 * u[(i + j - 1) // 2]) // two_steps * step
                s = s_lo if ideal < s_lo else s_hi if ideal > s_hi else ideal
                dev = deviation(j, i, s)
                s2 = ideal + step
                s2 = s_lo if s2 < s_lo else s_hi if s2 > s_hi else s2
                if s2 != s:
                    dev2 = deviation(j, i, s2)
                    if dev2 < dev:
                        s, dev = s2, dev2
                z = pz[i] - pz[j]
                value = pb[i] - pb[j] - kt * dev + w_drug * top + w_dz * (z if 2 * z > k else k - z)
                if dp[j] + value > best + _EPS:
                    best, best_k, best_s = dp[j] + value, k, s
            dp[i], take[i], slot_at[i] = best, best_k, best_s
        groups: list[_Group] = []
        i = n
        while i > 0:
            k = take[i]
            if k == 0:
                i -= 1
                continue
            members = order[i - k : i]
            g = _Group(None, slot_at[i] % MINUTES_PER_DAY, None, None, mx, mn, members)
            self.choose_labels(g)
            g.center = self.center_of(g.slot)
            groups.append(g)
            i -= k
        groups.reverse()
        return groups

    def choose_labels(self, g: _Group) -> None:
        """The drug and diazepam status that score best for the members (their majority)."""
        counts: dict[str, int] = {}
        for i in g.members:
            counts[self.drug[i]] = counts.get(self.drug[i], 0) + 1
        g.drug = min(counts, key=lambda d: (-counts[d], d))
        z = sum(self.dz[i] for i in g.members)
        g.dz = 2 * z > len(g.members)

    def fill_existing(self, groups: list[_Group], where: list[int]) -> None:
        """Existing cohorts take waiting candidates, best pair first, within their room.

        Look-alikes (same offset, drug and status) differ only in waiting points, so pairs are
        kept per (cohort, look-alike type) in a heap keyed by the type's longest-waiting free
        member: ``O(cohorts * types * log)`` instead of ``O(cohorts * candidates)``."""
        existing = [h for h, g in enumerate(groups) if g.existing and len(g.members) < g.cap]
        if not existing:
            return
        kinds: dict[tuple[int, str, bool], list[int]] = {}
        for i in range(self.n):
            if where[i] < 0:
                kinds.setdefault((self.om[i], self.drug[i], self.dz[i]), []).append(i)
        queues = [sorted(q, key=lambda i: (-self.base[i], i)) for _, q in sorted(kinds.items())]
        heads = [0] * len(queues)  # next free member of each type
        heap = []
        for h in existing:
            for t, q in enumerate(queues):
                s = self.sc(q[0], groups[h])
                if s is not None:
                    heap.append((-s, h, t, 0))
        heapq.heapify(heap)
        while heap:
            _, h, t, at = heapq.heappop(heap)
            g = groups[h]
            if len(g.members) >= g.cap:
                continue
            q = queues[t]
            if at != heads[t]:  # that member is taken: offer the type's next one
                if heads[t] < len(q):
                    s = self.sc(q[heads[t]], g)
                    assert s is not None  # look-alikes are allowed in the same cohorts
                    heapq.heappush(heap, (-s, h, t, heads[t]))
                continue
            i = q[at]
            g.members.append(i)
            where[i] = h
            heads[t] += 1
            if heads[t] < len(q) and len(g.members) < g.cap:
                s = self.sc(q[heads[t]], g)
                assert s is not None
                heapq.heappush(heap, (-s, h, t, heads[t]))

    # --- local improvement -------------------------------------------------------------------
    def solve(self) -> list[_Group]:
        """Large keys: one construction. Small keys: every cut, mixed or drug-first, new or
        existing cohorts first; each distinct construction is improved and the best kept."""
        if not self.full or self.n < self.cfg.min_size:
            # one draft: existing cohorts first, their empty seats to their best-suited
            # candidates (too few for a new cohort, or too many for more drafts)
            groups, where = self.construct(self.cut, drug_first=False, existing_first=True)
            self.improve(groups, where)
            return groups
        drafts: dict[tuple[tuple[int, ...], ...], tuple[list[_Group], list[int]]] = {}
        pure = any(
            sum(1 for d in self.drug if d == drug) >= self.cfg.min_size for drug in set(self.drug)
        )
        for cut in self.cuts():
            # drug-first differs from mixed only if some drug can fill a cohort on its own
            for drug_first in (False, True) if pure else (False,):
                for existing_first in (False, True) if self.opens else (False,):
                    groups, where = self.construct(
                        cut, drug_first=drug_first, existing_first=existing_first
                    )
                    signature = tuple(tuple(sorted(g.members)) for g in groups)
                    drafts.setdefault(signature, (groups, where))
        best: tuple[float, list[_Group]] | None = None
        for groups, where in drafts.values():
            total = self.improve(groups, where)
            if best is None or total > best[0] + _EPS:
                best = (total, groups)
        assert best is not None
        return best[1]

    def construct(
        self, cut: int, *, drug_first: bool, existing_first: bool
    ) -> tuple[list[_Group], list[int]]:
        groups = self.existing_groups()
        where = [-1] * self.n
        if existing_first:
            self.fill_existing(groups, where)
        pool = [i for i in range(self.n) if where[i] < 0]
        formed: list[_Group] = []
        if drug_first:
            # same-drug cohorts first (full drug points), then whoever is left, mixed
            for drug in sorted({self.drug[i] for i in pool}):
                formed += self.sweep([i for i in pool if self.drug[i] == drug], cut)
            taken = {i for g in formed for i in g.members}
            pool = [i for i in pool if i not in taken]
        formed += self.sweep(pool, cut)
        for g in formed:
            for i in g.members:
                where[i] = len(groups)
            groups.append(g)
        self.fill_existing(groups, where)
        return groups, where

    def improve(self, groups: list[_Group], where: list[int]) -> float:
        cur = [0.0] * self.n
        for g in groups:
            for i in g.members:
                s = self.sc(i, g)
                assert s is not None
                cur[i] = s
        rounds = 0
        limit = 50 if self.full else 2
        while rounds < limit:
            rounds += 1
            changed = self.relocate(groups, where, cur)
            changed |= self.swap(groups, where, cur)
            changed |= self.relabel(groups, cur)
            if self.full and not changed:
                changed = self.eject(groups, where, cur) or self.repair(groups, where, cur)
            if not changed:
                break
        return sum(cur)

    def targets(self, i: int, groups: list[_Group], centers: list[tuple[int, int]]) -> list[int]:
        if self.full:
            return list(range(len(groups)))
        at = bisect_left(centers, (self.uo[i], -1))
        return [h for _, h in centers[max(0, at - _NEAR) : at + _NEAR]]

    def centers(self, groups: list[_Group]) -> list[tuple[int, int]]:
        return sorted((g.center, h) for h, g in enumerate(groups))

    def removable(self, g: _Group) -> bool:
        return len(g.members) > g.floor

    def relocate(self, groups: list[_Group], where: list[int], cur: list[float]) -> bool:
        """Move a candidate (placed or waiting) into the cohort with room it scores best in."""
        changed = False
        centers = self.centers(groups)
        for i in range(self.n):
            a = where[i]
            if a >= 0 and not self.removable(groups[a]):
                continue
            best_gain, best_h, best_s = _EPS, -1, 0.0
            for h in self.targets(i, groups, centers):
                g = groups[h]
                if h == a or len(g.members) >= g.cap:
                    continue
                s = self.sc(i, g)
                if s is not None and s - cur[i] > best_gain:
                    best_gain, best_h, best_s = s - cur[i], h, s
            if best_h >= 0:
                if a >= 0:
                    groups[a].members.remove(i)
                groups[best_h].members.append(i)
                where[i], cur[i] = best_h, best_s
                changed = True
        return changed

    def swap(self, groups: list[_Group], where: list[int], cur: list[float]) -> bool:
        """Exchange two candidates between cohorts, or a waiting one with a placed one."""
        changed = False
        centers = self.centers(groups)
        for i in range(self.n):
            if not self.full and where[i] >= 0:
                continue  # large keys: only the waitlist looks for a seat to swap into
            for h in self.targets(i, groups, centers):
                a = where[i]
                if h == a:
                    continue
                g = groups[h]
                s_ih = self.sc(i, g)
                if s_ih is None:
                    continue
                best_gain, best_j, best_sj = _EPS, -1, 0.0
                for j in g.members:
                    if a >= 0:
                        s_ja = self.sc(j, groups[a])
                        if s_ja is None:
                            continue
                    else:
                        s_ja = 0.0
                    gain = s_ih + s_ja - cur[i] - cur[j]
                    if gain > best_gain:
                        best_gain, best_j, best_sj = gain, j, s_ja
                if best_j >= 0:
                    j = best_j
                    g.members[g.members.index(j)] = i
                    if a >= 0:
                        ga = groups[a]
                        ga.members[ga.members.index(i)] = j
                    where[i], where[j] = h, a
                    cur[i], cur[j] = s_ih, best_sj
                    changed = True
        return changed

    def eject(self, groups: list[_Group], where: list[int], cur: list[float]) -> bool:
        """A waiting candidate takes a seat in a full cohort whose holder moves on to a cohort
        with room (a chain of two moves; neither is an improvement on its own)."""
        open_seats = [h for h, g in enumerate(groups) if len(g.members) < g.cap]
        if not open_seats:
            return False
        changed = False
        for i in range(self.n):
            if where[i] >= 0:
                continue
            best_gain, best = _EPS, None
            for h, g in enumerate(groups):
                s_ih = self.sc(i, g)
                if s_ih is None:
                    continue
                for j in g.members:
                    for h2 in open_seats:
                        if h2 == h or len(groups[h2].members) >= groups[h2].cap:
                            continue
                        s_j2 = self.sc(j, groups[h2])
                        if s_j2 is not None and s_ih + s_j2 - cur[j] > best_gain:
                            best_gain, best = s_ih + s_j2 - cur[j], (h, j, h2, s_ih, s_j2)
            if best is not None:
                h, j, h2, s_ih, s_j2 = best
                g = groups[h]
                g.members[g.members.index(j)] = i
                groups[h2].members.append(j)
                where[i], where[j] = h, h2
                cur[i], cur[j] = s_ih, s_j2
                changed = True
        return changed

    def relabel(self, groups: list[_Group], cur: list[float]) -> bool:
        """Re-choose each new cohort's start, drug and status for its current members."""
        changed = False
        step, mid = self.grid, self.mid
        for g in groups:
            if g.existing or not g.members or tuple(g.members) == g.settled:
                continue
            g.settled = tuple(g.members)
            before = sum(cur[i] for i in g.members)
            # deviations from mid at the current start; every member allows the current start
            devs = sorted((g.slot + self.om[i]) % MINUTES_PER_DAY - mid for i in g.members)
            d_lo = _ceil_to(self.lo - mid - devs[0], step)
            d_hi = _floor_to(self.hi - mid - devs[-1], step)
            ideal = _floor_to(-devs[(len(devs) - 1) // 2], step)
            best_d, best_cost = 0, sum(abs(d) for d in devs)
            for d in (min(max(ideal, d_lo), d_hi), min(max(ideal + step, d_lo), d_hi)):
                cost = sum(abs(x + d) for x in devs)
                if cost < best_cost - _EPS:
                    best_d, best_cost = d, cost
            old = (g.slot, g.drug, g.dz)
            g.slot = (g.slot + best_d) % MINUTES_PER_DAY
            self.choose_labels(g)
            scores = [self.sc(i, g) for i in g.members]
            after = sum(s for s in scores if s is not None)
            if None in scores or after <= before + _EPS:
                g.slot, g.drug, g.dz = old
                continue
            for i, s in zip(g.members, scores, strict=True):
                assert s is not None
                cur[i] = s
            g.center = self.center_of(g.slot)
            changed = True
        return changed

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

    def repair(self, groups: list[_Group], where: list[int], cur: list[float]) -> bool:
        """Form one new cohort around waiting candidates, taking seats given up by cohorts
        above their minimum when the waitlist alone is too short; the best gain wins."""
        cfg = self.cfg
        mn, mx = cfg.min_size, cfg.max_size
        waiting = [i for i in range(self.n) if where[i] < 0]
        if not waiting:
            return False
        spare = {h: len(g.members) - g.floor for h, g in enumerate(groups)}
        donors = [i for i in range(self.n) if where[i] >= 0 and spare[where[i]] > 0]
        if len(waiting) + len(donors) < mn:
            return False
        slots = sorted({s for i in waiting for s in self.starts_for(self.om[i])})
        labels = sorted({(self.drug[i], self.dz[i]) for i in waiting})
        lo, hi, mid, kt, om, base = self.lo, self.hi, self.mid, self.kt, self.om, self.base
        w_drug, w_dz = self.w.same_drug, self.w.same_diazepam_status
        best_gain, best_plan = _EPS, None
        for s in slots:
            # the label-free part of s(i, new cohort at s), for whoever the start admits
            joining = []
            for i in waiting:
                local = (s + om[i]) % MINUTES_PER_DAY
                if lo <= local <= hi:
                    joining.append((i, base[i] - kt * abs(local - mid)))
            giving = []
            if len(joining) < mn:
                for i in donors:
                    local = (s + om[i]) % MINUTES_PER_DAY
                    if lo <= local <= hi:
                        giving.append((i, base[i] - kt * abs(local - mid)))
                if len(joining) + len(giving) < mn:
                    continue
            for drug, dz in labels:
                scored = sorted(
                    (
                        -(t + (w_drug if self.drug[i] == drug else 0.0))
                        - (w_dz if self.dz[i] == dz else 0.0),
                        i,
                    )
                    for i, t in joining
                )[:mx]
                gain = -sum(v for v, _ in scored)
                chosen = [i for _, i in scored]
                if len(chosen) < mn:
                    losses = sorted(
                        (
                            cur[i]
                            - t
                            - (w_drug if self.drug[i] == drug else 0.0)
                            - (w_dz if self.dz[i] == dz else 0.0),
                            i,
                        )
                        for i, t in giving
                    )
                    left = dict(spare)
                    for loss, i in losses:
                        if len(chosen) >= mn:
                            break
                        if left[where[i]] > 0:
                            left[where[i]] -= 1
                            chosen.append(i)
                            gain -= loss
                    if len(chosen) < mn:
                        continue
                if gain > best_gain:
                    best_gain, best_plan = gain, (s, drug, dz, chosen)
        if best_plan is None:
            return False
        s, drug, dz, chosen = best_plan
        g = _Group(None, s, drug, dz, mx, mn, [])
        g.center = self.center_of(s)
        h = len(groups)
        groups.append(g)
        for i in chosen:
            if where[i] >= 0:
                groups[where[i]].members.remove(i)
            g.members.append(i)
            where[i] = h
            v = self.sc(i, g)
            assert v is not None
            cur[i] = v
        return True
