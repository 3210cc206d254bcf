"""Each escalation rule with a case that trips it and one that does not (rules.v2 data)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.monitoring.domain import instruments
from services.monitoring.domain.model import InvalidReport, Severity
from services.monitoring.domain.rules import (
    MOOD,
    SAFETY,
    WITHDRAWAL,
    Finding,
    PatientContext,
    ReportFacts,
    evaluate,
    rules_v2,
    worst,
)

RULES = rules_v2()
TODAY = date(2026, 3, 2)
CIWA = instruments.definition("ciwa-b", "1")
PHQ9 = instruments.definition("phq-9", "1")
GAD7 = instruments.definition("gad-7", "1")
BWSQ = instruments.definition("bwsq", "1")
CIWA_ITEMS = [i.code for i in CIWA.items if i.code not in CIWA.observed_items]


def ciwa(total: int, **extra: object) -> ReportFacts:
    """A self-reported CIWA-B with the given total (spread over the 17 patient items)."""
    answers = dict.fromkeys(CIWA_ITEMS, 0)
    for k, item in enumerate(CIWA_ITEMS * 4):
        if k >= total:
            break
        answers[item] += 1
    score = instruments.score(CIWA, answers, oriented=True)
    assert score.total == total
    return ReportFacts(score, answers, **extra)  # type: ignore[arg-type]


def scored(defn: instruments.InstrumentDefinition, total: int, **set_items: int) -> ReportFacts:
    answers = dict.fromkeys((i.code for i in defn.items), 0) | set_items
    rest = total - sum(answers.values())
    for item in defn.items:
        if rest <= 0:
            break
        if item.code in set_items:
            continue
        add = min(item.max, rest)
        answers[item.code] = add
        rest -= add
    score = instruments.score(defn, answers)
    assert score.total == total
    return ReportFacts(score, answers)


def ctx(**kw: object) -> PatientContext:
    return PatientContext(today=TODAY, **kw)  # type: ignore[arg-type]


def codes(findings: tuple[Finding, ...]) -> set[tuple[str, str, Severity]]:
    return {(f.family, f.reason.code, f.severity) for f in findings}


def test_the_rules_name_their_sources_and_mark_placeholders() -> None:
    assert "clinical-reference.md" in RULES.source
    assert RULES.families == {"safety", "withdrawal", "mood", "engagement"}


# --- safety: RED whatever the totals ------------------------------------------------------
@given(
    total=st.integers(0, 68),
    flags=st.lists(st.sampled_from(sorted(RULES.red_flags)), min_size=1, max_size=3),
)
def test_any_red_flag_is_red_whatever_the_score(total: int, flags: list[str]) -> None:
    report = ciwa(total)
    found = evaluate(ReportFacts(report.score, report.answers, tuple(flags)), ctx(), RULES)
    assert worst([f.severity for f in found]) is Severity.RED
    assert {(SAFETY, f"red_flag:{f}", Severity.RED) for f in flags} <= codes(found)


def test_an_unknown_red_flag_is_refused() -> None:
    with pytest.raises(InvalidReport) as exc:
        evaluate(ReportFacts(ciwa(0).score, {}, ("sneezing",)), ctx(), RULES)
    assert exc.value.field == "red_flags"


def test_a_failed_orientation_gate_is_red_and_not_scored() -> None:
    score = instruments.score(CIWA, {}, oriented=False)
    found = evaluate(ReportFacts(score, {}), ctx(baseline_total=0), RULES)
    assert codes(found) == {(SAFETY, "gate:not_oriented", Severity.RED)}


@pytest.mark.parametrize(("item_9", "red"), [(0, False), (1, True), (3, True)])
def test_phq9_item_9_above_zero_is_red_whatever_the_total(item_9: int, red: bool) -> None:
    found = evaluate(scored(PHQ9, item_9, item_9=item_9), ctx(), RULES)
    assert ((SAFETY, "item:phq-9:item_9", Severity.RED) in codes(found)) is red


def test_safety_rules_cannot_be_overridden() -> None:
    with pytest.raises(InvalidReport) as exc:
        RULES.check_overrides({"red_flag:seizure": 1})
    assert exc.value.field == "thresholds.red_flag:seizure"
    with pytest.raises(InvalidReport):
        RULES.check_overrides({"band:ciwa-b:amber": -1})
    RULES.check_overrides({"band:ciwa-b:amber": 25, "rise:phq-9": 8})


# --- bands ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("total", "severity"),
    [(20, None), (21, Severity.AMBER), (40, Severity.AMBER), (41, Severity.RED)],
)
def test_ciwa_b_bands(total: int, severity: Severity | None) -> None:
    found = evaluate(ciwa(total), ctx(), RULES)
    assert worst([f.severity for f in found]) is severity
    assert all(f.family == WITHDRAWAL for f in found)


@pytest.mark.parametrize(
    ("defn", "total", "amber"),
    [(PHQ9, 14, False), (PHQ9, 15, True), (GAD7, 14, False), (GAD7, 15, True)],
)
def test_phq9_and_gad7_at_15_are_amber_mood(
    defn: instruments.InstrumentDefinition, total: int, amber: bool
) -> None:
    found = evaluate(scored(defn, total), ctx(), RULES)
    assert ((MOOD, f"band:{defn.code}", Severity.AMBER) in codes(found)) is amber


def test_a_clinician_override_moves_a_band_for_one_patient() -> None:
    assert evaluate(ciwa(22), ctx(thresholds={"band:ciwa-b:amber": 25}), RULES) == ()
    found = evaluate(ciwa(25), ctx(thresholds={"band:ciwa-b:amber": 25}), RULES)
    assert found[0].reason.threshold == 25


# --- the patient's own baseline --------------------------------------------------------------
@pytest.mark.parametrize(
    ("baseline", "total", "amber"), [(5, 14, False), (5, 15, True), (None, 20, False)]
)
def test_a_rise_of_10_from_the_pre_taper_baseline_is_amber(
    baseline: int | None, total: int, amber: bool
) -> None:
    found = evaluate(ciwa(total), ctx(baseline_total=baseline), RULES)
    assert ((WITHDRAWAL, "rise_from_baseline:ciwa-b", Severity.AMBER) in codes(found)) is amber


def test_bwsq_has_no_bands_but_its_rise_from_baseline_counts() -> None:
    assert evaluate(scored(BWSQ, 30), ctx(), RULES) == ()
    found = evaluate(scored(BWSQ, 30), ctx(baseline_total=20), RULES)
    assert codes(found) == {(WITHDRAWAL, "rise_from_baseline:bwsq", Severity.AMBER)}


# --- worsening in the withdrawal window after a dose step -------------------------------------
@pytest.mark.parametrize(
    ("half_life", "days_after", "inside"),
    [
        ("short", 0, True),
        ("short", 3, True),
        ("short", 4, False),
        ("long", 21, True),
        ("long", 22, False),
    ],
)
def test_worsening_after_a_reduction_counts_inside_the_drugs_window(
    half_life: str, days_after: int, inside: bool
) -> None:
    step_on = TODAY - timedelta(days=days_after)
    context = ctx(last_step_on=step_on, half_life_class=half_life, total_before_step=8)
    found = evaluate(ciwa(13), context, RULES)
    key = (WITHDRAWAL, "worsening_after_reduction:ciwa-b", Severity.AMBER)
    assert (key in codes(found)) is inside
    assert evaluate(ciwa(12), context, RULES) == ()  # a rise of 4 is below the 5 points


# --- vitals ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("pulse", "amber"), [(100, False), (101, True), (None, False)])
def test_a_pulse_above_100_is_amber(pulse: int | None, amber: bool) -> None:
    report = ciwa(0)
    found = evaluate(ReportFacts(report.score, report.answers, pulse_bpm=pulse), ctx(), RULES)
    assert ((WITHDRAWAL, "pulse:above", Severity.AMBER) in codes(found)) is amber
