"""Issue 13 in the domain: red items as instrument data (item 2), per-patient thresholds that can
never switch RED off (item 3, property b), vital signs refused out of range (item 4, property
c), and the intake that keeps the safety part of a report whose other items are refused (item 1).

Property examples: ``TAPER_HYPOTHESIS_EXAMPLES`` (default 300)."""

from __future__ import annotations

import os
import re
from contextlib import nullcontext
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.monitoring.domain import instruments, intake, vitals
from services.monitoring.domain.model import InvalidReport, Severity
from services.monitoring.domain.rules import (
    SAFETY,
    PatientContext,
    ReportFacts,
    evaluate,
    rules_v2,
    worst,
)

EXAMPLES = int(os.environ.get("TAPER_HYPOTHESIS_EXAMPLES", "300"))
RULES = rules_v2()
TODAY = date(2026, 3, 2)
CATALOGUE = instruments.catalogue()
DEFNS = sorted(CATALOGUE.values(), key=lambda d: d.code)
BWSQ = instruments.definition("bwsq", "1")
CIWA = instruments.definition("ciwa-b", "1")
PHQ9 = instruments.definition("phq-9", "1")


def full(defn: instruments.InstrumentDefinition, **items: int) -> dict[str, int]:
    skip = set(defn.observed_items)
    return {i.code: 0 for i in defn.items if i.code not in skip} | items


def take(defn: instruments.InstrumentDefinition, **kw: Any) -> intake.Intake:
    args: dict[str, Any] = {"answers": {}, "red_flags": (), "oriented": None, "pulse_bpm": None}
    args.update(kw)
    return intake.take(defn, known_red_flags=RULES.red_flags, **args)


def facts(taken: intake.Intake) -> ReportFacts:
    return ReportFacts(
        taken.score,
        taken.answers,
        taken.red_flags,
        taken.pulse_bpm,
        oriented=taken.oriented,
        instrument=taken.instrument,
    )


# --- item 2: instrument items that are red flags are RED, as data -------------------------------
def test_red_items_are_instrument_data_citing_the_reference() -> None:
    red = {(d.code, r.item, r.at_or_above) for d in DEFNS for r in d.red_items}
    assert red == {("bwsq", "hallucinations", 1), ("phq-9", "item_9", 1)}
    assert all("§3.4" in r.source for d in DEFNS for r in d.red_items)
    assert CIWA.red_items == ()  # no CIWA-B item is a §3.4 red flag; none invented
    assert set(RULES.item_red) == red


@pytest.mark.parametrize(("value", "red"), [(0, False), (1, True), (2, True)])
def test_bwsq_hallucinations_above_zero_is_red_whatever_the_total(value: int, red: bool) -> None:
    taken = take(BWSQ, answers=full(BWSQ, hallucinations=value))
    found = evaluate(facts(taken), PatientContext(today=TODAY), RULES)
    assert (
        (SAFETY, "item:bwsq:hallucinations") in {(f.family, f.reason.code) for f in found}
    ) is red
    assert (worst([f.severity for f in found]) is Severity.RED) is red


@pytest.mark.parametrize(
    "change",
    [
        {"item": "nonexistent"},
        {"at_or_above": 0},  # at the minimum: every report would be RED
        {"at_or_above": 4},  # above the maximum: could never trip
        {"source": "a blog"},
    ],
)
def test_bad_red_items_are_refused_at_load(change: dict[str, Any]) -> None:
    raw = instruments._load("phq9.v1.json")
    raw["red_items"] = [raw["red_items"][0] | change]
    with pytest.raises(ValueError, match=r"red_items|at_or_above|source"):
        instruments.parse_definition(raw)


# --- item 1: the safety part survives refused items -----------------------------------------
def test_a_missing_item_refuses_the_score_but_keeps_item_9() -> None:
    answers: dict[str, object] = {"item_9": 3, "item_1": "x"}
    taken = take(PHQ9, answers=answers)
    assert taken.score is None and taken.answers == {"item_9": 3}
    refused = {(r.instrument, r.item, r.reason) for r in taken.refused}
    assert ("phq-9", "item_1", "must be an integer 0..3") in refused
    assert ("phq-9", "item_2", "missing item") in refused
    assert "x" not in str(taken.refused)
    found = evaluate(facts(taken), PatientContext(today=TODAY), RULES)
    assert {f.reason.code for f in found} == {"item:phq-9:item_9"}


