"""A stored plan as an aggregate: its status and its steps change only through its methods,
each checked against the state machines of ``plan_states`` (kind-aware: a manual plan may be
cancelled while active). Plans record no events: the taper records what a step does."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from services.scheduler.domain.model import TaperStateConflict
from services.scheduler.domain.plan_states import (
    LIVE_STEP,
    STEP_MOVES,
    PlanKind,
    PlanStatus,
    PlanStepStatus,
    plan_moves,
)


@dataclass
class PlanStep:
    number: int
    effective_on: date
    kind: str  # model.ChangeKind's value
    administrations: list[dict[str, Any]]  # the stored regimen (codecs.regimen_json)
    status: PlanStepStatus
    dose_step_id: uuid.UUID | None = None
    planned_from: list[dict[str, Any]] | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE_STEP

    def as_row(self) -> dict[str, Any]:
        """The step as ``step_timer.take_step`` reads it."""
        return {
            "number": self.number,
            "effective_on": self.effective_on,
            "kind": self.kind,
            "administrations": self.administrations,
            "status": self.status,
            "dose_step_id": self.dose_step_id,
            "planned_from": self.planned_from,
        }


@dataclass
class Plan:
    plan_id: uuid.UUID
    patient_id: uuid.UUID
    kind: PlanKind
    status: PlanStatus
    approved_by_decision_id: uuid.UUID | None
    summary: dict[str, Any]
    input: dict[str, Any]
    version: int
    steps: list[PlanStep]
    approved_at: datetime | None = None
    # What changed since loading: the repository writes only these.
    changed_steps: set[int] = field(default_factory=set, compare=False)
    status_changed: bool = field(default=False, compare=False)
    approval_changed: bool = field(default=False, compare=False)

    @property
    def manual(self) -> bool:
        return self.kind is PlanKind.MANUAL

    @property
    def active(self) -> bool:
        return self.status is PlanStatus.ACTIVE

    def step(self, number: int) -> PlanStep | None:
        return next((s for s in self.steps if s.number == number), None)

    def next_live_step(self, after: int = 0) -> PlanStep | None:
        live = [s for s in self.steps if s.number > after and s.live]
        return min(live, key=lambda s: s.number) if live else None

    def live_steps_from(self, number: int) -> list[PlanStep]:
        return sorted((s for s in self.steps if s.number >= number and s.live), key=_number)

    # --- step moves -----------------------------------------------------------------------------
    def _move(self, number: int, new: PlanStepStatus) -> PlanStep:
        step = self.step(number)
        if step is None:
            raise TaperStateConflict(f"the plan has no step {number}")
        if new not in STEP_MOVES[step.status]:
            raise TaperStateConflict(f"a {step.status.value} step cannot become {new.value}")
        step.status = new
        self.changed_steps.add(number)
        return step

    def arm(self, number: int) -> PlanStep:
        """The step is next: SCHEDULED (its timer armed); only an active plan's steps are."""
        if not self.active:
            raise TaperStateConflict(f"a {self.status.value} plan's step cannot be armed")
        return self._move(number, PlanStepStatus.SCHEDULED)

    def block(self, number: int) -> PlanStep:
        """The step came due while the taper was held."""
        return self._move(number, PlanStepStatus.BLOCKED_BY_HOLD)

    def emitted(self, number: int, dose_step_id: uuid.UUID) -> PlanStep:
        """The step was taken onto the taper as ``dose_step_id``."""
        step = self._move(number, PlanStepStatus.EMITTED)
        step.dose_step_id = dose_step_id
        return step

    def reschedule(self, number: int, on: date) -> PlanStep:
        """A blocked step is due again on ``on`` (PLANNED, to be armed)."""
        step = self._move(number, PlanStepStatus.PLANNED)
        step.effective_on = on
        return step

    def resume_from(self, number: int, shift: timedelta) -> None:
        """The taper's hold lifted: the blocked step ``number`` and every later live step move by
        ``shift`` (the time the hold lasted), the blocked one PLANNED again, to be armed."""
        moved = self.live_steps_from(number)
        for s in moved:
            if s.status not in (PlanStepStatus.BLOCKED_BY_HOLD, PlanStepStatus.PLANNED):
                raise TaperStateConflict(f"a {s.status.value} step cannot be moved on resume")
        for s in moved:
            if s.status is PlanStepStatus.BLOCKED_BY_HOLD:
                self._move(s.number, PlanStepStatus.PLANNED)
            s.effective_on += shift
            self.changed_steps.add(s.number)

    def cancel_live_steps(self) -> None:
        """No step not yet taken will be (live or proposed): CANCELLED."""
        for s in self.steps:
            if s.live or s.status is PlanStepStatus.PROPOSED:
                self._move(s.number, PlanStepStatus.CANCELLED)

    # --- plan moves -----------------------------------------------------------------------------
    def _check(self, new: PlanStatus) -> None:
        if new not in plan_moves(self.kind)[self.status]:
            raise TaperStateConflict(
                f"a {self.status.value} {self.kind.value} plan cannot become {new.value}"
            )

    def approve(self, decision_id: uuid.UUID, at: datetime) -> None:
        """A clinician approved the draft (``decision_id``): ACTIVE, its steps to be armed."""
        self._check(PlanStatus.ACTIVE)
        self.status = PlanStatus.ACTIVE
        self.status_changed = True
        self._approved(decision_id, at)

    def approve_proposal(self, decision_id: uuid.UUID, at: datetime) -> list[PlanStep]:
        """A clinician approved the steps the scheduler proposed for this active plan: they
        become PLANNED (live), and the steps taken from now on name ``decision_id``."""
        if not self.active:
            raise TaperStateConflict(f"a {self.status.value} plan's proposal cannot be approved")
        proposed = [s for s in self.steps if s.status is PlanStepStatus.PROPOSED]
        for s in proposed:
            self._move(s.number, PlanStepStatus.PLANNED)
        self._approved(decision_id, at)
        return proposed

    def _approved(self, decision_id: uuid.UUID, at: datetime) -> None:
        self.approved_by_decision_id, self.approved_at = decision_id, at
        self.approval_changed = True

    def close(self, status: PlanStatus) -> None:
        """The plan ends (completed, maintenance or, for a manual plan, cancelled): no step of
        it will be emitted."""
        self._check(status)
        self.cancel_live_steps()
        self.status = status
        self.status_changed = True


def _number(step: PlanStep) -> int:
    return step.number
