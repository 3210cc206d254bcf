"""The heuristic (the package docstring describes it): ``match`` splits the candidates by hard key
(language, stage group) and, per key, builds drafts (``sweep`` and ``existing_seats``), improves
each (``local_search``) and keeps the best."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.group_matching.domain.matching.config import (
    InvalidMatchingInput,
    MatchingConfig,
    matching_v1,
)
from services.group_matching.domain.matching.constraints import total_score, validate_inputs
from services.group_matching.domain.matching.existing_seats import fill_existing
from services.group_matching.domain.matching.inputs import (
    Candidate,
    MatchResult,
    NewCohort,
    OpenCohort,
    Placement,
    new_cohort_key,
)
from services.group_matching.domain.matching.key_matcher import EPS, Group, KeyMatcher
from services.group_matching.domain.matching.local_search import improve
from services.group_matching.domain.matching.sweep import sweep


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
    validate_inputs(cands, opens, config)

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
        solved = solve(KeyMatcher(members, cohorts, config, now))
        for group in solved:
            ids = tuple(sorted((members[i].patient_id for i in group.members), key=lambda u: u.int))
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


def solve(km: KeyMatcher) -> list[Group]:
    """Large keys: one construction. Small keys: every cut, mixed or drug-first, new or
    existing cohorts first; each distinct construction is improved and the best kept."""
    if not km.full or km.n < km.cfg.min_size:
        # one draft: existing cohorts first, their empty seats to their best-suited
        # candidates (too few for a new cohort, or too many for more drafts)
        groups, where = construct(km, km.cut, drug_first=False, existing_first=True)
        improve(km, groups, where)
        return groups
    drafts: dict[tuple[tuple[int, ...], ...], tuple[list[Group], list[int]]] = {}
    pure = any(sum(1 for d in km.drug if d == drug) >= km.cfg.min_size for drug in set(km.drug))
    for cut in km.cuts():
        # drug-first differs from mixed only if some drug can fill a cohort on its own
        for drug_first in (False, True) if pure else (False,):
            for existing_first in (False, True) if km.opens else (False,):
                groups, where = construct(
                    km, cut, drug_first=drug_first, existing_first=existing_first
                )
                signature = tuple(tuple(sorted(g.members)) for g in groups)
                drafts.setdefault(signature, (groups, where))
    best: tuple[float, list[Group]] | None = None
    for groups, where in drafts.values():
        total = improve(km, groups, where)
        if best is None or total > best[0] + EPS:
            best = (total, groups)
    assert best is not None
    return best[1]


def construct(
    km: KeyMatcher, cut: int, *, drug_first: bool, existing_first: bool
) -> tuple[list[Group], list[int]]:
    groups = km.existing_groups()
    where = [-1] * km.n
    if existing_first:
        fill_existing(km, groups, where)
    pool = [i for i in range(km.n) if where[i] < 0]
    formed: list[Group] = []
    if drug_first:
        # same-drug cohorts first (full drug points), then whoever is left, mixed
        for drug in sorted({km.drug[i] for i in pool}):
            formed += sweep(km, [i for i in pool if km.drug[i] == drug], cut)
        taken = {i for g in formed for i in g.members}
        pool = [i for i in pool if i not in taken]
    formed += sweep(km, pool, cut)
    for g in formed:
        for i in g.members:
            where[i] = len(groups)
        groups.append(g)
    fill_existing(km, groups, where)
    return groups, where
