"""Which rules a scored report trips, and how hard. Pure: no I/O, no clock.

Every rule belongs to a *family*; the service keeps at most one open escalation episode per
patient and family (``episodes.py``):

* ``safety``: a red flag, a failed orientation gate, PHQ-9 item 9 above 0. RED whatever the
  totals, and never overridable: red flags always escalate.
* ``withdrawal``: CIWA-B bands; a rise from the patient's own pre-taper baseline (CIWA-B, BWSQ);
  worsening inside the withdrawal window after a dose step (the window by the drug's half-life);
  pulse above the DSM-5 autonomic sign.
* ``mood``: PHQ-9 and GAD-7 bands and rises from baseline (co-occurring depression and anxiety).
* ``engagement``: a missed check-in after a dose step (found by the check-in timer, not here).

Thresholds are versioned data (``data/rules.v2.json``) with their sources; which instrument items
are red flags is instrument data (``red_items``, read by ``instruments``). A clinician may set
per-patient values for the keys the data lists as ``overridable``, inside the instrument's range,
and a RED threshold only downwards: no per-patient setting turns a default RED into less than RED
(``evaluate`` also holds to that for thresholds stored before the check existed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from importlib import resources
from typing import Any

from services.monitoring.domain import instruments, vitals
from services.monitoring.domain.model import InvalidReport, Reason, Score, Severity

SAFETY = "safety"
WITHDRAWAL = "withdrawal"
MOOD = "mood"
ENGAGEMENT = "engagement"
_ORDER = {Severity.AMBER: 1, Severity.RED: 2}


def worst(severities: list[Severity]) -> Severity | None:
    return max(severities, key=_ORDER.__getitem__, default=None)


@dataclass(frozen=True)
class Finding:
    family: str
    severity: Severity
    reason: Reason


@dataclass(frozen=True)
class BandRule:
    instrument: str
    family: str
    amber_at: int | None
    red_at: int | None


@dataclass(frozen=True)
class RuleSet:
    version: str
    source: str
    families: frozenset[str]
    red_flags: frozenset[str]
    item_red: tuple[tuple[str, str, int], ...]  # (instrument, item, at or above)
    bands: tuple[BandRule, ...]
    rises: Mapping[str, tuple[str, int]]  # instrument -> (family, amber rise)
    worsening_family: str
    worsening: Mapping[str, int]  # instrument -> amber rise since the step
    window_days: Mapping[str, int]  # half-life class -> days after the step
    pulse_family: str
    pulse_amber_above: int
    overridable: frozenset[str]
    # What each red-flag code means, with its source (the data's text; for readers and clients).
    red_flag_notes: Mapping[str, str] = field(default_factory=dict)

    def check_overrides(self, thresholds: Mapping[str, int]) -> None:
        """Refuse a key that is not overridable and a value outside what the key allows: a band
        or rise inside the instrument's totals, a RED band no higher than the default (only
        stricter), an AMBER band no higher than the patient's RED, a pulse inside the plausible
        range. Fields name the key, messages give the allowed range, never the value."""
        for key, value in thresholds.items():
            if key not in self.overridable:
                raise InvalidReport(f"thresholds.{key}", "not an overridable rule")
            low, high = self._allowed(key, thresholds)
            if type(value) is not int or not low <= value <= high:
                raise InvalidReport(f"thresholds.{key}", f"must be an integer {low}..{high}")

    def _allowed(self, key: str, thresholds: Mapping[str, int]) -> tuple[int, int]:
        kind, _, rest = key.partition(":")
        if kind == "pulse":
            pulse = vitals.pulse_bpm()
            return pulse.low, pulse.high
        instrument, _, level = rest.partition(":")
        low, high = _totals(instrument)
        if kind != "band":  # rise / worsening: a change in the total
            return 1, high - low
        rule = next(b for b in self.bands if b.instrument == instrument)
        red_high = high if rule.red_at is None else min(high, rule.red_at)
        if level == "red":
            return low + 1, red_high
        # AMBER no higher than the patient's RED: the RED override when it is itself valid.
        red = thresholds.get(f"band:{instrument}:red")
        if type(red) is int and low + 1 <= red <= red_high:
            return low + 1, red
        return low + 1, red_high

    def band_levels(
        self, rule: BandRule, thresholds: Mapping[str, int]
    ) -> tuple[int | None, int | None]:
        """(AMBER, RED) totals for this patient. A RED override only ever lowers RED, whatever
        was stored; an AMBER override moves AMBER."""
        amber = thresholds.get(f"band:{rule.instrument}:amber", rule.amber_at)
        red = rule.red_at
        override = thresholds.get(f"band:{rule.instrument}:red")
        if red is not None and type(override) is int:
            red = min(red, override)
        return amber, red


@dataclass(frozen=True)
class ReportFacts:
    """A report with what the rules read besides the total.

    ``score`` is None when the instrument was refused (not scored); its safety content —
    ``red_flags``, ``oriented``, red items among the valid ``answers``, ``pulse_bpm`` — still
    counts, and ``instrument`` then says whose items the answers are. ``oriented=False`` is a
    failed orientation gate whatever the instrument. The pulse must be plausible (``vitals``).
    """

    score: Score | None
    answers: Mapping[str, int]
    red_flags: tuple[str, ...] = ()
    pulse_bpm: int | None = None
    oriented: bool | None = None
    instrument: str | None = None

    def __post_init__(self) -> None:
        if self.score is None and self.instrument is None:
            raise ValueError("an unscored report must name its instrument")
        if self.pulse_bpm is not None:
            vitals.pulse_bpm().check(self.pulse_bpm)

    @property
    def instrument_code(self) -> str:
        if self.score is not None:
            return self.score.instrument
        assert self.instrument is not None  # __post_init__
        return self.instrument


@dataclass(frozen=True)
class PatientContext:
    """What the patient's history says about this report's instrument."""

    today: date
    baseline_total: int | None = None  # the last report of this instrument before the taper
    last_step_on: date | None = None  # the latest dose step in effect
    half_life_class: str | None = None  # of the drug that step reduced
    total_before_step: int | None = None  # the last report of this instrument before that step
    thresholds: Mapping[str, int] = field(default_factory=dict)  # per-patient overrides


def evaluate(report: ReportFacts, ctx: PatientContext, rules: RuleSet) -> tuple[Finding, ...]:
    """Every rule the report trips (empty: nothing to escalate)."""
    findings = list(_safety(report, rules))
    score = report.score
    if score is not None and score.scored:
        findings += _bands(score, ctx, rules)
        findings += _rise(score, ctx, rules)
        findings += _worsening(score, ctx, rules)
    if report.pulse_bpm is not None:
        limit = ctx.thresholds.get("pulse:amber", rules.pulse_amber_above)
        if report.pulse_bpm > limit:
            reason = Reason("pulse:above", None, report.pulse_bpm, limit)
            findings.append(Finding(rules.pulse_family, Severity.AMBER, reason))
    return tuple(findings)


def _safety(report: ReportFacts, rules: RuleSet) -> list[Finding]:
    for flag in report.red_flags:
        if flag not in rules.red_flags:
            raise InvalidReport("red_flags", "unknown red flag code")
    reasons = [Reason(f"red_flag:{flag}") for flag in sorted(set(report.red_flags))]
    code = report.instrument_code
    if report.oriented is False or (report.score is not None and not report.score.scored):
        reasons.append(Reason("gate:not_oriented", instrument=code))
    for instrument, item, at in rules.item_red:
        value = report.answers.get(item)
        if code == instrument and value is not None and value >= at:
            reasons.append(Reason(f"item:{instrument}:{item}", instrument, value, at))
    return [Finding(SAFETY, Severity.RED, r) for r in reasons]


def _bands(score: Score, ctx: PatientContext, rules: RuleSet) -> list[Finding]:
    for rule in rules.bands:
        if rule.instrument != score.instrument:
            continue
        amber, red = rules.band_levels(rule, ctx.thresholds)
        code = f"band:{rule.instrument}"
        if red is not None and score.total >= red:
            return [
                Finding(rule.family, Severity.RED, Reason(code, score.instrument, score.total, red))
            ]
        if amber is not None and score.total >= amber:
            reason = Reason(code, score.instrument, score.total, amber)
            return [Finding(rule.family, Severity.AMBER, reason)]
    return []


def _rise(score: Score, ctx: PatientContext, rules: RuleSet) -> list[Finding]:
    rule = rules.rises.get(score.instrument)
    if rule is None or ctx.baseline_total is None:
        return []
    family, rise = rule
    rise = ctx.thresholds.get(f"rise:{score.instrument}", rise)
    if score.total - ctx.baseline_total < rise:
        return []
    reason = Reason(
        f"rise_from_baseline:{score.instrument}",
        score.instrument,
        score.total - ctx.baseline_total,
        rise,
    )
    return [Finding(family, Severity.AMBER, reason)]


def _worsening(score: Score, ctx: PatientContext, rules: RuleSet) -> list[Finding]:
    rise = rules.worsening.get(score.instrument)
    if (
        rise is None
        or ctx.last_step_on is None
        or ctx.half_life_class is None
        or ctx.total_before_step is None
    ):
        return []
    window = timedelta(days=rules.window_days[ctx.half_life_class])
    if not ctx.last_step_on <= ctx.today <= ctx.last_step_on + window:
        return []
    rise = ctx.thresholds.get(f"worsening:{score.instrument}", rise)
    change = score.total - ctx.total_before_step
    if change < rise:
        return []
    reason = Reason(f"worsening_after_reduction:{score.instrument}", score.instrument, change, rise)
    return [Finding(rules.worsening_family, Severity.AMBER, reason)]


def _totals(instrument: str) -> tuple[int, int]:
    """The lowest and highest total of ``instrument`` over its versions."""
    defns = [d for (code, _), d in instruments.catalogue().items() if code == instrument]
    return min(d.total_min for d in defns), max(d.total_max for d in defns)


def _load(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def rules_v2() -> RuleSet:
    raw = _load("rules.v2.json")
    worsening = raw["worsening_after_reduction"]
    return RuleSet(
        version=raw["version"],
        source=raw["source"],
        families=frozenset(raw["families"]),
        red_flags=frozenset(raw["red_flags"]),
        item_red=tuple(
            sorted(
                {
                    (defn.code, red.item, red.at_or_above)
                    for defn in instruments.catalogue().values()
                    for red in defn.red_items
                }
            )
        ),
        bands=tuple(
            BandRule(b["instrument"], b["family"], b["amber_at_or_above"], b["red_at_or_above"])
            for b in raw["bands"]
        ),
        rises={
            r["instrument"]: (r["family"], int(r["amber_rise"])) for r in raw["rise_from_baseline"]
        },
        worsening_family=worsening["family"],
        worsening={k: int(v) for k, v in worsening["instruments"].items()},
        window_days={k: int(v) for k, v in worsening["window_days_by_half_life"].items()},
        pulse_family=raw["pulse"]["family"],
        pulse_amber_above=int(raw["pulse"]["amber_above"]),
        overridable=frozenset(raw["overridable"]),
        red_flag_notes=dict(raw["red_flags"]),
    )
