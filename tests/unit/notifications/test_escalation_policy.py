"""The policy walk (pure): levels in order, loops, then spent; the shipped data is complete."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.domain import escalation
from services.notifications.domain.escalation import PolicyDefinition, Step, first_step, step_after

DATA = Path(escalation.__file__).parent / "data" / "escalation.v1.json"


def policy(levels: int, loops: int) -> PolicyDefinition:
    return PolicyDefinition.model_validate(
        {
            "levels": [
                {"targets": [{"kind": "clinician", "ref": f"c{i}"}], "ack_timeout_minutes": 5}
                for i in range(levels)
            ],
            "loops": loops,
        }
    )


@given(st.integers(1, 10), st.integers(0, 20), st.integers(0, 3))
def test_a_walk_visits_every_level_once_per_loop_then_stops(
    levels: int, loops: int, cycle: int
) -> None:
    p = policy(levels, loops)
    steps = [first_step(cycle)]
    while (nxt := step_after(p, steps[-1])) is not None:
        steps.append(nxt)
    assert steps == [Step(cycle, o, lv) for o in range(loops + 1) for lv in range(1, levels + 1)]


def test_the_shipped_defaults_follow_the_clinical_reference() -> None:
    d = escalation.defaults()
    red, amber = d.policies[d.routes["RED"]], d.policies[d.routes["AMBER"]]
    assert [lv.ack_timeout_minutes for lv in red.levels] == [5, 5, 5]
    assert red.loops == 3 and red.repage_unresolved_after_minutes == 30
    assert red.business_hours is None
    assert amber.levels[0].ack_timeout_minutes == 60 and amber.business_hours is not None
    saturday = datetime(2026, 3, 7, 15, tzinfo=UTC)
    assert escalation.first_page_at(red, "RED", saturday) == saturday
    assert escalation.first_page_at(amber, "AMBER", saturday) > saturday


def test_shipped_data_that_routes_to_a_missing_policy_is_refused() -> None:
    raw = json.loads(DATA.read_text())
    broken = copy.deepcopy(raw)
    broken["routes"]["RED"] = "nobody"
    with pytest.raises(ValueError, match="not shipped"):
        escalation.parse_defaults(broken)
    del raw["routes"]["AMBER"]
    with pytest.raises(ValueError, match="RED and for AMBER"):
        escalation.parse_defaults(raw)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"levels": []}, "levels"),
        ({"loops": 21}, "loops"),
        ({"loops": -1}, "loops"),
        ({"repage_unresolved_after_minutes": 0}, "repage_unresolved_after_minutes"),
        (
            {
                "business_hours": {
                    "timezone": "Nowhere/Land",
                    "weekdays": [0],
                    "opens": "09:00",
                    "closes": "17:00",
                }
            },
            "business_hours",
        ),
        (
            {
                "business_hours": {
                    "timezone": "UTC",
                    "weekdays": [7],
                    "opens": "09:00",
                    "closes": "17:00",
                }
            },
            "business_hours",
        ),
        (
            # a clinician nobody's token could name: paged, but never able to acknowledge
            {
                "levels": [
                    {
                        "targets": [{"kind": "clinician", "ref": "Dr.Jane@clinic"}],
                        "ack_timeout_minutes": 5,
                    }
                ]
            },
            "levels",
        ),
    ],
)
def test_invalid_policies_name_the_field(change: dict[str, object], field: str) -> None:
    base = policy(1, 0).model_dump(mode="json") | change
    with pytest.raises(ValueError) as refused:
        PolicyDefinition.model_validate(base)
    assert refused.value.errors()[0]["loc"][0] == field  # type: ignore[attr-defined]
