"""The widest local-search move: form one new cohort around waiting candidates, taking seats
given up by cohorts above their minimum when the waitlist alone is too short."""

from __future__ import annotations

from dataclasses import dataclass

from services.group_matching.domain.matching.config import MINUTES_PER_DAY
from services.group_matching.domain.matching.key_matcher import EPS, Group, KeyMatcher


def repair(km: KeyMatcher, groups: list[Group], where: list[int], cur: list[float]) -> bool:
    """Form one new cohort around waiting candidates, taking seats given up by cohorts
    above their minimum when the waitlist alone is too short; the best gain wins."""
    mn = km.cfg.min_size
    waiting = [i for i in range(km.n) if where[i] < 0]
    if not waiting:
        return False
    spare = {h: len(g.members) - g.floor for h, g in enumerate(groups)}
    donors = [i for i in range(km.n) if where[i] >= 0 and spare[where[i]] > 0]
    if len(waiting) + len(donors) < mn:
        return False
    slots = sorted({s for i in waiting for s in km.starts_for(km.om[i])})
    labels = sorted({(km.drug[i], km.dz[i]) for i in waiting})
    best_gain, best_plan = EPS, None
    for s in slots:
        joining = _admitted(km, waiting, s)
        giving = []
        if len(joining) < mn:
            giving = _admitted(km, donors, s)
            if len(joining) + len(giving) < mn:
                continue
        for drug, dz in labels:
            found = _best_members(km, _Offer(drug, dz, joining, giving), spare, where, cur)
            if found is not None and found[0] > best_gain:
                best_gain, best_plan = found[0], (s, drug, dz, found[1])
    if best_plan is None:
        return False
    _form(km, groups, where, cur, *best_plan)
    return True


@dataclass(frozen=True)
class _Offer:
    """A new cohort's labels and who its start admits: waiting (``joining``) and placed in a
    cohort above its minimum (``giving``), each with the label-free part of their score."""

    drug: str
    dz: bool
    joining: list[tuple[int, float]]
    giving: list[tuple[int, float]]


def _admitted(km: KeyMatcher, people: list[int], s: int) -> list[tuple[int, float]]:
    """The label-free part of s(i, new cohort at s), for whoever the start admits."""
    lo, hi, mid, kt, om, base = km.lo, km.hi, km.mid, km.kt, km.om, km.base
    admitted = []
    for i in people:
        local = (s + om[i]) % MINUTES_PER_DAY
        if lo <= local <= hi:
            admitted.append((i, base[i] - kt * abs(local - mid)))
    return admitted


def _best_members(
    km: KeyMatcher, offer: _Offer, spare: dict[int, int], where: list[int], cur: list[float]
) -> tuple[float, list[int]] | None:
    """The gain and members of the new cohort ``offer`` describes: the best-scoring waiting
    candidates, topped up to the minimum with the seats that cost their holders least;
    ``None`` when it cannot reach the minimum."""
    w_drug, w_dz = km.w.same_drug, km.w.same_diazepam_status
    drug, dz = offer.drug, offer.dz
    scored = sorted(
        (
            -(t + (w_drug if km.drug[i] == drug else 0.0)) - (w_dz if km.dz[i] == dz else 0.0),
            i,
        )
        for i, t in offer.joining
    )[: km.cfg.max_size]
    gain = -sum(v for v, _ in scored)
    chosen = [i for _, i in scored]
    if len(chosen) >= km.cfg.min_size:
        return gain, chosen
    losses = sorted(
        (
            cur[i]
            - t
            - (w_drug if km.drug[i] == drug else 0.0)
            - (w_dz if km.dz[i] == dz else 0.0),
            i,
        )
        for i, t in offer.giving
    )
    left = dict(spare)
    for loss, i in losses:
        if len(chosen) >= km.cfg.min_size:
            break
        if left[where[i]] > 0:
            left[where[i]] -= 1
            chosen.append(i)
            gain -= loss
    return (gain, chosen) if len(chosen) >= km.cfg.min_size else None


def _form(
    km: KeyMatcher,
    groups: list[Group],
    where: list[int],
    cur: list[float],
    s: int,
    drug: str,
    dz: bool,
    chosen: list[int],
) -> None:
    """Form the new cohort at start ``s``; members who held a seat give it up."""
    g = Group(None, s, drug, dz, km.cfg.max_size, km.cfg.min_size, [])
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
