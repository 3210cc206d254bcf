"""How long a taper should take for how long the drug was used (clinical reference §2.4).

The table lives in ``planning_defaults.v1.json`` (``taper_length_by_use``, a weak source marked
unconfirmed there). The planner uses it twice: to move to a faster pace when the patient's risk
pace would overrun the band's longest taper, and to flag a plan whose expected length is outside
the band so the clinician sees it before approving.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from services.scheduler.domain.planning.reference import _load


@dataclass(frozen=True)
class LengthBand:
    use_below_weeks: int | None  # None: the open last band
    min_weeks: int
    max_weeks: int | None
    fastest_pace: str  # the fastest pace code the planner may move to for this band


@cache
def length_bands_v1() -> tuple[LengthBand, ...]:
    raw = _load("planning_defaults.v1.json")["taper_length_by_use"]["bands"]
    return tuple(
        LengthBand(
            use_below_weeks=b.get("use_below_weeks"),
            min_weeks=int(b["min_weeks"]),
            max_weeks=b.get("max_weeks"),
            fastest_pace=b["fastest_pace"],
        )
        for b in raw
    )


def band_for(duration_weeks: int, bands: tuple[LengthBand, ...] | None = None) -> LengthBand:
    for band in bands or length_bands_v1():
        if band.use_below_weeks is None or duration_weeks < band.use_below_weeks:
            return band
    raise ValueError("the last band must be open")


def faster_paces(current: str, fastest: str, order_fastest_first: list[str]) -> list[str]:
    """``current``, then each faster pace up to ``fastest`` (just ``current`` if it is faster)."""
    i, j = order_fastest_first.index(current), order_fastest_first.index(fastest)
    return [order_fastest_first[k] for k in range(i, min(i, j) - 1, -1)]
