"""The widest local-search move: form one new cohort around waiting candidates, taking seats
given up by cohorts above their minimum when the waitlist alone is too short."""

from __future__ import annotations

from services.group_matching.domain.matching.config import MINUTES_PER_DAY
from services.group_matching.domain.matching.key_matcher import EPS, Group, KeyMatcher


def repair(km: KeyMatcher, groups: list[Group], where: list[int], cur: list[float]) -> bool:
    """Form one new cohort around waiting candidates, taking seats given up by cohorts
    above their minimum when the waitlist alone is too short; the best gain wins."""
    cfg = km.cfg
    mn, mx = cfg.min_size, cfg.max_size
    waiting = [i for i in range(km.n) if where[i] < 0]
    if not waiting:
        return False
    spare = {h: len(g.members) - g.floor for h, g in enumerate(groups)}
    donors = [i for i in range(km.n) if where[i] >= 0 and spare[where[i]] > 0]
    if len(waiting) + len(donors) < mn:
        return False
    slots = sorted({s for i in waiting for s in km.starts_for(km.om[i])})
    labels = sorted({(km.drug[i], km.dz[i]) for i in waiting})
    lo, hi, mid, kt, om, base = km.lo, km.hi, km.mid, km.kt, km.om, km.base
    w_drug, w_dz = km.w.same_drug, km.w.same_diazepam_status
    best_gain, best_plan = EPS, None
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
                    -(t + (w_drug if km.drug[i] == drug else 0.0))
                    - (w_dz if km.dz[i] == dz else 0.0),
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
                        - (w_drug if km.drug[i] == drug else 0.0)
                        - (w_dz if km.dz[i] == dz else 0.0),
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
    g = Group(None, s, drug, dz, mx, mn, [])
    g.center = km.center_of(s)
    h = len(groups)
    groups.append(g)
    for i in chosen:
        if where[i] >= 0:
            groups[where[i]].members.remove(i)
        g.members.append(i)
        where[i] = h
        v = km.sc(i, g)
        assert v is not None
        cur[i] = v
    return True
