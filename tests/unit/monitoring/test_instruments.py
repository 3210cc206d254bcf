"""The data-driven instrument catalogue: CIWA-B, BWSQ, PHQ-9 and GAD-7 scored by one function."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.monitoring.domain import instruments
from services.monitoring.domain.instruments import (
    InstrumentDefinition,
    catalogue,
    definition,
    parse_definition,
    score,
)
from services.monitoring.domain.model import InvalidReport
from services.monitoring.domain.reference import _load, ciwa_b_v1

CIWA = definition("ciwa-b", "1")
BWSQ = definition("bwsq", "1")
PHQ9 = definition("phq-9", "1")
GAD7 = definition("gad-7", "1")
SELF_REPORT = (BWSQ, PHQ9, GAD7)


def oriented_for(defn: InstrumentDefinition) -> bool | None:
    return True if defn.orientation_gate else None


def answers_totalling(defn: InstrumentDefinition, total: int) -> dict[str, int]:
    """Required items only (CIWA-B: self-report), filled greedily to reach ``total``."""
    result: dict[str, int] = {}
    left = total
    for item in defn.items:
        if item.code in defn.observed_items:
            continue
        result[item.code] = min(item.max, left)
        left -= result[item.code]
    assert left == 0, "total not reachable from the required items"
    return result


def full(defn: InstrumentDefinition, value: int = 0, **overrides: int) -> dict[str, int]:
    required = [i.code for i in defn.items if i.code not in defn.observed_items]
    return {**dict.fromkeys(required, value), **overrides}


# --- the catalogue ------------------------------------------------------------------------------


def test_catalogue_lists_exactly_the_four_instruments() -> None:
    assert set(catalogue()) == {("ciwa-b", "1"), ("bwsq", "1"), ("phq-9", "1"), ("gad-7", "1")}


def test_catalogue_is_a_copy_and_cached() -> None:
    first = catalogue()
    first.clear()
    assert len(catalogue()) == 4
    assert definition("phq-9", "1") is PHQ9


@pytest.mark.parametrize(("code", "version"), [("phq-9", "2"), ("phq9", "1"), ("ciwa-ar", "1")])
def test_unknown_instrument_or_version_is_refused(code: str, version: str) -> None:
    with pytest.raises(InvalidReport) as caught:
        definition(code, version)
    assert caught.value.field == "instrument_version"
    assert caught.value.problem == "unknown instrument or version"


@pytest.mark.parametrize("defn", [CIWA, BWSQ, PHQ9, GAD7], ids=lambda d: d.code)
def test_every_instrument_cites_the_clinical_reference(defn: InstrumentDefinition) -> None:
    assert "clinical-reference.md §3." in defn.source
    assert "[S1" in defn.source
    assert defn.method_default == "self-report"


@pytest.mark.parametrize(
    ("defn", "items", "item_max", "total_max"),
    [(CIWA, 20, 4, 80), (BWSQ, 20, 2, 40), (PHQ9, 9, 3, 27), (GAD7, 7, 3, 21)],
    ids=lambda v: getattr(v, "code", str(v)),
)
def test_item_counts_and_ranges_follow_the_reference(
    defn: InstrumentDefinition, items: int, item_max: int, total_max: int
) -> None:
    assert len(defn.items) == items
    assert {(i.min, i.max) for i in defn.items} == {(0, item_max)}
    assert (defn.total_min, defn.total_max) == (0, total_max)


def test_phq9_item_9_carries_loinc_44260_8() -> None:
    assert "item_9" in PHQ9.item_codes
    item_9 = PHQ9.items[PHQ9.item_codes.index("item_9")]
    assert item_9.loinc == "44260-8"
    assert item_9.text is not None and "better off dead" in item_9.text


def test_only_codes_the_reference_gives_are_filled_in() -> None:
    assert {i.code: i.loinc for i in PHQ9.items if i.loinc} == {
        "item_1": "44250-9",
        "item_9": "44260-8",
    }
    for defn in (CIWA, BWSQ, GAD7):
        assert all(i.loinc is None for i in defn.items)
    assert (CIWA.total_loinc, BWSQ.total_loinc) == (None, None)
    assert (PHQ9.total_loinc, GAD7.total_loinc) == ("44261-6", "70274-6")
    # every code not confirmed in the reference is listed as unconfirmed
    assert any("44250-9" in note for note in PHQ9.unconfirmed)
    assert any("44261-6" in note for note in PHQ9.unconfirmed)
    assert any("70274-6" in note for note in GAD7.unconfirmed)


def test_bwsq_is_unbanded_and_its_unconfirmed_scoring_and_items_are_recorded() -> None:
    assert BWSQ.bands == ()
    assert BWSQ.observed_items == () and not BWSQ.orientation_gate
    assert "sensitive_to_noise" in BWSQ.item_codes and "memory_loss" in BWSQ.item_codes
    notes = " ".join(BWSQ.unconfirmed)
    assert "scoring" in notes and "items" in notes and "bands" in notes
    assert "17 entries" in notes  # the reference's list is shorter than the stated 20 items


def test_ciwa_b_catalogue_entry_matches_the_legacy_definition() -> None:
    legacy = ciwa_b_v1()
    assert CIWA.orientation_gate
    assert CIWA.observed_items == legacy.clinician_items
    assert tuple(c for c in CIWA.item_codes if c not in CIWA.observed_items) == (
        legacy.patient_items
    )
    assert CIWA.bands == legacy.bands
    assert (CIWA.version, CIWA.source) == (legacy.version, legacy.source)
    assert CIWA.unconfirmed == ()


# --- totals and bands ---------------------------------------------------------------------------

BOUNDARIES = [
    (CIWA, 0, "none"),
    (CIWA, 1, "mild"),
    (CIWA, 20, "mild"),
    (CIWA, 21, "moderate"),
    (CIWA, 40, "moderate"),
    (CIWA, 41, "severe"),
    (CIWA, 60, "severe"),
    (CIWA, 61, "very_severe"),
    (CIWA, 68, "very_severe"),  # the self-report maximum, 17 x 4
    (PHQ9, 0, "minimal"),
    (PHQ9, 4, "minimal"),
    (PHQ9, 5, "mild"),
    (PHQ9, 9, "mild"),
    (PHQ9, 10, "moderate"),
    (PHQ9, 14, "moderate"),
    (PHQ9, 15, "moderately_severe"),
    (PHQ9, 19, "moderately_severe"),
    (PHQ9, 20, "severe"),
    (PHQ9, 27, "severe"),
    (GAD7, 0, "minimal"),
    (GAD7, 4, "minimal"),
    (GAD7, 5, "mild"),
    (GAD7, 9, "mild"),
    (GAD7, 10, "moderate"),
    (GAD7, 14, "moderate"),
    (GAD7, 15, "severe"),
    (GAD7, 21, "severe"),
    (BWSQ, 0, "unbanded"),
    (BWSQ, 1, "unbanded"),
    (BWSQ, 39, "unbanded"),
    (BWSQ, 40, "unbanded"),
]


@pytest.mark.parametrize(
    ("defn", "total", "band"), BOUNDARIES, ids=[f"{d.code}-{t}" for d, t, _ in BOUNDARIES]
)
def test_full_report_scores_total_and_band_at_each_boundary(
    defn: InstrumentDefinition, total: int, band: str
) -> None:
    result = score(defn, answers_totalling(defn, total), oriented=oriented_for(defn))
    assert (result.instrument, result.version) == (defn.code, "1")
    assert (result.total, result.band, result.scored) == (total, band, True)


@pytest.mark.parametrize(("total", "band"), [(71, "very_severe"), (80, "very_severe")])
def test_ciwa_b_with_observed_items_reaches_the_top_band(total: int, band: str) -> None:
    answers = {**full(CIWA, 4), **dict.fromkeys(CIWA.observed_items, (total - 68) // 3)}
    result = score(CIWA, answers, oriented=True)
    assert (result.method, result.total, result.band) == ("clinician", total, band)


def test_every_band_of_every_instrument_is_reachable_by_the_boundaries() -> None:
    covered = {(d.code, b) for d, _, b in BOUNDARIES}
    for defn in (CIWA, PHQ9, GAD7):
        assert {(defn.code, band.name) for band in defn.bands} <= covered


# --- method and the orientation gate ------------------------------------------------------------


def test_ciwa_b_without_observed_items_is_self_report_modified() -> None:
    result = score(CIWA, full(CIWA, 1), oriented=True)
    assert (result.method, result.total) == ("self-report-modified", 17)


def test_ciwa_b_with_all_observed_items_is_clinician() -> None:
    result = score(CIWA, {**full(CIWA, 0), **dict.fromkeys(CIWA.observed_items, 4)}, oriented=True)
    assert (result.method, result.total, result.band) == ("clinician", 12, "mild")


def test_ciwa_b_partial_observed_items_are_refused() -> None:
    with pytest.raises(InvalidReport) as caught:
        score(CIWA, full(CIWA, 1, tremor=2), oriented=True)
    assert caught.value.field == "answers"


@pytest.mark.parametrize("defn", SELF_REPORT, ids=lambda d: d.code)
def test_other_instruments_are_self_report(defn: InstrumentDefinition) -> None:
    assert score(defn, full(defn, 1)).method == "self-report"


def test_failed_orientation_gate_is_not_scored_whatever_the_answers() -> None:
    for answers in ({}, full(CIWA, 4), {"shoe_size": 9}):
        result = score(CIWA, answers, oriented=False)
        assert (result.method, result.total, result.band) == ("not-scored", 0, "not_scored")
        assert not result.scored
        assert (result.instrument, result.version) == ("ciwa-b", "1")


def test_gated_instrument_requires_the_orientation_answer() -> None:
    with pytest.raises(InvalidReport) as caught:
        score(CIWA, full(CIWA, 1))
    assert (caught.value.field, caught.value.problem) == (
        "oriented",
        "required for this instrument",
    )


@pytest.mark.parametrize("oriented", [True, False])
@pytest.mark.parametrize("defn", SELF_REPORT, ids=lambda d: d.code)
def test_ungated_instruments_refuse_an_orientation_answer(
    defn: InstrumentDefinition, oriented: bool
) -> None:
    with pytest.raises(InvalidReport) as caught:
        score(defn, full(defn, 1), oriented=oriented)
    assert (caught.value.field, caught.value.problem) == ("oriented", "not used by this instrument")


# --- invalid reports name the item, never the value ---------------------------------------------


def _invalid_cases() -> list[tuple[InstrumentDefinition, dict[str, int], str, str]]:
    cases = []
    for defn in (CIWA, BWSQ, PHQ9, GAD7):
        first = defn.items[0]
        last = [i for i in defn.items if i.code not in defn.observed_items][-1]
        without_last = {k: v for k, v in full(defn, 1).items() if k != last.code}
        cases += [
            (defn, without_last, f"answers.{last.code}", "missing item"),
            (defn, full(defn, 1, shoe_size=3), "answers.shoe_size", "unknown item"),
            (defn, full(defn, 1, **{first.code: first.max + 1}), f"answers.{first.code}", ""),
            (defn, full(defn, 1, **{first.code: -1}), f"answers.{first.code}", ""),
        ]
    return cases


@pytest.mark.parametrize(
    ("defn", "answers", "field", "problem"),
    _invalid_cases(),
    ids=[f"{d.code}-{f}-{p or 'range'}" for d, _, f, p in _invalid_cases()],
)
def test_invalid_reports_name_the_item(
    defn: InstrumentDefinition, answers: dict[str, int], field: str, problem: str
) -> None:
    with pytest.raises(InvalidReport) as caught:
        score(defn, answers, oriented=oriented_for(defn))
    assert caught.value.field == field
    item = defn.items[0]
    assert caught.value.problem == (problem or f"must be {item.min}..{item.max}")
    if not problem:
        assert str(answers[field.removeprefix("answers.")]) not in caught.value.problem


@pytest.mark.parametrize("value", [True, 1.0, "1", None])
def test_values_must_be_true_integers(value: Any) -> None:
    with pytest.raises(InvalidReport) as caught:
        score(PHQ9, {**full(PHQ9, 0), "item_9": value})
    assert (caught.value.field, caught.value.problem) == ("answers.item_9", "must be 0..3")


def test_phq9_item_9_is_required() -> None:
    answers = {k: v for k, v in full(PHQ9, 0).items() if k != "item_9"}
    with pytest.raises(InvalidReport) as caught:
        score(PHQ9, answers)
    assert caught.value.field == "answers.item_9"


# --- properties ---------------------------------------------------------------------------------


@st.composite
def complete_reports(draw: st.DrawFn) -> tuple[InstrumentDefinition, dict[str, int]]:
    defn = draw(st.sampled_from(sorted(catalogue().values(), key=lambda d: d.code)))
    with_observed = draw(st.booleans())
    answers = {
        item.code: draw(st.integers(item.min, item.max))
        for item in defn.items
        if with_observed or item.code not in defn.observed_items
    }
    return defn, answers


@given(complete_reports())
def test_any_complete_in_range_report_scores_its_sum_inside_its_band(
    report: tuple[InstrumentDefinition, dict[str, int]],
) -> None:
    defn, answers = report
    result = score(defn, answers, oriented=oriented_for(defn))
    assert result.scored
    assert result.total == sum(answers.values())
    assert defn.total_min <= result.total <= defn.total_max
    if defn.bands:
        (band,) = [b for b in defn.bands if b.name == result.band]
        assert band.low <= result.total <= band.high
    else:
        assert result.band == "unbanded"


# --- data checks --------------------------------------------------------------------------------


def _raw_phq9() -> dict[str, Any]:
    return copy.deepcopy(_load("phq9.v1.json"))


def _broken(change: str) -> dict[str, Any]:
    raw = _raw_phq9()
    if change == "gap":
        raw["bands"][1]["min"] = 6
    elif change == "short":
        raw["bands"][-1]["max"] = 26
    elif change == "observed":
        raw["observed_items"] = ["tremor"]
    elif change == "duplicate_item":
        raw["items"].append(dict(raw["items"][0]))
    elif change == "typo_key":
        raw["observed_item"] = raw.pop("observed_items")
    elif change == "loinc":
        raw["items"][0]["loinc"] = "44250"
    elif change == "source":
        raw["source"] = "general knowledge"
    elif change == "reserved_band":
        raw["bands"][0]["band"] = "unbanded"
    return raw


@pytest.mark.parametrize(
    "change",
    ["gap", "short", "observed", "duplicate_item", "typo_key", "loinc", "source", "reserved_band"],
)
def test_bad_instrument_data_is_refused_at_load(change: str) -> None:
    with pytest.raises(ValueError, match=r"phq-9|instrument data"):
        parse_definition(_broken(change))


def test_file_version_must_match_the_data() -> None:
    assert parse_definition(_raw_phq9(), file_version="1") == PHQ9
    with pytest.raises(ValueError, match="file name"):
        parse_definition(_raw_phq9(), file_version="2")


def test_unbanded_and_not_scored_are_reserved_names() -> None:
    assert instruments.UNBANDED == "unbanded"
    assert instruments.NOT_SCORED == "not_scored"
