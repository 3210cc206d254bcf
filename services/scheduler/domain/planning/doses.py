"""Which doses a patient can make from the products on file, and rounding to them.

A dose is *makeable* when it is a sum of the amounts the products give: a tablet's strength,
half a scored tablet (never quarters), or any multiple of a liquid's measurable amount
(concentration x the smallest volume the measuring device measures). Pure integer arithmetic on
the scaled amounts: no floats.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import ROUND_CEILING, Decimal
from functools import cache
from math import gcd

from services.scheduler.domain.planning.reference import Formulation

ZERO = Decimal(0)


def units_of(formulations: Iterable[Formulation]) -> tuple[Decimal, ...]:
    """Distinct amounts one piece of any product gives, smallest first."""
    return tuple(sorted({u.normalize() for f in formulations for u in f.units_mg if u > 0}))


def grid_unit(formulations: Iterable[Formulation]) -> Decimal:
    """The smallest amount the products give; every whole multiple of it is makeable."""
    units = units_of(formulations)
    if not units:
        raise ValueError("no formulation on file")
    return units[0]


def _scale(values: Sequence[Decimal]) -> int:
    exponent = min(int(v.normalize().as_tuple().exponent) for v in values)
    return 10 ** max(0, -exponent)


@cache
def _reachable(units: tuple[int, ...], limit: int) -> int:
    """Bitset of the sums (0..limit) of any number of each unit (unbounded coin problem)."""
    mask = (1 << (limit + 1)) - 1
    reach = 1
    for unit in units:
        shift = unit
        while shift <= limit:  # doubling: after k rounds, 0..2**k - 1 copies of the unit
            reach = (reach | (reach << shift)) & mask
            shift *= 2
    return reach


def makeable(dose: Decimal, formulations: Iterable[Formulation]) -> bool:
    """True when ``dose`` (mg) can be made from the products; zero always can."""
    if dose < 0:
        return False
    if dose == 0:
        return True
    units = units_of(formulations)
    if not units:
        return False
    scale = _scale((*units, dose))
    ints = [int(u * scale) for u in units]
    target = dose * scale
    if target != target.to_integral_value():
        return False
    n = int(target)
    g = 0
    for i in ints:
        g = gcd(g, i)
    if n % g:
        return False
    scaled = tuple(sorted({i // g for i in ints}))
    if scaled[0] == 1:
        return True
    return bool(_reachable(scaled, n // g) >> (n // g) & 1)


def round_to_makeable(
    target: Decimal, formulations: Iterable[Formulation], *, not_above: Decimal | None = None
) -> Decimal:
    """The makeable dose nearest ``target`` (ties: the higher), never above ``not_above``.

    Searches the grid of the smallest unit and the other products' sums; returns zero when
    nothing makeable lies at or below the ceiling.
    """
    forms = tuple(formulations)
    step = _fine_step(forms)
    ceiling = not_above if not_above is not None else max(target, ZERO) + max(units_of(forms))
    below = (min(max(target, ZERO), ceiling) // step) * step
    while below > 0 and not makeable(below, forms):
        below -= step
    above: Decimal | None = None
    probe = below + step
    while probe <= ceiling:
        if makeable(probe, forms):
            above = probe
            break
        probe += step
    if above is None or (target - below) < (above - target):
        return max(below, ZERO)
    return above


def _fine_step(forms: Sequence[Formulation]) -> Decimal:
    units = units_of(forms)
    scale = _scale(units)
    g = 0
    for u in units:
        g = gcd(g, int(u * scale))
    return Decimal(g) / scale


def lower_by_notches(
    administrations: Sequence[Decimal], unit: Decimal, notches: int
) -> tuple[Decimal, ...]:
    """Lower the largest administration one ``unit`` at a time (ties: the earliest in the day).

    The last administration of the day is therefore lowered last. An administration that is not
    a whole multiple of ``unit`` (made, say, from another tablet's half) first drops to the
    multiple below it. Every result is a whole multiple of ``unit`` or an untouched input.
    """
    doses = list(administrations)
    if all(d % unit == 0 for d in doses):
        return _water_fill(doses, unit, notches)
    for _ in range(notches):
        if not any(doses):
            break
        i = max(range(len(doses)), key=lambda j: (doses[j], -j))
        lowered = (doses[i] // unit) * unit
        doses[i] = lowered - unit if lowered == doses[i] else lowered
    return tuple(doses)


def _water_fill(doses: list[Decimal], unit: Decimal, notches: int) -> tuple[Decimal, ...]:
    counts = [int(d / unit) for d in doses]
    notches = min(notches, sum(counts))
    if notches <= 0:
        return tuple(doses)
    # Find the level L: every count above L is cut to L, then `rest` more notches come off
    # counts sitting at L, earliest first.
    levels = sorted(set(counts), reverse=True)
    level = levels[0]
    for nxt in [*levels[1:], 0]:
        cost = sum(c - nxt for c in counts if c > nxt)
        if cost > notches:
            break
        level = nxt
    taken = sum(c - level for c in counts if c > level)
    rest = notches - taken
    if rest:
        width = sum(1 for c in counts if c >= level)  # all of these now sit at `level`
        full, rest = divmod(rest, width)
        level -= full
    out = []
    for c in counts:
        n = min(c, level)
        if c >= level and rest and n > 0:
            n -= 1
            rest -= 1
        out.append(n * unit)
    return tuple(out)


# --- the gentlest makeable cut, from every combination of the products on file ----------------
def lower_to(
    administrations: Sequence[Decimal],
    formulations: Iterable[Formulation],
    target: Decimal,
    *,
    gentlest: bool = False,
) -> tuple[Decimal, ...] | None:
    """The day's doses with the smallest daily total at or above ``target`` that is still below
    today's, each administration lowered or kept and each makeable from any combination of the
    products (halves of scored tablets, liquid measures); None when no such dose exists.

    When every product is a whole multiple of the smallest, the doses are lowered notch by notch
    (``lower_by_notches``: the largest first, the last of the day last). Otherwise (oxazepam
    10/15 mg: 20 -> 15 mg) the whole set of reachable totals is searched; of the splits giving
    the chosen total, the one with the lowest largest administration is taken, the later
    administrations kept highest. ``gentlest``: the largest total below today's instead (the
    smallest makeable cut), still at or above ``target``.
    """
    doses = tuple(administrations)
    forms = tuple(formulations)
    daily = sum(doses, ZERO)
    if target >= daily:
        return None
    unit = grid_unit(forms)
    if _fine_step(forms) == unit and all(d % unit == 0 for d in doses):
        notches = int((daily - max(target, ZERO)) // unit)
        if notches <= 0:
            return None
        return lower_by_notches(doses, unit, 1 if gentlest else notches)
    return _search(doses, forms, target, gentlest)


def _search(
    doses: tuple[Decimal, ...], forms: tuple[Formulation, ...], target: Decimal, gentlest: bool
) -> tuple[Decimal, ...] | None:
    step = _fine_step(forms)
    ns = [int(d / step) for d in doses]  # every makeable dose is a multiple of the fine step
    scaled_units = tuple(sorted({int(u / step) for u in units_of(forms)}))
    single = _reachable(scaled_units, max(ns))  # bit n: n x step is makeable in one dose
    daily = sum(ns)
    low = int((max(target, ZERO) / step).to_integral_value(rounding=ROUND_CEILING))
    if low >= daily:
        return None

    def totals(cap: int) -> list[int]:
        """Bitsets of the reachable totals of the first i administrations, each <= cap."""
        out = [1]
        for n in ns:
            allowed = single & ((1 << (min(n, cap) + 1)) - 1)
            acc = 0
            bits = allowed
            while bits:
                v = bits.bit_length() - 1
                acc |= out[-1] << v
                bits &= ~(1 << v)
            out.append(acc)
        return out

    full = totals(max(ns))[-1]
    window = (full >> low) & ((1 << (daily - low)) - 1)
    if not window:
        return None
    # the smallest reachable total >= target (the cut nearest the aim), or the largest below today
    pick = window.bit_length() - 1 if gentlest else (window & -window).bit_length() - 1
    total = low + pick
    caps = sorted({v for v in range(max(ns) + 1) if single >> v & 1})
    lo, hi = 0, len(caps) - 1
    while lo < hi:  # the lowest cap on every administration that still reaches the total
        mid = (lo + hi) // 2
        if totals(caps[mid])[-1] >> total & 1:
            hi = mid
        else:
            lo = mid + 1
    prefix = totals(caps[lo])
    out: list[int] = [0] * len(ns)
    rest = total
    for i in reversed(range(len(ns))):  # the last of the day keeps the most
        v = min(ns[i], caps[lo], rest)
        while not (single >> v & 1 and prefix[i] >> (rest - v) & 1):
            v -= 1
        out[i] = v
        rest -= v
    return tuple(_plain(step * v) for v in out)


def _plain(mg: Decimal) -> Decimal:
    """15.000 -> 15, 0.250 -> 0.25 (never 1E+1)."""
    return mg.quantize(Decimal(1)) if mg == mg.to_integral_value() else mg.normalize()
