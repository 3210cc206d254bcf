"""How a plan's schedule and a taper's next step read to a client (issue 18, part 8). Pure.

A plan's steps are stored under a sequence number that never changes: timers, decisions and the
audit refer to it. An adjustment cancels the steps not yet taken and appends the re-planned ones
after the highest sequence (so they start at 33 when 32 were planned), and a closed plan
cancels what is left. Shown as stored, the schedule read 1..4, then 5..32 cancelled, then 33...
:func:`schedule` gives the schedule in force instead: the steps not cancelled, in order,
numbered 1..n, and the cancelled ones apart.

:func:`next_step` answers what a patient and a clinician look for first: which dose change comes
next, when, and — when it cannot take effect — why, from what the scheduler knows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.scheduler.domain.model import PatientTaper, Regimen, Stage
from services.scheduler.domain.plan_states import LIVE_STEP, PlanStatus, PlanStepStatus

CANCELLED = PlanStepStatus.CANCELLED
EMITTED = PlanStepStatus.EMITTED
PROPOSED = PlanStepStatus.PROPOSED
#: a plan step that will be emitted when due (``blocked_by_hold``: due while held, waits)
LIVE = LIVE_STEP

# Why the next dose change cannot take effect as planned (``NextStep.blocked_by``).
HELD = "held"  # the taper is held: nothing takes effect until a clinician resumes
AWAITING_APPROVAL = "awaiting_approval"  # re-planned on resume: a clinician approves first
END_OF_PLAN = "end_of_plan"  # the active plan has no step left (a product missing, say)
NONE_SCHEDULED = "none_scheduled"  # no plan in force and no reduction scheduled
COMPLETED = "completed"  # the taper has ended at zero
MAINTENANCE = "maintenance"  # the taper has ended at a maintenance dose


def schedule(
    steps: Sequence[Mapping[str, Any]],
) -> tuple[list[tuple[int, Mapping[str, Any]]], list[Mapping[str, Any]]]:
    """The schedule in force — each step not cancelled with its number 1..n, in stored order —
    and the cancelled (superseded) steps, in stored order. ``steps``: rows with ``number`` (the
    stored sequence) and ``status``."""
    ordered = sorted(steps, key=lambda s: s["number"])
    kept = [s for s in ordered if s["status"] != CANCELLED]
    return list(enumerate(kept, start=1)), [s for s in ordered if s["status"] == CANCELLED]


@dataclass(frozen=True)
class Upcoming:
    """The next dose change not yet taken."""

    source: str  # "plan": a step of the taper's plan; "reduction": a single scheduled reduction
    number: int  # its number in the plan's schedule (1..n), or the taper's step number
    effective_on: date
    kind: str
    status: str  # planned | scheduled | blocked_by_hold | proposed
    regimen: Regimen  # the day's doses from then on


@dataclass(frozen=True)
class NextStep:
    step: Upcoming | None
    blocked_by: str | None  # None: ``step`` takes effect on its date


def next_step(
    taper: PatientTaper,
    plan_status: str | None,
    plan_steps: Sequence[tuple[int, Mapping[str, Any], Regimen]],
) -> NextStep:
    """The taper's next step and what, if anything, stands in its way.

    ``plan_status``: the status of the taper's plan (None: no stored plan); ``plan_steps``: its
    schedule in force as ``(number, row, regimen)`` (see :func:`schedule`). A live plan step was
    checked against the taper-rate bound when the plan was approved or adjusted, and a single
    reduction when it was scheduled, so the pace never blocks a step already planned; what can
    is a hold, a proposal no clinician approved yet, or the plan running out.
    """
    if taper.completed:
        return NextStep(None, COMPLETED)
    if taper.stage is Stage.MAINTENANCE:
        return NextStep(None, MAINTENANCE)
    candidates: list[Upcoming] = []
    pending = taper.pending_step
    if pending is not None:
        candidates.append(
            Upcoming(
                "reduction",
                pending.step_number,
                pending.effective_on,
                pending.kind.value,
                pending.status.value,
                pending.regimen_after,
            )
        )
    if plan_status == PlanStatus.ACTIVE:
        upcoming = next(
            (
                (n, row, regimen)
                for n, row, regimen in plan_steps
                if row["status"] in (*LIVE, PROPOSED)
            ),
            None,
        )
        if upcoming is not None:
            n, row, regimen = upcoming
            candidates.append(
                Upcoming("plan", n, row["effective_on"], row["kind"], row["status"], regimen)
            )
    step = min(candidates, key=lambda u: u.effective_on, default=None)
    if taper.held:
        return NextStep(step, HELD)
    if step is None:
        return NextStep(None, END_OF_PLAN if plan_status == PlanStatus.ACTIVE else NONE_SCHEDULED)
    if step.status == PROPOSED:
        return NextStep(step, AWAITING_APPROVAL)
    return NextStep(step, None)