def test_unknown_red_flags_and_an_implausible_pulse_are_refused_alone() -> None:
    taken = take(CIWA, answers=full(CIWA), oriented=True, red_flags=("x", 3, "seizure"))
    assert taken.red_flags == ("seizure",) and taken.score is not None
    assert [r.item for r in taken.refused] == ["red_flags", "red_flags"]
    taken = take(CIWA, answers=full(CIWA), oriented=True, pulse_bpm=1000)
    assert taken.pulse_bpm is None and [r.item for r in taken.refused] == ["pulse_bpm"]


def test_oriented_true_on_an_ungated_instrument_is_named_but_the_report_is_scored() -> None:
    taken = take(PHQ9, answers=full(PHQ9), oriented=True)
    assert taken.score is not None and taken.score.band == "minimal"
    assert [(r.item, r.reason) for r in taken.refused] == [
        ("oriented", "not used by this instrument")
    ]


def test_oriented_false_fails_the_gate_for_any_instrument() -> None:
    for defn in DEFNS:
        taken = take(defn, answers=full(defn), oriented=False)
        found = evaluate(facts(taken), PatientContext(today=TODAY), RULES)
        assert "gate:not_oriented" in {f.reason.code for f in found}, defn.code


# --- item 3 / property (b): no per-patient threshold makes a default RED less than RED ----------
@st.composite
def scored_reports(draw: st.DrawFn) -> ReportFacts:
    """Any valid report, drawn so that every rule (RED bands too) is often tripped: each report
    draws a floor for its answers."""
    defn = draw(st.sampled_from(DEFNS))
    floor = draw(st.integers(0, 4))
    answers = {
        i.code: draw(st.integers(min(floor, i.max), i.max))
        for i in defn.items
        if i.code not in defn.observed_items
    }
    observed: bool = draw(st.booleans())
    if defn.observed_items and observed:
        answers |= {code: draw(st.integers(0, 4)) for code in defn.observed_items}
    oriented = draw(st.booleans()) if defn.orientation_gate else None
    score = instruments.score(defn, answers, oriented=oriented)
    flags = tuple(draw(st.lists(st.sampled_from(sorted(RULES.red_flags)), max_size=2)))
    pulse = draw(st.none() | st.integers(20, 250))
    return ReportFacts(score, answers, flags, pulse)


