"""A stored plan's states and its steps' states, and the moves between them.

A plan is a DRAFT until a clinician approves it (ACTIVE) or discards it (CANCELLED); an active plan
ends COMPLETED (its step to zero) or at MAINTENANCE (its target, or a clinician's end). Its steps
are PLANNED, one at a time SCHEDULED (its timer armed), EMITTED when taken, BLOCKED_BY_HOLD when
due while the taper was held (armed again on resume), CANCELLED when re-planned or the plan ends,
or PROPOSED: a re-plan the system made that no clinician has approved yet (never armed).

A MANUAL plan is one reduction a clinician scheduled by hand: ACTIVE from that decision, COMPLETED
once its step is taken, CANCELLED when a return to the prior dose or an end at maintenance cancels
its step (or a resume finds it planned from a dose the patient no longer takes).
"""

from __future__ import annotations

from enum import StrEnum

from services.scheduler.domain.model import TaperStateConflict


class PlanKind(StrEnum):
    PLANNED = "planned"  # the planner's plan, drafted and approved
    MANUAL = "manual"  # one reduction a clinician scheduled by hand: a one-step plan


class PlanStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    COMPLETED = "completed"  # the taper ended at zero
    MAINTENANCE = "maintenance"  # the taper ended at a maintenance dose
    CANCELLED = "cancelled"  # a discarded draft (or a manual plan whose step was cancelled)


class PlanStepStatus(StrEnum):
    PLANNED = "planned"
    SCHEDULED = "scheduled"
    BLOCKED_BY_HOLD = "blocked_by_hold"
    EMITTED = "emitted"
    CANCELLED = "cancelled"
    PROPOSED = "proposed"


# Steps that will be taken unless the plan changes (a proposal is not live until approved).
LIVE_STEP = (PlanStepStatus.PLANNED, PlanStepStatus.SCHEDULED, PlanStepStatus.BLOCKED_BY_HOLD)

PLAN_MOVES: dict[PlanStatus, frozenset[PlanStatus]] = {
    PlanStatus.DRAFT: frozenset({PlanStatus.ACTIVE, PlanStatus.CANCELLED}),
    PlanStatus.ACTIVE: frozenset({PlanStatus.COMPLETED, PlanStatus.MAINTENANCE}),
    PlanStatus.COMPLETED: frozenset(),
    PlanStatus.MAINTENANCE: frozenset(),
    PlanStatus.CANCELLED: frozenset(),
}


# A manual plan is ACTIVE from the clinician's decision: COMPLETED once its step is taken, or
# CANCELLED when its step is cancelled (a return to the prior dose, an end at maintenance).
MANUAL_PLAN_MOVES: dict[PlanStatus, frozenset[PlanStatus]] = {
    PlanStatus.DRAFT: frozenset(),
    PlanStatus.ACTIVE: frozenset({PlanStatus.COMPLETED, PlanStatus.CANCELLED}),
    PlanStatus.COMPLETED: frozenset(),
    PlanStatus.MAINTENANCE: frozenset(),
    PlanStatus.CANCELLED: frozenset(),
}

# A step is armed (SCHEDULED) from PLANNED; when due it is EMITTED, or BLOCKED_BY_HOLD if the taper
# is held, and moved back to PLANNED (re-dated) on resume; a proposal becomes PLANNED when approved;
# anything not taken may be CANCELLED.
STEP_MOVES: dict[PlanStepStatus, frozenset[PlanStepStatus]] = {
    PlanStepStatus.PLANNED: frozenset({PlanStepStatus.SCHEDULED, PlanStepStatus.CANCELLED}),
    PlanStepStatus.SCHEDULED: frozenset(
        {PlanStepStatus.EMITTED, PlanStepStatus.BLOCKED_BY_HOLD, PlanStepStatus.CANCELLED}
    ),
    PlanStepStatus.BLOCKED_BY_HOLD: frozenset({PlanStepStatus.PLANNED, PlanStepStatus.CANCELLED}),
    PlanStepStatus.PROPOSED: frozenset({PlanStepStatus.PLANNED, PlanStepStatus.CANCELLED}),
    PlanStepStatus.EMITTED: frozenset(),
    PlanStepStatus.CANCELLED: frozenset(),
}


def plan_moves(kind: PlanKind) -> dict[PlanStatus, frozenset[PlanStatus]]:
    return MANUAL_PLAN_MOVES if kind is PlanKind.MANUAL else PLAN_MOVES


def check_plan_move(current: str, new: PlanStatus) -> None:
    """Refuse a move the plan's state machine does not allow (``TaperStateConflict``)."""
    if new not in PLAN_MOVES[PlanStatus(current)]:
        raise TaperStateConflict(f"a {current} plan cannot become {new.value}")
