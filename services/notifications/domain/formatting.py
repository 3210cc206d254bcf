"""Facts in words: locale-neutral English, never the locale of the server. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_mg(mg: Decimal) -> str:
    """``Decimal("7.5000")`` -> ``7.5``, ``10.0000`` -> ``10``, ``100`` -> ``100`` (not 1E+2)."""
    return format(mg.normalize(), "f")


def format_day(day: date) -> str:
    """``Wed 25 Nov``: no year (a message is about this week), no locale-dependent strftime."""
    return f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"


def drug_name(code: str) -> str:
    """Scheduler drug codes are lower-case words (``diazepam``); underscores read as spaces."""
    return code.replace("_", " ")


def join_words(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def dose_list(doses: Sequence[Sequence[str]]) -> str:
    # A drug at 0 mg in a regimen is a drug to stop, which "alprazolam 0 mg" says badly.
    return join_words(
        [
            f"no more {drug_name(d)}"
            if Decimal(mg) == 0
            else f"{drug_name(d)} {format_mg(Decimal(mg))} mg"
            for d, mg in doses
        ]
    )
