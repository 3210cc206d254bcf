"""The exact cohort matcher (OR-Tools CP-SAT) that the heuristic in
``services.group_matching.domain.matching`` is measured against. Test/benchmark code only: the
service never imports OR-Tools.

It maximises the same objective, ``total_score``, over every cohort the heuristic could form.
Hard keys (language, stage group) share no patient and no cohort, so each key is its own model.

* **Types.** Patients of a key with the same UTC offset, drug and diazepam status score alike in
  every cohort except for an additive per-patient term (waiting). So the model counts, per type,
  how many go where (integers ``n[t, c]``), and the ``N_t`` placed ones are the type's top ``N_t``
  by that term (booleans ``u[t, k]``, ``u[t, k] >= u[t, k+1]``). This removes the symmetry
  between look-alike patients, which otherwise stops CP-SAT proving optimality in seconds. The
  additivity is checked on every allowed pair, never assumed.
* **New cohorts.** An *option* is (grid start, drug, diazepam status) with the key's drugs and
  statuses (other labels, and ``None``, score no more for anyone). ``y[o] >= 0`` counts the
  cohorts opened with option o: ``min * y[o] <= sum_t n[t, o] <= max * y[o]``; members of
  same-option cohorts score the same, so they can be dealt into ``y[o]`` cohorts of legal size.
  Starts are limited to those an optimal cohort can have: for fixed members the session points
  are a concave piecewise-linear function of the start over the (single) arc every member
  allows, so the best grid start is a grid neighbour of some member's ideal start or the first
  or last start some member allows. No optimum is lost.
* **Cuts** the LP relaxation lacks (both valid for integers): a key of n patients opens at most
  ``n // min`` cohorts, and ``n[t, o] <= size(t) * y[o]``. Without them a fractional ``y`` lets
  every patient have a cohort labelled just for them, and proofs take minutes.
* **Existing cohorts**: ``sum_t n[t, e] <= room(e)``.

Scores are floats; CP-SAT needs integers, so each coefficient is multiplied by ``SCALE`` (1000)
and rounded. Rounding moves a patient's score by at most 0.001 points, so the integer optimum is
optimal for the float objective up to 0.001 per placed patient (a placement is worth 60).
Results are re-scored with ``total_score`` before they are compared.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ortools.sat.python import cp_model

from services.group_matching.domain.matching import (
    MINUTES_PER_DAY,
    Candidate,
    CohortLike,
    MatchingConfig,
    MatchResult,
    NewCohort,
    OpenCohort,
    Placement,
    new_cohort_key,
    score_pair,
    total_score,
)

SCALE = 1000


@dataclass(frozen=True)
class ExactSolution:
    result: MatchResult
    optimal: bool  # CP-SAT proved every key optimal (else: best found within the time limit)
    seconds: float  # model building and solving, wall clock
    solver_seconds: float  # CP-SAT's own wall time, summed over keys
    bound: float  # CP-SAT's proven upper bound on the objective (the optimum when optimal)


def solve_exact(
    candidates: Sequence[Candidate],
    open_cohorts: Sequence[OpenCohort],
    config: MatchingConfig,
    now: datetime,
    *,
    time_limit_s: float = 10.0,
    workers: int = 1,
) -> ExactSolution:
    started = time.perf_counter()
    cands = sorted(candidates, key=lambda c: c.patient_id)
    opens = sorted(open_cohorts, key=lambda o: o.cohort_id)
    keys: dict[tuple[str, str], list[Candidate]] = {}
    for c in cands:
        keys.setdefault((c.language, config.stage_group(c.stage)), []).append(c)
    placements: list[Placement] = []
    new_cohorts: list[NewCohort] = []
    optimal, solver_seconds, bound = True, 0.0, 0.0
    for (language, stage_group), members in sorted(keys.items()):
        key_opens = [o for o in opens if (o.language, o.stage_group) == (language, stage_group)]
        placed, formed, proved, spent, key_bound = _solve_key(
            members, key_opens, language, stage_group, config, now, time_limit_s, workers
        )
        placements += placed
        new_cohorts += formed
        optimal &= proved
        solver_seconds += spent
        bound += key_bound
    done = {p.patient_id for p in placements}
    draft = MatchResult(
        tuple(sorted(placements, key=lambda p: p.patient_id)),
        tuple(sorted(new_cohorts, key=lambda n: n.key)),
        tuple(c.patient_id for c in cands if c.patient_id not in done),
        0.0,
    )
    score = total_score(draft, cands, opens, config, now)
    return ExactSolution(
        result=MatchResult(draft.placements, draft.new_cohorts, draft.waiting, score),
        optimal=optimal,
        seconds=time.perf_counter() - started,
        solver_seconds=solver_seconds,
        bound=bound,
    )


def _useful_minutes(offsets: set[int], config: MatchingConfig) -> list[int]:
    """The grid starts an optimal new cohort can have (see the module docstring)."""
    lo, hi, step = config.earliest_start, config.latest_start, config.grid_minutes
    mid = (lo + hi) / 2
    kept: set[int] = set()
    for off in offsets:
        ideal = mid - off
        earliest = -(-(lo - off) // step) * step
        latest = (hi - off) // step * step
        floor = int(ideal // step) * step
        kept |= {earliest, latest, floor, floor + step} if earliest <= latest else set()
    return sorted({m % MINUTES_PER_DAY for m in kept})


def _solve_key(
    members: list[Candidate],
    opens: list[OpenCohort],
    language: str,
    stage_group: str,
    config: MatchingConfig,
    now: datetime,
    time_limit_s: float,
    workers: int,
) -> tuple[list[Placement], list[NewCohort], bool, float, float]:
    types: dict[tuple[int, str, bool], list[Candidate]] = {}
    for c in members:
        types.setdefault((c.utc_offset_minutes, c.drug, c.on_diazepam), []).append(c)
    cohorts: list[CohortLike] = list(opens)
    if len(members) >= config.min_size:
        drugs = sorted({c.drug for c in members})
        statuses = sorted({c.on_diazepam for c in members})
        for minute in _useful_minutes({off for off, _, _ in types}, config):
            for drug in drugs:
                for status in statuses:
                    cohorts.append(NewCohort("", stage_group, language, minute, drug, status, ()))

    model = cp_model.CpModel()
    objective: list[tuple[cp_model.IntVar, int]] = []
    counts: dict[tuple[int, int], cp_model.IntVar] = {}  # (type index, cohort index) -> n
    ranked: list[list[tuple[float, Candidate]]] = []
    for t, group in enumerate(types.values()):
        rep = group[0]
        scores = [score_pair(rep, cohort, config, now) for cohort in cohorts]
        # the per-patient extra (waiting) must be the same in every cohort the type may join
        extras: list[tuple[float, Candidate]] = []
        for c in group:
            diffs = set()
            for cohort, base in zip(cohorts, scores, strict=True):
                s = score_pair(c, cohort, config, now)
                if (s is None) != (base is None):
                    raise AssertionError("look-alike patients differ on a hard constraint")
                if s is not None and base is not None:
                    diffs.add(round(s - base, 6))
            if len(diffs) > 1:
                raise AssertionError("the objective is not additive per patient within a type")
            extras.append((diffs.pop() if diffs else 0.0, c))
        extras.sort(key=lambda e: (-e[0], e[1].patient_id))
        ranked.append(extras)
        placed_t = []
        for k, base in enumerate(scores):
            if base is None:
                continue
            most = len(group) if k >= len(opens) else min(len(group), opens[k].room)
            if most == 0:
                continue
            n = model.new_int_var(0, most, "")
            counts[(t, k)] = n
            placed_t.append(n)
            objective.append((n, round(base * SCALE)))
        if not placed_t:
            continue
        ranks = [model.new_bool_var("") for _ in group]
        model.add(sum(ranks) == sum(placed_t))
        for k in range(len(ranks) - 1):
            model.add_implication(ranks[k + 1], ranks[k])
        objective.extend(
            (r, round(extra * SCALE)) for r, (extra, _) in zip(ranks, extras, strict=True)
        )

    opened: dict[int, cp_model.IntVar] = {}
    for k in range(len(cohorts)):
        ns = [(t, n) for (t, kk), n in counts.items() if kk == k]
        if not ns:
            continue
        total = sum(n for _, n in ns)
        if k < len(opens):
            model.add(total <= opens[k].room)
            continue
        admitted = sum(len(ranked[t]) for t, _ in ns)
        y = model.new_int_var(0, admitted // config.min_size, "")
        model.add(total >= config.min_size * y)
        model.add(total <= config.max_size * y)
        for t, n in ns:
            # valid (n <= c_t, and n = 0 when y = 0) and strong: a patient alone in their type
            # cannot be spread over several fractionally opened options in the LP relaxation
            model.add(n <= len(ranked[t]) * y)
        opened[k] = y
    if opened:
        # a valid cut the LP relaxation lacks: a key of n patients opens at most n // min cohorts
        model.add(sum(opened.values()) <= len(members) // config.min_size)
    model.maximize(sum(coef * v for v, coef in objective))

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = workers
    # Level 2 adds the linear relaxation of every constraint to the LP; on these models it
    # turns proofs that took 10-30 s (or timed out) into tenths of a second.
    solver.parameters.linearization_level = 2
    outcome = solver.solve(model)
    if outcome not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise RuntimeError(f"CP-SAT found no solution: {solver.status_name(outcome)}")

    # the placed ones of each type are its best-ranked; hand them out cohort by cohort
    takers: dict[int, list[uuid.UUID]] = {}
    for t, extras in enumerate(ranked):
        queue = [c.patient_id for _, c in extras]
        for k in range(len(cohorts)):
            var = counts.get((t, k))
            if var is not None and (v := solver.value(var)):
                takers.setdefault(k, []).extend(queue[:v])
                del queue[:v]
    placements: list[Placement] = []
    formed: list[NewCohort] = []
    for k, ids in sorted(takers.items()):
        cohort = cohorts[k]
        if k < len(opens):
            placements += [Placement(pid, cohort_id=opens[k].cohort_id) for pid in ids]
            continue
        parts = int(solver.value(opened[k]))
        for part in range(parts):
            chunk = tuple(sorted(ids[part::parts]))  # balanced sizes, hence legal ones
            key = new_cohort_key(chunk)
            formed.append(
                NewCohort(
                    key,
                    stage_group,
                    language,
                    cohort.session_utc_minute,
                    cohort.drug,
                    cohort.on_diazepam,
                    chunk,
                )
            )
            placements += [Placement(pid, new_cohort_key=key) for pid in chunk]
    # scaled integers back to points, plus the rounding slack of the placed (see above)
    upper = solver.best_objective_bound / SCALE + 0.001 * len(members)
    return placements, formed, outcome == cp_model.OPTIMAL, solver.wall_time, upper
