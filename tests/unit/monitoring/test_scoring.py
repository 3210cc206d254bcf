"""CIWA-B scoring through the legacy entry point (the rules are in test_rules.py)."""

from __future__ import annotations

import pytest

from services.monitoring.domain.model import InvalidReport, score_ciwa_b
from services.monitoring.domain.reference import ciwa_b_v1

CIWA = ciwa_b_v1()


def answers(value: int = 0, **overrides: int) -> dict[str, int]:
    return {**dict.fromkeys(CIWA.patient_items, value), **overrides}


def test_reference_data_names_its_source() -> None:
    assert "Busto" in CIWA.source


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
