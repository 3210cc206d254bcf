"""Cohort matching (issue 6): the heuristic against the exact optimum, and at scale.

``python -m bench.group_matching_bench`` measures
``services.group_matching.domain.matching.match`` (imported, never copied: the module may still be
tuned) on synthetic waiting lists:

1. **Quality against the exact solver, small instances.** For each size (``--small-sizes``,
   default 12, 20, 30, 40 candidates) and ``--seeds`` instances (20), with 0-3 open cohorts:
   the heuristic's score over the optimum that CP-SAT (``tests/support/group_matching_exact.py``,
   the same objective, one worker, ``--exact-time-limit`` per instance) proves, both re-scored by
   ``total_score``; the heuristic's time (median of ``--heuristic-repeats`` calls) against
   CP-SAT's (model building + solving) on the same instance, and their ratio. Instances where
   CP-SAT did not prove optimality are reported apart, never averaged in.
2. **One hard key just above the full-search size** (``--key-sizes``, 81 and 160 candidates,
   ``--key-instances`` each): ``match()`` as shipped (the bounded search keys of more than 80
   candidates get) against CP-SAT (``--key-time-limit``) and the best feasible score known (CP-SAT's
   best, the full search forced on the same key, ``match()`` on the first n - 1 candidates), an
   upper bound on score / optimum even where CP-SAT proves nothing.
3. **Scale.** ``match()`` over 1k, 10k and 100k candidates (``--scale-sizes``) with one open
   cohort per 50 candidates, ``--repeats`` times (best and median); placed share, cohorts formed,
   and ``check_result`` (every hard rule, everyone accounted for) on every result. Baseline in
   the same run: a naive but valid greedy (per hard key, candidates in UTC-offset order cut into
   consecutive runs of at most ``max_size`` sharing a session start, runs of ``min_size`` or
   more become cohorts, the rest into their best open cohort with room); score and time ratios.
   Quality: the score over an upper bound on the objective (every candidate scored at the best
   cohort profile allowed to them, ignoring capacity and the minimum size, except that a key
   with fewer than ``min_size`` candidates forms no new cohort). On small instances the bench
   also reports the exact optimum over that bound, so the bound's own slack can be read.

Forcing a search path (attribution only) sets the module's ``_FULL_SEARCH_MAX`` in this process
and restores it; the headline figures are ``match()`` as shipped.

Instances are deterministic (``--seed``) and drawn from plausible (unconfirmed) distributions: a
language mix with English dominant, a real IANA timezone per patient weighted by a rough
population share per language (offsets read with the service's own ``utc_offset_minutes`` at
``NOW``, 2026-11-25: northern winter, southern summer), the seven matching stages, eight drugs,
waits of 0-60 days, open cohorts whose session suits a real zone of their language. Small
instances are one clinic's slice (1-3 stages, English alone or with one other language), so that
cohorts can form and compete for people; at scale the full mix.

Writes ``bench/results/group-matching-<date>.md`` (``--output``), keeping an existing
hand-written Interpretation. Reported, never asserted: not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness.measure import load, pct
from bench.machine import machine_info
from bench.report import git_state, write_results
from services.group_matching.domain.matching import (
    MATCHING_STAGES,
    Candidate,
    MatchingConfig,
    MatchResult,
    NewCohort,
    OpenCohort,
    Placement,
    check_result,
    key_matcher,
    match,
    matching_v1,
    new_cohort_key,
    score_pair,
    total_score,
    waiting_points,
)
from services.group_matching.domain.placement import utc_offset_minutes
from tests.support.group_matching_exact import solve_exact

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = 1440

# --- the synthetic population (plausible shares, not data) -----------------------------------
LANGUAGES = {"en": 72, "es": 12, "fr": 6, "de": 5, "pt": 5}
# Per language: IANA zones weighted by a rough share of speakers a service would reach.
ZONES: dict[str, dict[str, float]] = {
    "en": {
        "America/New_York": 22,
        "America/Chicago": 11,
        "America/Denver": 3,
        "America/Phoenix": 2,
        "America/Los_Angeles": 13,
        "America/Anchorage": 1,
        "Pacific/Honolulu": 1,
        "America/Toronto": 5,
        "America/Vancouver": 2,
        "America/Halifax": 1,
        "America/St_Johns": 0.5,
        "Europe/London": 14,
        "Europe/Dublin": 2,
        "Africa/Johannesburg": 1,
        "Asia/Kolkata": 3,
        "Asia/Singapore": 1,
        "Australia/Perth": 1,
        "Australia/Brisbane": 2,
        "Australia/Adelaide": 1,
        "Australia/Sydney": 4,
        "Australia/Melbourne": 3,
        "Pacific/Auckland": 2,
    },
    "es": {
        "Europe/Madrid": 25,
        "America/Mexico_City": 30,
        "America/Bogota": 12,
        "America/Lima": 7,
        "America/Santiago": 5,
        "America/Argentina/Buenos_Aires": 10,
        "America/Los_Angeles": 6,
        "America/New_York": 5,
    },
    "fr": {
        "Europe/Paris": 65,
        "Europe/Brussels": 10,
        "Europe/Zurich": 5,
        "America/Toronto": 15,
        "Indian/Reunion": 5,
    },
    "de": {"Europe/Berlin": 75, "Europe/Vienna": 12, "Europe/Zurich": 13},
    "pt": {
        "America/Sao_Paulo": 70,
        "America/Manaus": 5,
        "Europe/Lisbon": 20,
        "Atlantic/Azores": 5,
    },
}
STAGES = {
    "pre_taper": 10,
    "crossover": 6,
    "active": 40,
    "final_phase": 10,
    "held": 6,
    "post_taper_early": 16,
    "post_taper_late": 12,
}
DRUGS = {
    "alprazolam": 24,
    "lorazepam": 18,
    "clonazepam": 18,
    "diazepam": 15,
    "temazepam": 8,
    "oxazepam": 8,
    "chlordiazepoxide": 5,
    "clobazam": 4,
}
assert set(STAGES) == set(MATCHING_STAGES)


class Table:
    """A weighted table drawn from with ``rng.choices`` (cumulative weights computed once)."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.keys = list(weights)
        total = 0.0
        self.cum: list[float] = []
        for w in weights.values():
            total += w
            self.cum.append(total)

    def draw(self, rng: random.Random) -> str:
        return rng.choices(self.keys, cum_weights=self.cum)[0]


