"""Step 2 of the heuristic: existing cohorts take waiting candidates, best pair first, within
their room."""

from __future__ import annotations

import heapq

from services.group_matching.domain.matching.key_matcher import Group, KeyMatcher


def fill_existing(km: KeyMatcher, groups: list[Group], where: list[int]) -> None:
    """Existing cohorts take waiting candidates, best pair first, within their room.

    Look-alikes (same offset, drug and status) differ only in waiting points, so pairs are
    kept per (cohort, look-alike type) in a heap keyed by the type's longest-waiting free
    member: ``O(cohorts * types * log)`` instead of ``O(cohorts * candidates)``."""
    existing = [h for h, g in enumerate(groups) if g.existing and len(g.members) < g.cap]
    if not existing:
        return
    queues = _lookalike_queues(km, where)
    heads = [0] * len(queues)  # next free member of each type
    heap = _first_offers(km, groups, existing, queues)
    heapq.heapify(heap)

    def offer_next(h: int, t: int) -> None:
        # the type's next free member to cohort h (look-alikes are allowed in the same cohorts)
        s = km.sc(queues[t][heads[t]], groups[h])
        assert s is not None
        heapq.heappush(heap, (-s, h, t, heads[t]))

    while heap:
        _, h, t, at = heapq.heappop(heap)
        g = groups[h]
        if len(g.members) >= g.cap:
            continue
        q = queues[t]
        if at != heads[t]:  # that member is taken: offer the type's next one
            if heads[t] < len(q):
                offer_next(h, t)
            continue
        i = q[at]
        g.members.append(i)
        where[i] = h
        heads[t] += 1
        if heads[t] < len(q) and len(g.members) < g.cap:
            offer_next(h, t)


def _first_offers(
    km: KeyMatcher, groups: list[Group], existing: list[int], queues: list[list[int]]
) -> list[tuple[float, int, int, int]]:
    """Each existing cohort with room paired with each type's longest-waiting member."""
    heap = []
    for h in existing:
        for t, q in enumerate(queues):
            s = km.sc(q[0], groups[h])
            if s is not None:
                heap.append((-s, h, t, 0))
    return heap


def _lookalike_queues(km: KeyMatcher, where: list[int]) -> list[list[int]]:
    """Waiting candidates by look-alike type, each type longest-waiting first."""
    kinds: dict[tuple[int, str, bool], list[int]] = {}
    for i in range(km.n):
        if where[i] < 0:
            kinds.setdefault((km.om[i], km.drug[i], km.dz[i]), []).append(i)
    return [sorted(q, key=lambda i: (-km.base[i], i)) for _, q in sorted(kinds.items())]