ANY_THRESHOLDS = st.dictionaries(
    st.sampled_from([*sorted(RULES.overridable), "red_flag:seizure", "band:phq-9:red"]),
    st.integers(0, 100) | st.integers(-(10**6), 10**6),
    min_size=2,
    max_size=10,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(report=scored_reports(), thresholds=ANY_THRESHOLDS, baseline=st.none() | st.integers(0, 80))
def test_no_threshold_setting_makes_a_default_red_report_less_than_red(
    report: ReportFacts, thresholds: dict[str, int], baseline: int | None
) -> None:
    """Any stored setting (even one check_overrides would refuse, e.g. saved before it existed)."""
    default = evaluate(report, PatientContext(today=TODAY, baseline_total=baseline), RULES)
    ctx = PatientContext(today=TODAY, baseline_total=baseline, thresholds=thresholds)
    moved = evaluate(report, ctx, RULES)
    for family in {f.family for f in default if f.severity is Severity.RED}:
        assert any(f.family == family and f.severity is Severity.RED for f in moved)


@settings(max_examples=EXAMPLES, deadline=None)
@given(thresholds=ANY_THRESHOLDS)
def test_accepted_thresholds_stay_in_range_and_only_lower_red(thresholds: dict[str, int]) -> None:
    try:
        RULES.check_overrides(thresholds)
    except InvalidReport as exc:
        assert exc.field.startswith("thresholds.")
        # the allowed range or the key's status, never the value sent
        assert re.fullmatch(r"must be an integer \d+\.\.\d+|not an overridable rule", exc.problem)
        return
    for key, value in thresholds.items():
        kind, _, rest = key.partition(":")
        if kind == "pulse":
            assert vitals.pulse_bpm().low <= value <= vitals.pulse_bpm().high
            continue
        instrument = rest.partition(":")[0]
        top = max(d.total_max for d in DEFNS if d.code == instrument)
        assert 1 <= value <= top
    assert thresholds.get("band:ciwa-b:red", 41) <= 41
    red = thresholds.get("band:ciwa-b:red", 41)
    assert thresholds.get("band:ciwa-b:amber", 0) <= red


@pytest.mark.parametrize(
    ("thresholds", "field"),
    [
        ({"band:ciwa-b:red": 1000}, "thresholds.band:ciwa-b:red"),  # the example
        ({"band:ciwa-b:red": 42}, "thresholds.band:ciwa-b:red"),  # looser than the default
        ({"band:ciwa-b:amber": 81}, "thresholds.band:ciwa-b:amber"),  # above the maximum 80
        ({"band:ciwa-b:amber": 36, "band:ciwa-b:red": 35}, "thresholds.band:ciwa-b:amber"),
        ({"rise:phq-9": 28}, "thresholds.rise:phq-9"),
        ({"pulse:amber": 300}, "thresholds.pulse:amber"),
        ({"band:ciwa-b:amber": True}, "thresholds.band:ciwa-b:amber"),
    ],
)
def test_thresholds_out_of_range_or_loosening_red_are_refused(
    thresholds: dict[str, int], field: str
) -> None:
    with pytest.raises(InvalidReport) as exc:
        RULES.check_overrides(thresholds)
    assert exc.value.field == field


def test_a_stricter_red_is_accepted_and_used_and_a_stored_1000_does_not_switch_red_off() -> None:
    RULES.check_overrides({"band:ciwa-b:red": 35, "band:ciwa-b:amber": 30})
    codes = list(full(CIWA))
    total_16 = facts(take(CIWA, answers=full(CIWA, **dict.fromkeys(codes[:4], 4)), oriented=True))
    total_44 = facts(take(CIWA, answers=full(CIWA, **dict.fromkeys(codes[:11], 4)), oriented=True))
    lowered = PatientContext(today=TODAY, thresholds={"band:ciwa-b:red": 16})
    assert worst([f.severity for f in evaluate(total_16, lowered, RULES)]) is Severity.RED
    stored_1000 = PatientContext(today=TODAY, thresholds={"band:ciwa-b:red": 1000})
    assert worst([f.severity for f in evaluate(total_44, stored_1000, RULES)]) is Severity.RED


# --- item 4 / property (c): the domain refuses out-of-range values -------------------------------
@settings(max_examples=EXAMPLES, deadline=None)
@given(pulse=st.integers().filter(lambda p: not 20 <= p <= 250) | st.floats() | st.booleans())
def test_the_domain_refuses_an_implausible_pulse(pulse: Any) -> None:
    with pytest.raises(InvalidReport) as exc:
        ReportFacts(None, {}, pulse_bpm=pulse, instrument="ciwa-b")
    assert exc.value.field == "pulse_bpm" and str(pulse) not in exc.value.problem.split()


@settings(max_examples=EXAMPLES, deadline=None)
@given(pulse=st.integers(20, 250))
def test_the_domain_accepts_a_plausible_pulse(pulse: int) -> None:
    assert ReportFacts(None, {}, pulse_bpm=pulse, instrument="ciwa-b").pulse_bpm == pulse


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    defn=st.sampled_from(DEFNS),
    value=st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=3) | st.booleans(),
)
def test_the_domain_refuses_an_out_of_range_answer(
    defn: instruments.InstrumentDefinition, value: Any
) -> None:
    spec = defn.items[0]
    valid = type(value) is int and spec.min <= value <= spec.max
    oriented = True if defn.orientation_gate else None
    taken = take(defn, answers=full(defn, **{spec.code: value}), oriented=oriented)
    assert (spec.code in taken.answers) is valid
    assert (taken.score is not None) is valid
    with nullcontext() if valid else pytest.raises(InvalidReport):
        instruments.score(defn, full(defn, **{spec.code: value}), oriented=oriented)