LANGUAGE_TABLE = Table(LANGUAGES)
STAGE_TABLE = Table(STAGES)
DRUG_TABLE = Table(DRUGS)
ZONE_TABLES = {lang: Table(zones) for lang, zones in ZONES.items()}
OFFSETS = {z: utc_offset_minutes(z, NOW) for zones in ZONES.values() for z in zones}


def candidate(rng: random.Random, language: str, stage: str) -> Candidate:
    drug = DRUG_TABLE.draw(rng)
    return Candidate(
        patient_id=uuid.UUID(int=rng.getrandbits(128)),
        stage=stage,
        drug=drug,
        # as the service derives it (service_layer/cohorts.py): crossing over, or diazepam
        on_diazepam=stage == "crossover" or drug == "diazepam",
        utc_offset_minutes=OFFSETS[ZONE_TABLES[language].draw(rng)],
        language=language,
        # more recent joiners than long waiters
        waiting_since=NOW - timedelta(days=60 * rng.random() ** 1.5),
    )


def open_cohort(
    rng: random.Random, language: str, stage: str, config: MatchingConfig
) -> OpenCohort:
    """An existing weekly group with room: its session at 12:00-19:30 local time in a zone of
    its language, one drug (70%) or mixed, diazepam status set or mixed, 3-9 of 10 seats taken."""
    offset = OFFSETS[ZONE_TABLES[language].draw(rng)]
    local = rng.randrange(12 * 60, 20 * 60, 30)
    size = rng.randint(3, 9)
    return OpenCohort(
        cohort_id=uuid.UUID(int=rng.getrandbits(128)),
        stage_group=config.stage_group(stage),
        language=language,
        session_utc_minute=(local - offset) % DAY,
        drug=DRUG_TABLE.draw(rng) if rng.random() < 0.7 else None,
        size=size,
        capacity=10,
        on_diazepam=rng.choice([None, None, False, True]),
    )


def small_instance(
    n: int, seed: int, k: int, config: MatchingConfig
) -> tuple[list[Candidate], list[OpenCohort]]:
    """One clinic's slice: 1-3 stages (weighted), English alone (60%) or with one other
    language (a fifth of the patients), zones and drugs from the full mix; 0-3 open cohorts."""
    rng = random.Random(f"small-{seed}-{n}-{k}")
    stages: list[str] = []
    for _ in range(rng.randint(1, 3)):
        stage = STAGE_TABLE.draw(rng)
        if stage not in stages:
            stages.append(stage)
    languages = ["en"]
    if rng.random() < 0.4:
        languages.append(rng.choice([lang for lang in LANGUAGES if lang != "en"]))

    def language() -> str:
        return languages[-1] if len(languages) > 1 and rng.random() < 0.2 else "en"

    people = [candidate(rng, language(), rng.choice(stages)) for _ in range(n)]
    opens = [
        open_cohort(rng, language(), rng.choice(stages), config) for _ in range(rng.randint(0, 3))
    ]
    return people, opens


