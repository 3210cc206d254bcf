"""CIWA-B scoring through the scorer the service uses (``instruments.definition`` then
``instruments.score``, as ``intake`` calls it); the rules are in test_rules.py."""

from __future__ import annotations

import pytest

from services.monitoring.domain.instruments import definition, score
from services.monitoring.domain.model import InvalidReport

CIWA = definition("ciwa-b", "1")
PATIENT_ITEMS = tuple(c for c in CIWA.item_codes if c not in CIWA.observed_items)


def answers(value: int = 0, **overrides: int) -> dict[str, int]:
    return {**dict.fromkeys(PATIENT_ITEMS, value), **overrides}


def test_reference_data_names_its_source() -> None:
    assert "Busto" in CIWA.source


@pytest.mark.parametrize(
    ("total", "band"),
    [(0, "none"), (1, "mild"), (20, "mild"), (21, "moderate"), (40, "moderate"), (41, "severe")],
)
def test_bands_follow_the_form(total: int, band: str) -> None:
    assert CIWA.band_for(total) == band


def test_self_report_without_observed_items_is_marked_modified() -> None:
    result = score(CIWA, answers(1), oriented=True)
    assert result.method == "self-report-modified"
    assert result.total == len(PATIENT_ITEMS)


def test_clinician_observed_items_count_when_all_present() -> None:
    observed = dict.fromkeys(CIWA.observed_items, 4)
    result = score(CIWA, {**answers(0), **observed}, oriented=True)
    assert result.method == "clinician"
    assert result.total == 4 * len(CIWA.observed_items)


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
        score(CIWA, given_answers, oriented=True)
    assert caught.value.field == field
