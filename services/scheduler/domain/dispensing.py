"""What the pharmacy dispenses for a plan (issue 13, item 14): pieces per dose, fills, totals.

A stored step keeps each administration's dose in mg, not which products make it, so the
composition is computed from the products on file with one deterministic rule (``compose``):
the fewest mg from a liquid, then the fewest pieces, then the fewest halves; among equals the
larger strength first (the products' order, largest first, decides). Every composition sums
exactly to the dose or the dose is refused (``DispensingError`` naming ``formulations``).

Fills (``fills``): consecutive windows of ``fill_days`` from the first step; each covers
``covers_from..covers_to`` inclusive. The plan's horizon ends the day before a final 0 mg
step; a plan that ends on a dose (maintenance, or stopped for a missing product) is covered
one fill period past its last step, since the patient stays on that dose until the plan changes.

Per fill and product: whole and half tablets taken on the fill's days, dispensed as whole
tablets (halves rounded up: at most one tablet over); a liquid in mL, rounded up to a whole mL
(at most 1 mL over). Pure integer/Decimal arithmetic; no floats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal
from functools import cache
from math import gcd

from services.scheduler.domain.model import Administration, TaperRuleViolation
from services.scheduler.domain.planning import Formulation, PlannedStep

FILL_DAYS_MIN = 7
FILL_DAYS_MAX = 90
# A dose this many grid units or more is refused rather than searched (a runaway input guard).
_MAX_GRID = 200_000


class DispensingError(TaperRuleViolation):
    """The plan cannot be dispensed as asked; ``field`` names the input (never its value)."""


@dataclass(frozen=True)
class Piece:
    """``count`` of one product in one administration: whole tablets, half tablets, or mL."""

    code: str
    form: str  # "tablet" | "half_tablet" | "liquid"
    count: int  # tablets or halves; for a liquid, measuring increments
    mg_each: Decimal
    ml_each: Decimal | None = None  # liquids: the increment's volume

    @property
    def mg(self) -> Decimal:
        return self.mg_each * self.count


@dataclass(frozen=True)
class FillItem:
    code: str
    drug: str
    form: str  # "tablet" | "liquid"
    strength_mg: Decimal | None  # tablets
    concentration_mg_per_ml: Decimal | None  # liquids
    whole_tablets_taken: int
    half_tablets_taken: int
    ml_taken: Decimal
    dispense_tablets: int  # whole tablets to hand over (halves rounded up)
    dispense_ml: Decimal  # whole mL to hand over (rounded up)
    mg_taken: Decimal

    @property
    def unit(self) -> str:
        return "tablet" if self.form == "tablet" else "mL"

    @property
    def quantity(self) -> Decimal:
        return Decimal(self.dispense_tablets) if self.form == "tablet" else self.dispense_ml


@dataclass(frozen=True)
class Fill:
    fill_number: int
    covers_from: date
    covers_to: date
    items: tuple[FillItem, ...]

    @property
    def days(self) -> int:
        return (self.covers_to - self.covers_from).days + 1


def _scale(values: Sequence[Decimal]) -> int:
    exponent = min(int(v.normalize().as_tuple().exponent) for v in values)
    return 10 ** max(0, -exponent)


def _coins(forms: Sequence[Formulation]) -> tuple[tuple[Formulation, str, Decimal], ...]:
    """(product, form, mg) for each amount one piece gives, larger strengths first."""
    ordered = sorted(forms, key=lambda f: (f.kind != "tablet", -max(f.units_mg), f.code))
    out: list[tuple[Formulation, str, Decimal]] = []
    for f in ordered:
        if f.kind == "liquid":
            out.append((f, "liquid", f.units_mg[0]))
            continue
        assert f.strength_mg is not None
        out.append((f, "tablet", f.strength_mg))
        if f.scored:
            out.append((f, "half_tablet", f.strength_mg / 2))
    return tuple(out)


def compose(dose_mg: Decimal, forms: Sequence[Formulation]) -> tuple[Piece, ...]:
    """The pieces that make ``dose_mg`` from ``forms`` (one drug's products on file)."""
    return _compose(dose_mg.normalize(), tuple(sorted(forms, key=lambda f: f.code)))


@cache
def _compose(dose: Decimal, forms: tuple[Formulation, ...]) -> tuple[Piece, ...]:
    if dose == 0:
        return ()
    coins = _coins(forms)
    if dose < 0 or not coins:
        raise DispensingError("formulations", "no product on file makes this dose")
    scale = _scale([dose, *(c[2] for c in coins)])
    ints = [int(c[2] * scale) for c in coins]
    target_scaled = dose * scale
    g = 0
    for i in ints:
        g = gcd(g, i)
    target = int(target_scaled)
    if target_scaled != target or target % g:
        raise DispensingError("formulations", "no product on file makes this dose")
    n = target // g
    if n > _MAX_GRID:
        raise DispensingError("formulations", "the dose is too large to compose")
    units = [i // g for i in ints]
    # cost: (liquid grid units, pieces, halves) — lexicographic, additive, so the DP is exact.
    costs = [
        (u, 0, 0) if form == "liquid" else (0, 1, 1 if form == "half_tablet" else 0)
        for (_, form, _), u in zip(coins, units, strict=True)
    ]
    best: list[tuple[int, int, int] | None] = [None] * (n + 1)
    choice = [-1] * (n + 1)
    best[0] = (0, 0, 0)
    for amount in range(1, n + 1):
        for k, u in enumerate(units):
            if u > amount:
                continue
            prev = best[amount - u]
            if prev is None:
                continue
            c = costs[k]
            cand = (prev[0] + c[0], prev[1] + c[1], prev[2] + c[2])
            cur = best[amount]
            if cur is None or cand < cur:  # strict: the first (larger) product wins ties
                best[amount], choice[amount] = cand, k
    if best[n] is None:
        raise DispensingError("formulations", "no product on file makes this dose")
    counts = [0] * len(coins)
    amount = n
    while amount:
        k = choice[amount]
        counts[k] += 1
        amount -= units[k]
    pieces = []
    for (f, form, mg_each), count in zip(coins, counts, strict=True):
        if count:
            pieces.append(
                Piece(
                    code=f.code,
                    form=form,
                    count=count,
                    mg_each=mg_each,
                    ml_each=f.increment_ml if form == "liquid" else None,
                )
            )
    return tuple(pieces)


def compose_day(
    administrations: Sequence[Administration], forms: Sequence[Formulation]
) -> tuple[tuple[Piece, ...], ...]:
    """Each administration's pieces, from the products on file for its drug."""
    return tuple(
        compose(a.dose_mg, [f for f in forms if f.drug == a.drug]) for a in administrations
    )


def horizon(steps: Sequence[PlannedStep], fill_days: int) -> tuple[date, date] | None:
    """The first and last day a plan's fills cover (None: nothing to dispense)."""
    if not steps:
        return None
    first, last = steps[0], steps[-1]
    if last.daily_dose_mg == 0:
        end = last.effective_on - timedelta(days=1)
    else:
        end = last.effective_on + timedelta(days=fill_days - 1)
    return (first.effective_on, end) if end >= first.effective_on else None


def check_fill_days(fill_days: int) -> None:
    if not FILL_DAYS_MIN <= fill_days <= FILL_DAYS_MAX:
        raise DispensingError(
            "fill_days", f"must be between {FILL_DAYS_MIN} and {FILL_DAYS_MAX} days"
        )


def _plain(value: Decimal) -> Decimal:
    """Trailing zeros dropped, never an exponent (``Decimal('3E+1')`` -> ``30``)."""
    n = value.normalize()
    return n.quantize(Decimal(1)) if n.as_tuple().exponent > 0 else n  # type: ignore[operator]


def _ceil(value: Decimal) -> Decimal:
    return value.to_integral_value(rounding=ROUND_CEILING)


def fills(
    steps: Sequence[PlannedStep], forms: Sequence[Formulation], fill_days: int
) -> tuple[Fill, ...]:
    """The plan's fills of ``fill_days`` (7..90) with what each dispenses, per product."""
    check_fill_days(fill_days)
    span = horizon(steps, fill_days)
    if span is None:
        return ()
    by_code = {f.code: f for f in forms}
    days = [c.effective_on for c in steps]
    day_pieces = [tuple(p for a in compose_day(s.administrations, forms) for p in a) for s in steps]
    out: list[Fill] = []
    start, end = span
    number = 1
    while start <= end:
        stop = min(start + timedelta(days=fill_days - 1), end)
        wholes: dict[str, int] = {}
        halves: dict[str, int] = {}
        incs: dict[str, int] = {}
        for i, step_start in enumerate(days):
            step_end = days[i + 1] - timedelta(days=1) if i + 1 < len(days) else end
            lo, hi = max(start, step_start), min(stop, step_end)
            n = (hi - lo).days + 1
            if n <= 0:
                continue
            for p in day_pieces[i]:
                bucket = {"tablet": wholes, "half_tablet": halves, "liquid": incs}[p.form]
                bucket[p.code] = bucket.get(p.code, 0) + p.count * n
        items = [
            _item(by_code[c], wholes.get(c, 0), halves.get(c, 0), incs.get(c, 0))
            for c in sorted(wholes.keys() | halves.keys() | incs.keys(), key=_order(by_code))
        ]
        out.append(Fill(number, start, stop, tuple(items)))
        start, number = stop + timedelta(days=1), number + 1
    return tuple(out)


def _order(by_code: dict[str, Formulation]) -> Callable[[str], tuple[str, bool, Decimal, str]]:
    def key(code: str) -> tuple[str, bool, Decimal, str]:
        f = by_code[code]
        return (f.drug, f.kind != "tablet", -max(f.units_mg), code)

    return key


def _item(f: Formulation, wholes: int, halves: int, increments: int) -> FillItem:
    if f.kind == "liquid":
        assert f.increment_ml is not None and f.concentration_mg_per_ml is not None
        ml = f.increment_ml * increments
        return FillItem(
            code=f.code,
            drug=f.drug,
            form="liquid",
            strength_mg=None,
            concentration_mg_per_ml=f.concentration_mg_per_ml,
            whole_tablets_taken=0,
            half_tablets_taken=0,
            ml_taken=_plain(ml),
            dispense_tablets=0,
            dispense_ml=_ceil(ml),
            mg_taken=_plain(ml * f.concentration_mg_per_ml),
        )
    assert f.strength_mg is not None
    return FillItem(
        code=f.code,
        drug=f.drug,
        form="tablet",
        strength_mg=f.strength_mg,
        concentration_mg_per_ml=None,
        whole_tablets_taken=wholes,
        half_tablets_taken=halves,
        ml_taken=Decimal(0),
        dispense_tablets=wholes + (halves + 1) // 2,
        dispense_ml=Decimal(0),
        mg_taken=_plain(f.strength_mg * wholes + f.strength_mg / 2 * halves),
    )
