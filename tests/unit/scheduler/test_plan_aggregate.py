"""The Plan aggregate: the only way a plan's or a step's status changes, each move checked
against the state machines of ``plan_states`` (kind-aware)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scheduler.domain.model import TaperStateConflict
from services.scheduler.domain.plan import Plan, PlanStep
from services.scheduler.domain.plan_states import (
    LIVE_STEP,
    STEP_MOVES,
    PlanKind,
    PlanStatus,
    PlanStepStatus,
    plan_moves,
)

DAY = date(2026, 3, 2)


def a_plan(
    kind: PlanKind = PlanKind.PLANNED,
    status: PlanStatus = PlanStatus.ACTIVE,
    steps: tuple[PlanStepStatus, ...] = (PlanStepStatus.PLANNED, PlanStepStatus.PLANNED),
) -> Plan:
    return Plan(
        plan_id=uuid.uuid4(),
        patient_id=uuid.uuid4(),
        kind=kind,
        status=status,
        approved_by_decision_id=uuid.uuid4() if status is not PlanStatus.DRAFT else None,
        summary={},
        input={},
        version=1,
        steps=[
            PlanStep(n, DAY + timedelta(weeks=2 * n), "reduction", [], s)
            for n, s in enumerate(steps, start=1)
        ],
    )


def test_a_step_is_armed_emitted_and_the_next_one_found() -> None:
    plan = a_plan()
    plan.arm(1)
    dose_step = uuid.uuid4()
    plan.emitted(1, dose_step)
    assert plan.step(1) == PlanStep(
        1, DAY + timedelta(weeks=2), "reduction", [], PlanStepStatus.EMITTED, dose_step
    )
    following = plan.next_live_step(after=1)
    assert following is not None and following.number == 2
    assert plan.changed_steps == {1} and not plan.status_changed


def test_an_ended_plan_arms_no_step() -> None:
    plan = a_plan(PlanKind.PLANNED, PlanStatus.DRAFT)
    with pytest.raises(TaperStateConflict):
        plan.arm(1)
    assert plan.step(1).status is PlanStepStatus.PLANNED  # type: ignore[union-attr]


def test_a_blocked_step_is_moved_on_resume_then_armed_again() -> None:
    plan = a_plan()
    plan.arm(1)
    plan.block(1)
    assert plan.next_live_step() is plan.step(1)  # blocked is still live
    plan.resume_from(1, timedelta(days=3))
    assert [(s.status, s.effective_on) for s in plan.steps] == [
        (PlanStepStatus.PLANNED, DAY + timedelta(weeks=2, days=3)),
        (PlanStepStatus.PLANNED, DAY + timedelta(weeks=4, days=3)),
    ]
    plan.arm(1)
    assert plan.step(1).status is PlanStepStatus.SCHEDULED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("move", "status"),
    [
        ("emitted", PlanStepStatus.PLANNED),  # never armed
        ("block", PlanStepStatus.PLANNED),
        ("arm", PlanStepStatus.SCHEDULED),  # armed twice
        ("arm", PlanStepStatus.PROPOSED),  # a proposal is never armed
        ("arm", PlanStepStatus.BLOCKED_BY_HOLD),  # re-dated first
        ("arm", PlanStepStatus.EMITTED),
        ("arm", PlanStepStatus.CANCELLED),
        ("block", PlanStepStatus.EMITTED),
    ],
)
def test_forbidden_step_moves_are_refused(move: str, status: PlanStepStatus) -> None:
    plan = a_plan(steps=(status,))
    args = (1, uuid.uuid4()) if move == "emitted" else (1,)
    with pytest.raises(TaperStateConflict):
        getattr(plan, move)(*args)
    assert plan.step(1).status is status and not plan.changed_steps  # type: ignore[union-attr]


def test_closing_cancels_the_steps_not_taken_and_keeps_the_taken_ones() -> None:
    plan = a_plan(steps=(PlanStepStatus.EMITTED, PlanStepStatus.SCHEDULED, PlanStepStatus.PROPOSED))
    plan.close(PlanStatus.MAINTENANCE)
    assert plan.status is PlanStatus.MAINTENANCE and plan.status_changed
    assert [s.status for s in plan.steps] == [
        PlanStepStatus.EMITTED,
        PlanStepStatus.CANCELLED,
        PlanStepStatus.CANCELLED,
    ]
    assert plan.changed_steps == {2, 3}


@pytest.mark.parametrize(
    ("kind", "start", "end", "allowed"),
    [
        (PlanKind.PLANNED, PlanStatus.ACTIVE, PlanStatus.COMPLETED, True),
        (PlanKind.PLANNED, PlanStatus.ACTIVE, PlanStatus.MAINTENANCE, True),
        (PlanKind.PLANNED, PlanStatus.ACTIVE, PlanStatus.CANCELLED, False),  # adjust or end it
        (PlanKind.PLANNED, PlanStatus.DRAFT, PlanStatus.CANCELLED, True),
        (PlanKind.PLANNED, PlanStatus.DRAFT, PlanStatus.COMPLETED, False),
        (PlanKind.PLANNED, PlanStatus.COMPLETED, PlanStatus.MAINTENANCE, False),
        (PlanKind.MANUAL, PlanStatus.ACTIVE, PlanStatus.CANCELLED, True),
        (PlanKind.MANUAL, PlanStatus.ACTIVE, PlanStatus.COMPLETED, True),
        (PlanKind.MANUAL, PlanStatus.ACTIVE, PlanStatus.MAINTENANCE, False),
        (PlanKind.MANUAL, PlanStatus.CANCELLED, PlanStatus.COMPLETED, False),
    ],
)
def test_plan_moves_depend_on_the_kind(
    kind: PlanKind, start: PlanStatus, end: PlanStatus, allowed: bool
) -> None:
    plan = a_plan(kind, start, steps=(PlanStepStatus.PLANNED,))
    if allowed:
        plan.close(end)
        assert plan.status is end
    else:
        with pytest.raises(TaperStateConflict):
            plan.close(end)
        assert plan.status is start and not plan.status_changed and not plan.changed_steps


_MOVES = st.sampled_from(["arm", "block", "emitted", "resume", "close"])


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(list(PlanKind)),
    moves=st.lists(st.tuples(_MOVES, st.integers(1, 3), st.sampled_from(list(PlanStatus)))),
)
def test_any_sequence_of_moves_only_takes_allowed_transitions(
    kind: PlanKind, moves: list[tuple[str, int, PlanStatus]]
) -> None:
    plan = a_plan(kind, steps=(PlanStepStatus.PLANNED,) * 3)
    for move, number, status in moves:
        before_plan = plan.status
        before = {s.number: s.status for s in plan.steps}
        try:
            if move == "emitted":
                plan.emitted(number, uuid.uuid4())
            elif move == "resume":
                plan.resume_from(number, timedelta(days=1))
            elif move == "close":
                plan.close(status)
            else:
                getattr(plan, move)(number)
        except TaperStateConflict:  # a refused move changes nothing
            assert plan.status is before_plan
            assert {s.number: s.status for s in plan.steps} == before
            continue
        assert plan.status is before_plan or plan.status in plan_moves(kind)[before_plan]
        for s in plan.steps:
            assert s.status is before[s.number] or s.status in STEP_MOVES[before[s.number]]
        if plan.status is not PlanStatus.ACTIVE:  # an ended plan has no step left to take
            assert not any(s.status in LIVE_STEP for s in plan.steps)
        assert sum(s.status is PlanStepStatus.SCHEDULED for s in plan.steps) <= 3


def test_a_draft_is_approved_once_and_a_manual_plan_never_is() -> None:
    plan = a_plan(PlanKind.PLANNED, PlanStatus.DRAFT)
    decision, at = uuid.uuid4(), datetime(2026, 3, 1, 9, tzinfo=UTC)
    plan.approve(decision, at)
    assert (plan.status, plan.approved_by_decision_id, plan.approved_at) == (
        PlanStatus.ACTIVE,
        decision,
        at,
    )
    assert plan.status_changed and plan.approval_changed
    with pytest.raises(TaperStateConflict):
        plan.approve(uuid.uuid4(), at)  # already active
    with pytest.raises(TaperStateConflict):
        a_plan(PlanKind.MANUAL, PlanStatus.DRAFT).approve(decision, at)


def test_approving_a_proposal_makes_its_steps_live() -> None:
    plan = a_plan(steps=(PlanStepStatus.EMITTED, PlanStepStatus.CANCELLED, PlanStepStatus.PROPOSED))
    decision = uuid.uuid4()
    approved = plan.approve_proposal(decision, datetime(2026, 3, 1, tzinfo=UTC))
    assert [s.number for s in approved] == [3]
    assert plan.step(3).status is PlanStepStatus.PLANNED  # type: ignore[union-attr]
    assert plan.approved_by_decision_id == decision and not plan.status_changed
    with pytest.raises(TaperStateConflict):
        a_plan(status=PlanStatus.COMPLETED, steps=(PlanStepStatus.PROPOSED,)).approve_proposal(
            decision, datetime(2026, 3, 1, tzinfo=UTC)
        )
