"""Scoring a symptom report and deciding whether a clinician must be paged. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from services.monitoring.domain.reference import CiwaBDefinition, RuleSet


class Severity(StrEnum):
    RED = "RED"
    AMBER = "AMBER"


class InvalidReport(ValueError):
    """A report that cannot be scored; ``field`` names the offending item (never its value)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Reason:
    code: str
    instrument: str | None = None
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class Score:
    instrument: str
    version: str
    method: str  # "self-report-modified" when the clinician-observed items are absent
    total: int
    band: str
    scored: bool = True  # False when the orientation gate failed: not scored, escalated


@dataclass(frozen=True)
class Assessment:
    score: Score
    red_flags: tuple[str, ...]
    severity: Severity | None
    reasons: tuple[Reason, ...] = field(default=())


def score_ciwa_b(definition: CiwaBDefinition, answers: dict[str, int], *, oriented: bool) -> Score:
    if not oriented:
        # The alert-and-oriented gate failed: do not score (possible delirium), escalate.
        return Score("ciwa-b", definition.version, "not-scored", 0, "not_scored", scored=False)
    known = set(definition.patient_items) | set(definition.clinician_items)
    for item in answers:
        if item not in known:
            raise InvalidReport(f"answers.{item}", "unknown item")
    for item in definition.patient_items:
        if item not in answers:
            raise InvalidReport(f"answers.{item}", "missing item")
    for item, value in answers.items():
        if not definition.item_min <= value <= definition.item_max:
            raise InvalidReport(
                f"answers.{item}", f"must be {definition.item_min}..{definition.item_max}"
            )
    observed = [i for i in definition.clinician_items if i in answers]
    if observed and len(observed) != len(definition.clinician_items):
        raise InvalidReport("answers", "clinician-observed items must be all present or all absent")
    method = "clinician" if observed else "self-report-modified"
    total = sum(answers.values())
    return Score("ciwa-b", definition.version, method, total, definition.band_for(total))


def assess(score: Score, red_flags: tuple[str, ...], rules: RuleSet) -> Assessment:
    """Red flags and a failed orientation gate are RED whatever the totals; then the bands."""
    for flag in red_flags:
        if flag not in rules.red_flags:
            raise InvalidReport("red_flags", "unknown red flag code")
    reasons: list[Reason] = [Reason(f"red_flag:{flag}") for flag in sorted(set(red_flags))]
    if not score.scored:
        reasons.append(Reason("gate:not_oriented", instrument=score.instrument))
    if reasons:
        return Assessment(score, red_flags, Severity.RED, tuple(reasons))
    if score.total >= rules.ciwa_b_red_at:
        reason = Reason("band:ciwa-b", score.instrument, score.total, rules.ciwa_b_red_at)
        return Assessment(score, red_flags, Severity.RED, (reason,))
    if score.total >= rules.ciwa_b_amber_at:
        reason = Reason("band:ciwa-b", score.instrument, score.total, rules.ciwa_b_amber_at)
        return Assessment(score, red_flags, Severity.AMBER, (reason,))
    return Assessment(score, red_flags, None)
