"""Step 3 of the heuristic: local improvement. Every move strictly improves the objective: move a
candidate into a cohort with room, swap two candidates (or one with the waitlist), re-choose a new
cohort's start and labels, let a waiting candidate take a seat whose holder moves on, and form a
new cohort around waiting candidates (``repair``)."""

from __future__ import annotations

from services.group_matching.domain.matching.config import MINUTES_PER_DAY
from services.group_matching.domain.matching.key_matcher import (
    EPS,
    Group,
    KeyMatcher,
    ceil_to,
    floor_to,
)
from services.group_matching.domain.matching.repair import repair


def improve(km: KeyMatcher, groups: list[Group], where: list[int]) -> float:
    cur = [0.0] * km.n
    for g in groups:
        for i in g.members:
            s = km.sc(i, g)
            assert s is not None
            cur[i] = s
    rounds = 0
    limit = 50 if km.full else 2
    while rounds < limit:
        rounds += 1
        changed = relocate(km, groups, where, cur)
        changed |= swap(km, groups, where, cur)
        changed |= relabel(km, groups, cur)
        if km.full and not changed:
            changed = eject(km, groups, where, cur) or repair(km, groups, where, cur)
        if not changed:
            break
    return sum(cur)


def relocate(km: KeyMatcher, groups: list[Group], where: list[int], cur: list[float]) -> bool:
    """Move a candidate (placed or waiting) into the cohort with room it scores best in."""
    changed = False
    centers = km.centers(groups)
    for i in range(km.n):
        a = where[i]
        if a >= 0 and not km.removable(groups[a]):
            continue
        best_gain, best_h, best_s = EPS, -1, 0.0
        for h in km.targets(i, groups, centers):
            g = groups[h]
            if h == a or len(g.members) >= g.cap:
                continue
            s = km.sc(i, g)
            if s is not None and s - cur[i] > best_gain:
                best_gain, best_h, best_s = s - cur[i], h, s
        if best_h >= 0:
            if a >= 0:
                groups[a].members.remove(i)
            groups[best_h].members.append(i)
            where[i], cur[i] = best_h, best_s
            changed = True
    return changed


def swap(km: KeyMatcher, groups: list[Group], where: list[int], cur: list[float]) -> bool:
    """Exchange two candidates between cohorts, or a waiting one with a placed one."""
    changed = False
    centers = km.centers(groups)
    for i in range(km.n):
        if not km.full and where[i] >= 0:
            continue  # large keys: only the waitlist looks for a seat to swap into
        for h in km.targets(i, groups, centers):
            a = where[i]
            if h == a:
                continue
            g = groups[h]
            s_ih = km.sc(i, g)
            if s_ih is None:
                continue
            best_j, best_sj = _swap_partner(km, i, a, g, s_ih, groups, cur)
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


def _swap_partner(
    km: KeyMatcher,
    i: int,
    a: int,
    g: Group,
    s_ih: float,
    groups: list[Group],
    cur: list[float],
) -> tuple[int, float]:
    """The member of ``g`` whose place ``i`` (from cohort ``a``, or waiting) takes with the best
    gain, and their score in ``a``; ``(-1, 0.0)`` when no exchange gains."""
    best_gain, best_j, best_sj = EPS, -1, 0.0
    for j in g.members:
        if a >= 0:
            s_ja = km.sc(j, groups[a])
            if s_ja is None:
                continue
        else:
            s_ja = 0.0
        gain = s_ih + s_ja - cur[i] - cur[j]
        if gain > best_gain:
            best_gain, best_j, best_sj = gain, j, s_ja
    return best_j, best_sj


def eject(km: KeyMatcher, groups: list[Group], where: list[int], cur: list[float]) -> bool:
    """A waiting candidate takes a seat in a full cohort whose holder moves on to a cohort
    with room (a chain of two moves; neither is an improvement on its own)."""
    open_seats = [h for h, g in enumerate(groups) if len(g.members) < g.cap]
    if not open_seats:
        return False
    changed = False
    for i in range(km.n):
        if where[i] >= 0:
            continue
        best = _best_ejection(km, i, groups, open_seats, cur)
        if best is not None:
            h, j, h2, s_ih, s_j2 = best
            g = groups[h]
            g.members[g.members.index(j)] = i
            groups[h2].members.append(j)
            where[i], where[j] = h, h2
            cur[i], cur[j] = s_ih, s_j2
            changed = True
    return changed


def _best_ejection(
    km: KeyMatcher, i: int, groups: list[Group], open_seats: list[int], cur: list[float]
) -> tuple[int, int, int, float, float] | None:
    """The best chain for waiting ``i``: (cohort h, its member j, j's new cohort h2, i's score
    in h, j's in h2); ``None`` when no chain gains."""
    best_gain, best = EPS, None
    for h, g in enumerate(groups):
        s_ih = km.sc(i, g)
        if s_ih is None:
            continue
        for j in g.members:
            for h2 in open_seats:
                if h2 == h or len(groups[h2].members) >= groups[h2].cap:
                    continue
                s_j2 = km.sc(j, groups[h2])
                if s_j2 is not None and s_ih + s_j2 - cur[j] > best_gain:
                    best_gain, best = s_ih + s_j2 - cur[j], (h, j, h2, s_ih, s_j2)
    return best


def relabel(km: KeyMatcher, groups: list[Group], cur: list[float]) -> bool:
    """Re-choose each new cohort's start, drug and status for its current members."""
    changed = False
    step, mid = km.grid, km.mid
    for g in groups:
        if g.existing or not g.members or tuple(g.members) == g.settled:
            continue
        g.settled = tuple(g.members)
        before = sum(cur[i] for i in g.members)
        # deviations from mid at the current start; every member allows the current start
        devs = sorted((g.slot + km.om[i]) % MINUTES_PER_DAY - mid for i in g.members)
        d_lo = ceil_to(km.lo - mid - devs[0], step)
        d_hi = floor_to(km.hi - mid - devs[-1], step)
        ideal = floor_to(-devs[(len(devs) - 1) // 2], step)
        best_d, best_cost = 0, sum(abs(d) for d in devs)
        for d in (min(max(ideal, d_lo), d_hi), min(max(ideal + step, d_lo), d_hi)):
            cost = sum(abs(x + d) for x in devs)
            if cost < best_cost - EPS:
                best_d, best_cost = d, cost
        old = (g.slot, g.drug, g.dz)
        g.slot = (g.slot + best_d) % MINUTES_PER_DAY
        km.choose_labels(g)
        scores = [km.sc(i, g) for i in g.members]
        after = sum(s for s in scores if s is not None)
        if None in scores or after <= before + EPS:
            g.slot, g.drug, g.dz = old
            continue
        for i, s in zip(g.members, scores, strict=True):
            assert s is not None
            cur[i] = s
        g.center = km.center_of(g.slot)
        changed = True
    return changed