def scale_instance(
    n: int, seed: int, config: MatchingConfig
) -> tuple[list[Candidate], list[OpenCohort]]:
    rng = random.Random(f"scale-{seed}-{n}")
    people = [candidate(rng, LANGUAGE_TABLE.draw(rng), STAGE_TABLE.draw(rng)) for _ in range(n)]
    opens = [
        open_cohort(rng, LANGUAGE_TABLE.draw(rng), STAGE_TABLE.draw(rng), config)
        for _ in range(n // 50)
    ]
    return people, opens


# --- baseline and bound ----------------------------------------------------------------------
def _keyed(
    candidates: Sequence[Candidate], opens: Sequence[OpenCohort], config: MatchingConfig
) -> tuple[dict[tuple[str, str], list[Candidate]], dict[tuple[str, str], list[OpenCohort]]]:
    keys: dict[tuple[str, str], list[Candidate]] = defaultdict(list)
    for c in candidates:
        keys[(c.language, config.stage_group(c.stage))].append(c)
    rooms: dict[tuple[str, str], list[OpenCohort]] = defaultdict(list)
    for o in opens:
        if o.room:
            rooms[(o.language, o.stage_group)].append(o)
    return keys, rooms


def _allowed_starts(offset: int, config: MatchingConfig) -> frozenset[int]:
    lo, hi = config.earliest_start, config.latest_start
    return frozenset(s for s in config.session_grid() if lo <= (s + offset) % DAY <= hi)


def _runs(
    members: list[Candidate], config: MatchingConfig, starts_of: dict[int, frozenset[int]]
) -> list[tuple[list[Candidate], frozenset[int]]]:
    """Consecutive runs of at most ``max_size`` that share an allowed start, in list order."""
    runs: list[tuple[list[Candidate], frozenset[int]]] = []
    run: list[Candidate] = []
    common: frozenset[int] = frozenset()
    for c in members:
        o = c.utc_offset_minutes % DAY
        mine = starts_of.get(o)
        if mine is None:
            mine = starts_of[o] = _allowed_starts(o, config)
        shared = common & mine if run else mine
        if run and (len(run) == config.max_size or not shared):
            runs.append((run, common))
            run, shared = [], mine
        run.append(c)
        common = shared
    if run:
        runs.append((run, common))
    return runs


def _cohort_of(
    run: list[Candidate], starts: frozenset[int], key: tuple[str, str], config: MatchingConfig
) -> NewCohort:
    """The run's shared start nearest the middle of the median member's window, the members'
    majority drug and status."""
    mid = (config.earliest_start + config.latest_start) / 2
    median = sorted(c.utc_offset_minutes for c in run)[len(run) // 2]
    start = min(sorted(starts), key=lambda s: abs((s + median) % DAY - mid))
    drugs = Counter(c.drug for c in run)
    drug = min(drugs, key=lambda d: (-drugs[d], d))
    dz = 2 * sum(c.on_diazepam for c in run) > len(run)
    ids = tuple(sorted(c.patient_id for c in run))
    language, group = key
    return NewCohort(new_cohort_key(ids), group, language, start, drug, dz, ids)


def greedy(
    candidates: Sequence[Candidate],
    opens: Sequence[OpenCohort],
    config: MatchingConfig,
    *,
    now: datetime,
) -> MatchResult:
    """The naive baseline: per hard key, candidates sorted by UTC offset (0..1439, no wrap
    round the clock), then drug and longest wait, are cut into consecutive runs that share an
    allowed session start, at most ``max_size`` each; a run of ``min_size`` or more becomes a
    new cohort (``_cohort_of``); the others, longest waiting first, take the open cohort of
    their key with room that scores best for them. Scored and checked by ``total_score``, as
    ``match()`` is."""
    keys, rooms = _keyed(candidates, opens, config)
    left = {o.cohort_id: o.room for o in opens}
    starts_of: dict[int, frozenset[int]] = {}
    placements: list[Placement] = []
    formed: list[NewCohort] = []
    for key, members in sorted(keys.items()):
        members.sort(key=lambda c: (c.utc_offset_minutes % DAY, c.drug, c.waiting_since))
        leftover: list[Candidate] = []
        for run, starts in _runs(members, config, starts_of):
            if len(run) < config.min_size:
                leftover += run
                continue
            cohort = _cohort_of(run, starts, key, config)
            formed.append(cohort)
            placements.extend(Placement(pid, new_cohort_key=cohort.key) for pid in cohort.members)
        for c in sorted(leftover, key=lambda c: (c.waiting_since, c.patient_id.int)):
            best: tuple[float, uuid.UUID] | None = None
            for o in rooms.get(key, ()):
                s = score_pair(c, o, config, now) if left[o.cohort_id] else None
                if s is not None and (best is None or s > best[0]):
                    best = (s, o.cohort_id)
            if best is not None:
                left[best[1]] -= 1
                placements.append(Placement(c.patient_id, cohort_id=best[1]))
    placed = {p.patient_id for p in placements}
    waiting = tuple(c.patient_id for c in candidates if c.patient_id not in placed)
    draft = MatchResult(tuple(placements), tuple(formed), waiting, 0.0)
    score = total_score(draft, candidates, opens, config, now)
    return MatchResult(draft.placements, draft.new_cohorts, waiting, score)


def upper_bound(
    candidates: Sequence[Candidate],
    opens: Sequence[OpenCohort],
    config: MatchingConfig,
    now: datetime,
) -> float:
    """Sum over candidates of their best score in any cohort allowed to them: an open cohort of
    their key with room, or (if their key has ``min_size`` candidates) a new cohort with their
    own drug and status at their best grid start. Capacity and the minimum size are ignored, so
    no feasible result scores more. Look-alikes (key, offset, drug, status) share everything
    but the waiting term, so the pair scores are computed once per look-alike type."""
    keys, rooms = _keyed(candidates, opens, config)
    total = 0.0
    for (language, group), members in keys.items():
        best_of: dict[tuple[int, str, bool], float | None] = {}
        for c in members:
            t = (c.utc_offset_minutes, c.drug, c.on_diazepam)
            if t not in best_of:
                profiles: list[OpenCohort | NewCohort] = list(rooms.get((language, group), ()))
                if len(members) >= config.min_size:
                    profiles += [
                        NewCohort("", group, language, s, c.drug, c.on_diazepam, ())
                        for s in config.session_grid()
                    ]
                wait = waiting_points(c, config, now)
                scores = [score_pair(c, p, config, now) for p in profiles]
                best_of[t] = max((s - wait for s in scores if s is not None), default=None)
            b = best_of[t]
            if b is not None:
                total += b + waiting_points(c, config, now)
    return total


# --- measuring -------------------------------------------------------------------------------
def timed(fn: Callable[[], MatchResult]) -> tuple[MatchResult, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


@contextlib.contextmanager
def full_search_up_to(n: int) -> Iterator[bool]:
    """Attribution only: ``match()`` with the full local search for keys of up to ``n``
    candidates (the module's ``_FULL_SEARCH_MAX``, 80 as shipped; 0 forces the bounded path
    that larger keys get). Yields False, changing nothing, if the module no longer has it."""
    if not isinstance(getattr(key_matcher, "_FULL_SEARCH_MAX", None), int):
        yield False
        return
    shipped = key_matcher._FULL_SEARCH_MAX
    key_matcher._FULL_SEARCH_MAX = n
    try:
        yield True
    finally:
        key_matcher._FULL_SEARCH_MAX = shipped


@dataclass
class SmallRun:
    n: int
    k: int
    keys: int
    opens: int
    heuristic: float  # score
    exact: float
    optimal: bool
    greedy: float
    bound: float
    bounded: float | None  # score of the bounded path (forced), attribution
    placed_b: int | None
    heuristic_s: float  # median of the repeats
    exact_s: float  # model building + solving
    solver_s: float  # CP-SAT's own wall time
    placed_h: int
    placed_x: int
    cohorts_h: int
    cohorts_x: int

    @property
    def trivial(self) -> bool:
        return self.exact == 0  # nobody can be placed: both score 0

    @property
    def ratio(self) -> float:
        return 1.0 if self.trivial else self.heuristic / self.exact

    @property
    def speedup(self) -> float:
        return self.exact_s / self.heuristic_s


def run_small(
    sizes: list[int], seeds: int, seed: int, limit: float, repeats: int, config: MatchingConfig
) -> list[SmallRun]:
    runs = []
    for n in sizes:
        for k in range(seeds):
            people, opens = small_instance(n, seed, k, config)
            times = []
            for _ in range(repeats):
                heur, took = timed(lambda: match(people, opens, config, now=NOW))  # noqa: B023
                times.append(took)
            check_result(heur, people, opens, config, NOW)
            exact = solve_exact(people, opens, config, NOW, time_limit_s=limit, workers=1)
            check_result(exact.result, people, opens, config, NOW)
            base = greedy(people, opens, config, now=NOW)
            with full_search_up_to(0) as forced:
                forced_result = match(people, opens, config, now=NOW) if forced else None
            run = SmallRun(
                n=n,
                k=k,
                keys=len({(c.language, config.stage_group(c.stage)) for c in people}),
                opens=len(opens),
                heuristic=heur.score,
                exact=exact.result.score,
                optimal=exact.optimal,
                greedy=base.score,
                bound=upper_bound(people, opens, config, NOW),
                bounded=forced_result.score if forced_result else None,
                placed_b=len(forced_result.placements) if forced_result else None,
                heuristic_s=statistics.median(times),
                exact_s=exact.seconds,
                solver_s=exact.solver_seconds,
                placed_h=len(heur.placements),
                placed_x=len(exact.result.placements),
                cohorts_h=len(heur.new_cohorts),
                cohorts_x=len(exact.result.new_cohorts),
            )
            runs.append(run)
            print(
                f"  n={n} #{k}: heuristic {run.heuristic:.1f} in {1000 * run.heuristic_s:.1f} ms,"
                f" exact {run.exact:.1f} ({'optimal' if run.optimal else 'NOT proven'}) in "
                f"{run.exact_s:.2f} s; ratio {run.ratio:.4f}, speed-up {run.speedup:.0f}x",
                flush=True,
            )
    return runs


@dataclass
class KeyRun:
    n: int
    k: int
    opens: int
    heuristic: float  # match() as shipped (the bounded path above 80 candidates)
    heuristic_s: float
    full: float | None  # the full local search forced on the same instance (attribution)
    full_s: float | None
    fewer: float  # match() on the first n - 1 of the same candidates
    exact: float  # CP-SAT's best, proved optimal or not
    optimal: bool
    exact_s: float

    @property
    def best_known(self) -> float:
        """A lower bound on the optimum: every one of these is a feasible score for these
        candidates (the first n - 1 placed as then, the n-th waiting, is feasible too)."""
        return max(self.heuristic, self.full or 0.0, self.fewer, self.exact)


def key_instance(
    n: int, seed: int, k: int, config: MatchingConfig
) -> tuple[list[Candidate], list[OpenCohort]]:
    """One hard key (English, one stage) of n candidates, one open cohort per 50 (at least
    one); the first n - 1 candidates are the same for every n of one (seed, k)."""
    rng = random.Random(f"key-{seed}-{k}")
    stage = STAGE_TABLE.draw(rng)
    people = [candidate(rng, "en", stage) for _ in range(n)]
    opens = [open_cohort(rng, "en", stage, config) for _ in range(max(1, n // 50))]
    return people, opens


def run_keys(
    sizes: list[int], instances: int, seed: int, limit: float, config: MatchingConfig
) -> list[KeyRun]:
    runs = []
    for n in sizes:
        for k in range(instances):
            people, opens = key_instance(n, seed, k, config)
            heur, took = timed(lambda: match(people, opens, config, now=NOW))  # noqa: B023
            check_result(heur, people, opens, config, NOW)
            fewer = match(people[:-1], opens, config, now=NOW).score
            full = full_s = None
            with full_search_up_to(n) as forced:
                if forced:
                    result, full_s = timed(lambda: match(people, opens, config, now=NOW))  # noqa: B023
                    check_result(result, people, opens, config, NOW)
                    full = result.score
            exact = solve_exact(people, opens, config, NOW, time_limit_s=limit, workers=1)
            check_result(exact.result, people, opens, config, NOW)
            run = KeyRun(
                n=n,
                k=k,
                opens=len(opens),
                heuristic=heur.score,
                heuristic_s=took,
                full=full,
                full_s=full_s,
                fewer=fewer,
                exact=exact.result.score,
                optimal=exact.optimal,
                exact_s=exact.seconds,
            )
            runs.append(run)
            print(
                f"  one key of {n} #{k}: match() {run.heuristic:.1f} in {1000 * took:.1f} ms, "
                f"full search {full or 0:.1f} in {1000 * (full_s or 0):.0f} ms, first n-1 "
                f"{fewer:.1f}, CP-SAT {run.exact:.1f} "
                f"({'optimal' if run.optimal else 'NOT proven'}) in {run.exact_s:.1f} s",
                flush=True,
            )
    return runs


@dataclass
class ScaleRun:
    n: int
    opens: int
    keys: int
    seats: int  # empty seats in open cohorts
    load: str
    times: list[float]
    greedy_times: list[float]
    result: MatchResult
    base: MatchResult
    bound: float
    checked: bool
    greedy_checked: bool
    check_s: float  # one check_result of match()'s result (match() runs the same check inside)


def run_scale(sizes: list[int], seed: int, repeats: int, config: MatchingConfig) -> list[ScaleRun]:
    runs = []
    for n in sizes:
        people, opens = scale_instance(n, seed, config)
        before = load()
        times: list[float] = []
        greedy_times: list[float] = []
        result = base = None
        for r in range(repeats):
            # alternate which goes first; collect the previous repetition's garbage untimed
            for variant in ("heuristic", "greedy") if r % 2 == 0 else ("greedy", "heuristic"):
                gc.collect()
                if variant == "heuristic":
                    result, took = timed(lambda: match(people, opens, config, now=NOW))  # noqa: B023
                    times.append(took)
                else:
                    base, took = timed(lambda: greedy(people, opens, config, now=NOW))  # noqa: B023
                    greedy_times.append(took)
        assert result is not None and base is not None
        checked = greedy_checked = True
        check_started = time.perf_counter()
        try:
            check_result(result, people, opens, config, NOW)
        except ValueError:
            checked = False
        check_s = time.perf_counter() - check_started
        try:
            check_result(base, people, opens, config, NOW)
        except ValueError:
            greedy_checked = False
        run = ScaleRun(
            n=n,
            opens=len(opens),
            keys=len({(c.language, config.stage_group(c.stage)) for c in people}),
            seats=sum(o.room for o in opens),
            load=before,
            times=times,
            greedy_times=greedy_times,
            result=result,
            base=base,
            bound=upper_bound(people, opens, config, NOW),
            checked=checked,
            greedy_checked=greedy_checked,
            check_s=check_s,
        )
        runs.append(run)
        print(
            f"  n={n}: match() best {min(times):.3f} s, median {statistics.median(times):.3f} s,"
            f" placed {len(result.placements) / n:.1%}, score/bound {result.score / run.bound:.4f};"
            f" greedy best {min(greedy_times):.3f} s, score {base.score / result.score:.4f} of"
            f" match() (load before {before})",
            flush=True,
        )
    return runs


# --- the report ------------------------------------------------------------------------------
def small_tables(runs: list[SmallRun], limit: float) -> list[str]:
    proved = [r for r in runs if r.optimal]
    unproved = [r for r in runs if not r.optimal]
    sizes = sorted({r.n for r in runs})
    out = [
        "### Quality: heuristic score / exact optimum (proved optimal instances)",
        "",
        "| candidates | instances | proved optimal | nobody placeable | heuristic at the "
        "optimum | worst ratio | p10 ratio | median ratio | mean ratio | placed: heuristic / "
        "exact | cohorts formed: heuristic / exact |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in [*sizes, None]:
        rs = [r for r in proved if n is None or r.n == n]
        every = [r for r in runs if n is None or r.n == n]
        if not rs:
            continue
        ratios = [r.ratio for r in rs]
        at_opt = sum(r.heuristic >= r.exact - 1e-6 for r in rs)
        out.append(
            f"| {'all' if n is None else n} | {len(every)} | {len(rs)} | "
            f"{sum(r.trivial for r in rs)} | {at_opt} | {min(ratios):.4f} | "
            f"{pct(ratios, 10):.4f} | {statistics.median(ratios):.4f} | "
            f"{statistics.fmean(ratios):.4f} | {sum(r.placed_h for r in rs)} / "
            f"{sum(r.placed_x for r in rs)} | {sum(r.cohorts_h for r in rs)} / "
            f"{sum(r.cohorts_x for r in rs)} |"
        )
    out += [
        "",
        "### Time: heuristic vs CP-SAT on the same instance (proved optimal instances)",
        "",
        "| candidates | heuristic ms median | heuristic ms max | CP-SAT s median (solver "
        "only) | CP-SAT s max | **speed-up median** | speed-up lowest | instances below 100x |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in [*sizes, None]:
        rs = [r for r in proved if n is None or r.n == n]
        if not rs:
            continue
        speed = [r.speedup for r in rs]
        out.append(
            f"| {'all' if n is None else n} | "
            f"{1000 * statistics.median(r.heuristic_s for r in rs):.2f} | "
            f"{1000 * max(r.heuristic_s for r in rs):.2f} | "
            f"{statistics.median(r.exact_s for r in rs):.3f} "
            f"({statistics.median(r.solver_s for r in rs):.3f}) | "
            f"{max(r.exact_s for r in rs):.2f} | **{statistics.median(speed):,.0f}x** | "
            f"{min(speed):,.1f}x | {sum(s < 100 for s in speed)} |"
        )
    out += [
        "",
        "### Baseline and bound on the same instances",
        "",
        "| candidates | greedy / exact: worst | greedy / exact: median | exact / upper bound: "
        "lowest | exact / upper bound: median | heuristic / upper bound: median |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n in [*sizes, None]:
        rs = [r for r in proved if (n is None or r.n == n) and not r.trivial]
        if not rs:
            continue
        g = [r.greedy / r.exact for r in rs]
        b = [r.exact / r.bound for r in rs]
        h = [r.heuristic / r.bound for r in rs]
        out.append(
            f"| {'all' if n is None else n} | {min(g):.4f} | {statistics.median(g):.4f} | "
            f"{min(b):.4f} | {statistics.median(b):.4f} | {statistics.median(h):.4f} |"
        )
    forced = [r for r in proved if r.bounded is not None and not r.trivial]
    if forced:
        out += [
            "",
            "Attribution: the bounded path that `match()` uses for keys of more than 80 "
            "candidates (or more than 30 open cohorts), forced on the same instances "
            "(`_FULL_SEARCH_MAX = 0` in the bench process; one draft, two rounds, no "
            "ejection or repair):",
            "",
            "| candidates | bounded path / exact: worst | p10 | median | instances below 0.95 | "
            "placed: bounded path / exact |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for n in [*sizes, None]:
            rs = [r for r in forced if n is None or r.n == n]
            if not rs:
                continue
            f = [(r.bounded or 0.0) / r.exact for r in rs]
            out.append(
                f"| {'all' if n is None else n} | {min(f):.4f} | {pct(f, 10):.4f} | "
                f"{statistics.median(f):.4f} | {sum(x < 0.95 for x in f)} of {len(f)} | "
                f"{sum(r.placed_b or 0 for r in rs)} / {sum(r.placed_x for r in rs)} |"
            )
    worst = sorted(proved, key=lambda r: r.ratio)[:5]
    out += [
        "",
        "Worst five instances (size #index: hard keys, open cohorts; heuristic / exact score, "
        "placed, new cohorts): "
        + "; ".join(
            f"{r.n} #{r.k}: {r.keys} keys, {r.opens} open, {r.heuristic:.1f} / {r.exact:.1f} = "
            f"{r.ratio:.4f}, placed {r.placed_h} / {r.placed_x}, cohorts {r.cohorts_h} / "
            f"{r.cohorts_x}"
            for r in worst
        )
        + ".",
        "",
    ]
    if unproved:
        out += [
            f"Not proved optimal within {limit:g} s ({len(unproved)}; the ratio is against "
            "CP-SAT's best solution found, so it flatters the heuristic, and these are left out "
            "above): "
            + "; ".join(
                f"{r.n} #{r.k}: heuristic {r.heuristic:.1f}, CP-SAT best {r.exact:.1f} "
                f"(ratio {r.ratio:.4f}) in {r.exact_s:.1f} s"
                for r in unproved
            )
            + ".",
            "",
        ]
    else:
        out += [f"CP-SAT proved every instance optimal within the {limit:g} s limit.", ""]
    return out


def key_table(runs: list[KeyRun], limit: float) -> list[str]:
    out = [
        "| candidates in the key | instances | `match()` ms median | full search forced ms "
        "median | CP-SAT s median | proved optimal | `match()` / optimum, proved: worst, "
        "median | **`match()` / best known: worst, median** | full search / best known: "
        "median | `match()` on n / on the first n - 1: lowest (instances below 1) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sorted({r.n for r in runs}):
        rs = [r for r in runs if r.n == n]
        proved = [r.heuristic / r.exact for r in rs if r.optimal]
        known = [r.heuristic / r.best_known for r in rs]
        full = [r.full / r.best_known for r in rs if r.full is not None]
        full_ms = [1000 * r.full_s for r in rs if r.full_s is not None]
        mono = [r.heuristic / r.fewer for r in rs]
        out.append(
            f"| {n} | {len(rs)} | {1000 * statistics.median(r.heuristic_s for r in rs):.2f} | "
            f"{statistics.median(full_ms) if full_ms else float('nan'):.0f} | "
            f"{statistics.median(r.exact_s for r in rs):.1f} | {len(proved)} | "
            + (f"{min(proved):.4f}, {statistics.median(proved):.4f}" if proved else "-")
            + f" | **{min(known):.4f}, {statistics.median(known):.4f}** | "
            + (f"{statistics.median(full):.4f}" if full else "-")
            + f" | {min(mono):.4f} ({sum(x < 1 - 1e-9 for x in mono)}) |"
        )
    out += [
        "",
        "*Best known* is the highest feasible score found for the instance: CP-SAT's best within "
        f"{limit:g} s (the optimum where proved), the full search forced, and `match()` on the "
        "first n - 1 candidates (their placements stay feasible with the n-th waiting). The "
        "optimum is at least that, so `match()` / best known is an upper bound on `match()` / "
        "optimum even where CP-SAT did not prove optimality. The last column: adding one "
        "candidate can only raise the optimum; below 1, `match()` scored less with one more "
        "patient.",
        "",
        "Every instance (n #k: `match()` / full search / first n - 1 / CP-SAT best, proved?): "
        + "; ".join(
            f"{r.n} #{r.k}: {r.heuristic:.1f} / {r.full or 0:.1f} / {r.fewer:.1f} / "
            f"{r.exact:.1f}{'' if r.optimal else ' (not proved)'}"
            for r in runs
        )
        + ".",
        "",
    ]
    return out


def scale_table(runs: list[ScaleRun]) -> list[str]:
    out = [
        "| candidates | open cohorts (empty seats) | hard keys | `match()` s best | `match()` s "
        "median | of which `total_score`'s re-check | greedy s best | greedy s median | "
        "**time match / greedy (median)** |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        tm, tg = statistics.median(r.times), statistics.median(r.greedy_times)
        out.append(
            f"| {r.n:,} | {r.opens:,} ({r.seats:,}) | {r.keys} | {min(r.times):.3f} | "
            f"{tm:.3f} | ~{r.check_s:.3f} | {min(r.greedy_times):.3f} | {tg:.3f} | "
            f"**{tm / tg:.2f}x** |"
        )
    out += [
        "",
        "| candidates | placed: `match()` | placed: greedy | new cohorts: `match()` / greedy | "
        "seats filled in open cohorts: `match()` / greedy | `check_result`: `match()` / greedy | "
        "score per placed: `match()` / greedy | **score match / greedy** | **score match / "
        "upper bound** | greedy / upper bound |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        res, base = r.result, r.base

        def seats(m: MatchResult) -> int:
            return sum(p.cohort_id is not None for p in m.placements)

        out.append(
            f"| {r.n:,} | {len(res.placements) / r.n:.1%} | {len(base.placements) / r.n:.1%} | "
            f"{len(res.new_cohorts):,} / {len(base.new_cohorts):,} | {seats(res):,} / "
            f"{seats(base):,} | {'pass' if r.checked else 'FAIL'} / "
            f"{'pass' if r.greedy_checked else 'FAIL'} | "
            f"{res.score / max(1, len(res.placements)):.2f} / "
            f"{base.score / max(1, len(base.placements)):.2f} | **{res.score / base.score:.4f}** |"
            f" **{res.score / r.bound:.4f}** | {base.score / r.bound:.4f} |"
        )
    out += [
        "",
        "The re-check is timed once, as `check_result` on the result (what `match()` runs "
        "before returning). Every repetition (s, `match()` / greedy): "
        + "; ".join(
            f"{r.n:,}: "
            + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(r.times, r.greedy_times, strict=True))
            + f" (load before {r.load})"
            for r in runs
        )
        + ".",
        "",
    ]
    return out


def render(
    small: list[SmallRun],
    keys: list[KeyRun],
    scale: list[ScaleRun],
    loads: dict[str, str],
    args: argparse.Namespace,
    git: str,
    started: datetime,
    elapsed: float,
    config: MatchingConfig,
) -> str:
    info = machine_info(("ortools",))
    out = [
        f"# Group matching benchmark, {started:%Y-%m-%d}",
        "",
        f"Run `{' '.join(['python -m bench.group_matching_bench', *sys.argv[1:]])}` at "
        f"{started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s in all; code at {git}.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in info.items()],
        "- shared machine: other engineers' work may run meanwhile; the 1-minute load average "
        "before each part is recorded",
        "",
        "## Settings",
        "",
        f"- matching config `{config.version}`: cohorts {config.min_size}-{config.max_size}, "
        f"local window {config.window_start_minute // 60:02d}:{config.window_start_minute % 60:02d}"
        f"-{config.window_end_minute // 60:02d}:{config.window_end_minute % 60:02d}, "
        f"{config.session_minutes}-minute sessions on a {config.grid_minutes}-minute UTC grid, "
        f"weights {config.weights}; `now` = {NOW:%Y-%m-%d %H:%M} UTC",
        f"- population (seed {args.seed}): languages {LANGUAGES}; stages {STAGES}; drugs "
        f"{DRUGS}; on diazepam when crossing over or on diazepam (as the service derives it); "
        f"waits 60 x U^1.5 days; {len(OFFSETS)} IANA zones (distinct offsets at `now`: "
        f"{len(set(OFFSETS.values()))}) weighted per language (see the script); open cohorts: "
        "session at 12:00-19:30 local in a zone of their language, 3-9 of 10 seats taken, one "
        "drug (70%) or mixed, diazepam status set (50%) or mixed",
        f"- small instances: sizes {args.small_sizes}, {args.seeds} instances each, one clinic's "
        "slice (1-3 stages; English alone, or with one other language for a fifth of the "
        "patients), 0-3 open cohorts; heuristic time = median of "
        f"{args.heuristic_repeats} calls; CP-SAT: `solve_exact(..., workers=1, "
        f"time_limit_s={args.exact_time_limit:g})` (one worker, as the heuristic has one core), "
        "timed from model building to the re-scored result; load before: "
        f"{loads.get('small', '-')}",
        f"- scale: sizes {args.scale_sizes}, one open cohort per 50 candidates, the full mix, "
        f"{args.repeats} repetitions alternating which of `match()` and the greedy goes first, "
        "`gc.collect()` before each; both times include `total_score`'s re-check of the result "
        "(`match()` calls it itself, the greedy likewise)",
        "",
        "The score is the module's objective (`total_score`): per placed patient 60 for the "
        "placement + 5 existing cohort + 15 same drug + 5 same diazepam status + up to 10 for the "
        "session time + up to 10 for the wait; about 90-100 points per well-placed patient.",
        "",
    ]
    if small:
        out += ["## 1. Small instances: heuristic against the exact optimum (CP-SAT)", ""]
        out += small_tables(small, args.exact_time_limit)
    if keys:
        out += [
            "## 2. One hard key just above the full-search size: against the exact optimum",
            "",
            f"Settings: one key (English, one stage drawn per instance) of {args.key_sizes} "
            f"candidates, {args.key_instances} instances each, one open cohort per 50 candidates "
            f"(at least one); `match()` timed once; CP-SAT as above with "
            f"`time_limit_s={args.key_time_limit:g}`; the full search forced by setting "
            "`_FULL_SEARCH_MAX` to n in the bench process (attribution, not the shipped "
            f"matcher). Load average before: {loads.get('keys', '-')}.",
            "",
        ]
        out += key_table(keys, args.key_time_limit)
    if scale:
        out += [
            "## 3. Scale: `match()` against a naive greedy and an upper bound",
            "",
            f"Load average (1/5/15 min) before: {loads.get('scale', '-')}.",
            "",
        ]
        out += scale_table(scale)
    out += ["## Interpretation", "", "(written by hand after reading the figures)", ""]
    return "\n".join(out)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.group_matching_bench",
        description=(__doc__ or "").split("\n", 1)[0],
    )
    p.add_argument("--small-sizes", type=ints, default=[12, 20, 30, 40])
    p.add_argument("--seeds", type=int, default=20, help="instances per small size (20)")
    p.add_argument("--exact-time-limit", type=float, default=10.0, help="CP-SAT s per instance")
    p.add_argument("--heuristic-repeats", type=int, default=3)
    p.add_argument("--key-sizes", type=ints, default=[81, 160], help="one key (81, 160)")
    p.add_argument("--key-instances", type=int, default=10)
    p.add_argument("--key-time-limit", type=float, default=10.0, help="CP-SAT s per key")
    p.add_argument("--scale-sizes", type=ints, default=[1_000, 10_000, 100_000])
    p.add_argument("--repeats", type=int, default=3, help="scale repetitions (3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--skip-small", action="store_true")
    p.add_argument("--skip-keys", action="store_true")
    p.add_argument("--skip-scale", action="store_true")
    p.add_argument("--quick", action="store_true", help="smoke run, ~20 s")
    p.add_argument("--output", type=Path, default=None, help="a path, or '-' for none")
    args = p.parse_args(argv)
    if args.quick:
        args.small_sizes, args.seeds, args.exact_time_limit = [12, 20], 3, 5.0
        args.key_sizes, args.key_instances, args.key_time_limit = [81], 1, 5.0
        args.scale_sizes, args.repeats = [1000, 10000], 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = matching_v1()
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    loads: dict[str, str] = {}
    small: list[SmallRun] = []
    keys: list[KeyRun] = []
    scale: list[ScaleRun] = []
    if not args.skip_small:
        loads["small"] = load()
        print(f"small instances (load {loads['small']}) ...", flush=True)
        small = run_small(
            args.small_sizes,
            args.seeds,
            args.seed,
            args.exact_time_limit,
            args.heuristic_repeats,
            config,
        )
    if not args.skip_keys:
        loads["keys"] = load()
        print(f"one key (load {loads['keys']}) ...", flush=True)
        keys = run_keys(args.key_sizes, args.key_instances, args.seed, args.key_time_limit, config)
    if not args.skip_scale:
        loads["scale"] = load()
        print(f"scale (load {loads['scale']}) ...", flush=True)
        scale = run_scale(args.scale_sizes, args.seed, args.repeats, config)
    text = render(
        small, keys, scale, loads, args, git_state(), started, time.perf_counter() - t0, config
    )
    write_results(text, args.output, "group-matching", started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
