"""The patient's own schedule in plain words (issue 13, item 15). Pure: no HTML, no I/O beyond
reading the packaged message catalogue (``data/patient_schedule.v1.json``).

One row per step of the plan: the dates it covers (``from_to``, or ``from_on`` for the last) and
one sentence per administration of the day, e.g. "Take one 2 mg diazepam tablet and one half of a
2 mg diazepam tablet in the morning." The pieces come from ``dispensing.compose_day`` (the same
composition the pharmacy dispenses). The row covering ``today`` is marked, and so is the next
change after it (or the first step, before the plan starts). Every word comes from the catalogue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from services.scheduler.domain.dispensing import Piece, compose_day
from services.scheduler.domain.planning import Administration, Formulation, PlannedStep


@dataclass(frozen=True)
class ScheduleRow:
    starts_on: date
    ends_on: date | None  # None: the last row, open
    dates: str  # e.g. "Monday 12 January 2026 to Sunday 25 January 2026"
    lines: tuple[str, ...]
    is_today: bool
    is_next: bool


@dataclass(frozen=True)
class PatientSchedule:
    lang: str
    text: Mapping[str, Any]  # the catalogue, for the page's fixed wording
    today_line: str
    rows: tuple[ScheduleRow, ...]

    @property
    def current(self) -> ScheduleRow | None:
        return next((r for r in self.rows if r.is_today), None)

    @property
    def next_change(self) -> ScheduleRow | None:
        return next((r for r in self.rows if r.is_next), None)


@cache
def catalogue_v1() -> dict[str, Any]:
    text = (
        resources.files("services.scheduler.domain")
        .joinpath("data", "patient_schedule.v1.json")
        .read_text(encoding="utf-8")
    )
    data: dict[str, Any] = json.loads(text)
    return data


def _num(value: Decimal) -> str:
    n = value.normalize()
    return format(n.quantize(Decimal(1)) if n.as_tuple().exponent > 0 else n, "f")  # type: ignore[operator]


def say_date(day: date, t: Mapping[str, Any]) -> str:
    return str(t["date"]).format(
        weekday=t["weekdays"][day.weekday()],
        day=day.day,
        month=t["months"][day.month - 1],
        year=day.year,
    )


def _count(n: int, t: Mapping[str, Any]) -> str:
    words: list[str] = t["numbers"]
    return words[n] if n < len(words) else str(n)


def _drug(code: str) -> str:
    return code.replace("_", " ")


def say_piece(piece: Piece, formulation: Formulation, t: Mapping[str, Any]) -> str:
    drug = _drug(formulation.drug)
    if piece.form == "liquid":
        assert piece.ml_each is not None and formulation.concentration_mg_per_ml is not None
        return str(t["liquid"]).format(
            ml=_num(piece.ml_each * piece.count),
            concentration=_num(formulation.concentration_mg_per_ml),
            drug=drug,
        )
    assert formulation.strength_mg is not None
    key = ("tablet" if piece.form == "tablet" else "half") + (
        "_one" if piece.count == 1 else "_many"
    )
    return str(t[key]).format(
        count=_count(piece.count, t), strength=_num(formulation.strength_mg), drug=drug
    )


def _when(k: int, n: int, t: Mapping[str, Any]) -> str:
    words: list[str] | None = t["when"].get(str(n))
    return words[k] if words else str(t["when_other"]).format(k=k + 1, n=n)


def say_step(
    step: PlannedStep, forms: Sequence[Formulation], t: Mapping[str, Any]
) -> tuple[str, ...]:
    """One sentence per administration given that day; a stop when nothing is given."""
    return say_regimen(step.administrations, forms, t)


def say_regimen(
    administrations: Sequence[Administration], forms: Sequence[Formulation], t: Mapping[str, Any]
) -> tuple[str, ...]:
    """One sentence per administration of a day's regimen; a stop when nothing is given."""
    by_code = {f.code: f for f in forms}
    n = len(administrations)
    lines = []
    for k, pieces in enumerate(compose_day(tuple(administrations), forms)):
        if not pieces:
            continue
        said = str(t["and"]).join(say_piece(p, by_code[p.code], t) for p in pieces)
        lines.append(str(t["take"]).format(pieces=said, when=_when(k, n, t)))
    if not lines:
        drugs = dict.fromkeys(a.drug for a in administrations)
        lines = [str(t["stop"]).format(drug=_drug(d)) for d in drugs]
    return tuple(lines)


def schedule(
    steps: Sequence[PlannedStep],
    forms: Sequence[Formulation],
    today: date,
    t: Mapping[str, Any] | None = None,
    baseline: Sequence[Administration] = (),
) -> PatientSchedule:
    """The plan's rows in plain words, with today's row and the next change marked.

    Before the first step takes effect, ``baseline`` (the regimen the plan starts from) is
    today's row: the patient keeps taking it until the day before the first change.
    """
    t = t if t is not None else catalogue_v1()
    current = max((i for i, s in enumerate(steps) if s.effective_on <= today), default=None)
    following = 0 if current is None else current + 1
    rows = []
    if current is None and baseline and steps:
        until = steps[0].effective_on - timedelta(days=1)
        rows.append(
            ScheduleRow(
                starts_on=today,
                ends_on=until,
                dates=str(t["until"]).format(end=say_date(until, t)),
                lines=say_regimen(baseline, forms, t),
                is_today=True,
                is_next=False,
            )
        )
    for i, s in enumerate(steps):
        end = steps[i + 1].effective_on - timedelta(days=1) if i + 1 < len(steps) else None
        start = say_date(s.effective_on, t)
        dates = (
            str(t["from_to"]).format(start=start, end=say_date(end, t))
            if end is not None
            else str(t["from_on"]).format(start=start)
        )
        rows.append(
            ScheduleRow(
                starts_on=s.effective_on,
                ends_on=end,
                dates=dates,
                lines=say_step(s, forms, t),
                is_today=i == current,
                is_next=i == following,
            )
        )
    return PatientSchedule(
        lang=str(t["lang"]),
        text=t,
        today_line=str(t["today_line"]).format(date=say_date(today, t)),
        rows=tuple(rows),
    )
