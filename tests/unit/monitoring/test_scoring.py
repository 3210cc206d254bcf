"""CIWA-B scoring and the escalation rules (walking-skeleton scope; issue 4 adds the rest)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.monitoring.domain.model import InvalidReport, Severity, assess, score_ciwa_b
from services.monitoring.domain.reference import ciwa_b_v1, rules_v1

CIWA = ciwa_b_v1()
RULES = rules_v1()


def answers(value: int = 0, **overrides: int) -> dict[str, int]:
    return {**dict.fromkeys(CIWA.patient_items, value), **overrides}


def test_reference_data_names_its_source() -> None:
    assert "Busto" in CIWA.source
    assert "clinical-reference" in RULES.source


@pytest.mark.parametrize(
    ("total", "band"),
    [(0, "none"), (1, "mild"), (20, "mild"), (21, "moderate"), (40, "moderate"), (41, "severe")],
)
def test_bands_follow_the_form(total: int, band: str) -> None:
    assert CIWA.band_for(total) == band


def test_self_report_without_observed_items_is_marked_modified() -> None:
    score = score_ciwa_b(CIWA, answers(1), oriented=True)
    assert score.method == "self-report-modified"
    assert score.total == len(CIWA.patient_items)


def test_clinician_observed_items_count_when_all_present() -> None:
    observed = dict.fromkeys(CIWA.clinician_items, 4)
    score = score_ciwa_b(CIWA, {**answers(0), **observed}, oriented=True)
    assert score.method == "clinician"
    assert score.total == 4 * len(CIWA.clinician_items)


@pytest.mark.parametrize(
    ("given_answers", "field"),
    [
        ({k: v for k, v in answers(1).items() if k != "tense"}, "answers.tense"),
        (answers(1, tense=5), "answers.tense"),
        (answers(1, tense=-1), "answers.tense"),
        (answers(1, shoe_size=3), "answers.shoe_size"),
        (answers(1, tremor=2), "answers"),  # one observed item without the others
    ],
)
def test_invalid_reports_name_the_item(given_answers: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidReport) as caught:
        score_ciwa_b(CIWA, given_answers, oriented=True)
    assert caught.value.field == field


def test_failed_orientation_gate_is_red_and_not_scored() -> None:
    score = score_ciwa_b(CIWA, {}, oriented=False)
    assessment = assess(score, (), RULES)
    assert not score.scored
    assert assessment.severity is Severity.RED
    assert [r.code for r in assessment.reasons] == ["gate:not_oriented"]


def test_amber_and_red_bands() -> None:
    amber = assess(
        score_ciwa_b(
            CIWA,
            answers(0, tense=4, irritable=4, upset=4, weak=4, fearful=4, fatigued=1),
            oriented=True,
        ),
        (),
        RULES,
    )
    assert amber.score.total == 21 and amber.severity is Severity.AMBER
    red = assess(score_ciwa_b(CIWA, answers(3), oriented=True), (), RULES)
    assert red.score.total == 51 and red.severity is Severity.RED
    calm = assess(score_ciwa_b(CIWA, answers(1), oriented=True), (), RULES)
    assert calm.severity is None


@given(
    values=st.lists(st.integers(0, 4), min_size=17, max_size=17),
    flags=st.lists(st.sampled_from(sorted(RULES.red_flags)), min_size=1, max_size=3),
)
def test_any_red_flag_is_red_whatever_the_score(values: list[int], flags: list[str]) -> None:
    score = score_ciwa_b(CIWA, dict(zip(CIWA.patient_items, values, strict=True)), oriented=True)
    assessment = assess(score, tuple(flags), RULES)
    assert assessment.severity is Severity.RED
    assert {f"red_flag:{f}" for f in flags} <= {r.code for r in assessment.reasons}


def test_unknown_red_flag_is_refused() -> None:
    with pytest.raises(InvalidReport):
        assess(score_ciwa_b(CIWA, answers(0), oriented=True), ("sneezing",), RULES)
