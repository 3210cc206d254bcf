"""The escalation aggregate (pure): its state machine and the events it records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import PageAcknowledged
from services.notifications.domain.escalation import PolicyDefinition, Step
from services.notifications.domain.paging import (
    Escalation,
    EscalationStatus,
    ForbiddenTransition,
)

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
POLICY = PolicyDefinition.model_validate(
    {
        "levels": [
            {"targets": [{"kind": "clinician", "ref": "dr-a"}], "ack_timeout_minutes": 5},
            {"targets": [{"kind": "clinician", "ref": "dr-b"}], "ack_timeout_minutes": 10},
        ],
        "loops": 0,
        "repage_unresolved_after_minutes": 30,
    }
)


def opened(severity: str = "RED") -> Escalation:
    return Escalation.open(
        episode_id=uuid.uuid4(),
        patient_id=uuid.uuid4(),
        severity=severity,
        family="withdrawal",
        reason_codes=["ciwa_high"],
        threshold_event_id=uuid.uuid4(),
        policy_key="red",
        policy_version=0,
        policy=POLICY,
        now=NOW,
    )


def test_a_walk_pages_each_level_then_is_exhausted() -> None:
    esc = opened()
    assert (esc.status, esc.level, esc.next_step_at) == (EscalationStatus.TRIGGERED, 0, NOW)
    assert esc.next_step_key == Step(0, 0, 1).timer_key(esc.id)
    following = esc.step_paged(Step(0, 0, 1), NOW)
    assert following == Step(0, 0, 2)
    assert esc.next_step_at == NOW + timedelta(minutes=5)
    assert esc.step_paged(Step(0, 0, 2), NOW) is None
    assert esc.next_step_key == f"{esc.id}:c0:exhausted"
    assert esc.expects(f"{esc.id}:c0:exhausted", EscalationStatus.TRIGGERED)
    esc.exhaust()
    assert (esc.status, esc.next_step_key) == (EscalationStatus.EXHAUSTED, None)
    assert esc.pull_events() == []


def test_acknowledging_records_page_acknowledged_once_and_arms_the_repage() -> None:
    esc = opened()
    assert esc.acknowledge("dr-a", "api", NOW)
    assert not esc.acknowledge("dr-a", "api", NOW)  # twice changes nothing
    events = esc.pull_events()
    assert [type(e) for e in events] == [PageAcknowledged]
    ack = events[0]
    assert isinstance(ack, PageAcknowledged)
    assert (ack.episode_id, ack.acknowledged_by, ack.channel) == (esc.episode_id, "dr-a", "api")
    assert esc.next_step_key == f"{esc.id}:c0:repage"
    assert esc.next_step_at == NOW + timedelta(minutes=30)
    assert esc.pull_events() == []  # published once
    step = esc.repage(NOW)
    assert (step, esc.status, esc.acknowledged_by) == (Step(1, 0, 1), "triggered", None)


@pytest.mark.parametrize("stop", ["resolve", "supersede"])
def test_a_closed_escalation_refuses_every_change(stop: str) -> None:
    esc = opened()
    esc.resolve("resolved", NOW) if stop == "resolve" else esc.supersede()
    with pytest.raises(ForbiddenTransition, match=f"escalation is {esc.status.value}"):
        esc.acknowledge("dr-a", "api", NOW)
    with pytest.raises(ForbiddenTransition):
        esc.step_paged(Step(0, 0, 1), NOW)
    with pytest.raises(ForbiddenTransition):
        esc.exhaust()
    with pytest.raises(ForbiddenTransition):
        esc.repage(NOW)
    assert esc.pull_events() == []


ACTIONS = st.lists(
    st.sampled_from(["step", "exhaust", "ack", "repage", "resolve", "supersede"]), max_size=12
)


@given(ACTIONS)
def test_any_sequence_keeps_to_the_state_machine(actions: list[str]) -> None:
    """Whatever happens, a change either obeys the machine or raises, a closed escalation stays
    closed, and there is one PageAcknowledged per acknowledgement that changed something."""
    esc = opened()
    acknowledged = 0
    for action in actions:
        before = esc.status
        try:
            if action == "step":
                esc.step_paged(Step(esc.cycle, 0, 1), NOW)
            elif action == "exhaust":
                esc.exhaust()
            elif action == "ack":
                acknowledged += esc.acknowledge("dr-a", "api", NOW)
            elif action == "repage":
                esc.repage(NOW)
            elif action == "resolve":
                esc.resolve("resolved", NOW)
            else:
                esc.supersede()
        except ForbiddenTransition:
            assert esc.status == before
            continue
        if before in (EscalationStatus.RESOLVED, EscalationStatus.SUPERSEDED):
            pytest.fail(f"{action} changed a closed escalation")
    assert len(esc.pull_events()) == acknowledged
