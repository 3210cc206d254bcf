"""Step 1 of the heuristic: the sweep. Candidates in round-the-clock order are cut into runs of
``min_size..max_size`` consecutive members (or skipped) by a dynamic programme that maximises
the exact score of each run as a new cohort. ``O(n * max_size)`` after an ``O(n log n)`` sort."""

from __future__ import annotations

from bisect import bisect_right

from services.group_matching.domain.matching.config import MINUTES_PER_DAY
from services.group_matching.domain.matching.key_matcher import EPS, Group, KeyMatcher


def sweep(km: KeyMatcher, pool: list[int], cut: int) -> list[Group]:
    """Best partition of ``pool`` (in round-the-clock order from ``cut``) into consecutive
    new cohorts, skipping whoever fits none; exact score of each run as a new cohort."""
    if len(pool) < km.cfg.min_size:
        return []
    return _Sweep(km, pool, cut).groups()


class _Sweep:
    """The sweep's order, its prefix sums and the dynamic programme over it."""

    def __init__(self, km: KeyMatcher, pool: list[int], cut: int) -> None:
        self.km = km
        uo = {i: cut + (km.om[i] - cut) % MINUTES_PER_DAY for i in pool}
        order = sorted(pool, key=lambda i: (uo[i], km.drug[i], km.dz[i], -km.base[i], i))
        self.order = order
        n = self.n = len(order)
        self.u = [uo[i] for i in order]
        self.drug_of = [km.drug[i] for i in order]
        self.pu = pu = [0] * (n + 1)  # prefix sums of unwrapped offsets,
        self.pb = pb = [0.0] * (n + 1)  # of the label-free scores,
        self.pz = pz = [0] * (n + 1)  # of members on diazepam
        for k, i in enumerate(order):
            pu[k + 1] = pu[k] + self.u[k]
            pb[k + 1] = pb[k] + km.base[i]
            pz[k + 1] = pz[k] + km.dz[i]

    def deviation(self, j: int, i: int, s: int) -> float:
        # sum over the run of |local start - mid| = sum |u_p - (mid - s)|, by prefix sums
        pu = self.pu
        t = self.km.mid - s
        m = bisect_right(self.u, t, j, i)
        return (t * (m - j) - (pu[m] - pu[j])) + ((pu[i] - pu[m]) - t * (i - m))

    def groups(self) -> list[Group]:
        n = self.n
        dp = [0.0] * (n + 1)
        take = [0] * (n + 1)
        slot_at = [0] * (n + 1)
        for i in range(1, n + 1):
            dp[i], take[i], slot_at[i] = self.best_run_ending_at(i, dp)
        return self.runs(take, slot_at)

    def best_run_ending_at(self, i: int, dp: list[float]) -> tuple[float, int, int]:
        """The best value of the first ``i`` members, with the length and start of the run that
        ends at member ``i`` (length 0: member ``i`` is skipped)."""
        km = self.km
        cfg, w = km.cfg, km.w
        mn, mx, step = cfg.min_size, cfg.max_size, km.grid
        u, drug_of, pb, pz = self.u, self.drug_of, self.pb, self.pz
        lo, hi, kt = km.lo, km.hi, km.kt
        w_drug, w_dz = w.same_drug, w.same_diazepam_status
        twice_mid, two_steps = lo + hi, 2 * step  # integer arithmetic for grid rounding
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
            s, dev = self.best_start(j, i, ideal, s_lo, s_hi)
            z = pz[i] - pz[j]
            value = pb[i] - pb[j] - kt * dev + w_drug * top + w_dz * (z if 2 * z > k else k - z)
            if dp[j] + value > best + EPS:
                best, best_k, best_s = dp[j] + value, k, s
        return best, best_k, best_s

    def best_start(self, j: int, i: int, ideal: int, s_lo: int, s_hi: int) -> tuple[int, float]:
        """Of the grid starts ``ideal`` and the next one, clamped to ``[s_lo, s_hi]``, the one
        closest to the run's members' middle of the day, with its total deviation."""
        s = s_lo if ideal < s_lo else s_hi if ideal > s_hi else ideal
        dev = self.deviation(j, i, s)
        s2 = ideal + self.km.grid
        s2 = s_lo if s2 < s_lo else s_hi if s2 > s_hi else s2
        if s2 != s:
            dev2 = self.deviation(j, i, s2)
            if dev2 < dev:
                s, dev = s2, dev2
        return s, dev

    def runs(self, take: list[int], slot_at: list[int]) -> list[Group]:
        """The runs the programme chose, in sweep order, as new cohorts."""
        km = self.km
        mn, mx = km.cfg.min_size, km.cfg.max_size
        groups: list[Group] = []
        i = self.n
        while i > 0:
            k = take[i]
            if k == 0:
                i -= 1
                continue
            members = self.order[i - k : i]
            g = Group(None, slot_at[i] % MINUTES_PER_DAY, None, None, mx, mn, members)
            km.choose_labels(g)
            g.center = km.center_of(g.slot)
            groups.append(g)
            i -= k
        groups.reverse()
        return groups
