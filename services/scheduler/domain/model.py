"""A patient's taper and the rules every dose change obeys. Pure: no I/O, no clock.

Safety rules enforced here (each a default a clinician can see, the rate bound one they can
override for one patient with a recorded reason):

* every start, reduction and resume carries a recorded clinician decision (id, clinician, code);
* a reduction lowers the dose, never below zero, and takes effect today or later;
* within any ``window_days`` window the dose falls by at most ``max_fraction_per_step`` of the dose
  in effect at the window's start (ASAM 2025: "usually no more than 25% every 2 weeks") unless the
  decision overrides it with a reason code;
* nothing is reduced while the taper is held (a RED ``ThresholdExceeded`` holds it);
* one step is scheduled at a time: an approved plan (issue 3) arms its steps one after another;
* the FINAL step to zero is exempt from the rate bound when the dose it leaves is at or below the
  final-step dose (``final_step_at_or_below_mg``, the planner's ``check_bounds`` exemption); the
  caller passes that dose in the taper's drug, and without it a step to zero needs an override.

Error messages name fields and rules, never doses, dates or people (no PHI in logs or responses).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from services.scheduler.domain.reference import TaperBounds, taper_bounds_v1

CODE_PATTERN = r"^[a-z0-9_]{1,40}$"
DRUG_PATTERN = r"^[a-z0-9_-]{1,40}$"
HALF_LIFE_CLASSES = frozenset({"ultra_short", "short", "intermediate", "long"})
_CODE = re.compile(CODE_PATTERN)
_DRUG = re.compile(DRUG_PATTERN)
ZERO = Decimal(0)


class Stage(StrEnum):
    """The scheduler's view of the taper; values match ``contracts.TaperStage``."""

    PRE_TAPER = "pre_taper"
    ACTIVE = "active"
    HELD = "held"
    COMPLETED = "completed"


class DecisionKind(StrEnum):
    START = "start"
    REDUCE = "reduce"
    HOLD = "hold"
    RESUME = "resume"
    APPROVE = "approve"  # a clinician approves a whole plan: it authorises each of its steps


class StepStatus(StrEnum):
    SCHEDULED = "scheduled"
    EMITTED = "emitted"
    BLOCKED_BY_HOLD = "blocked_by_hold"
    CANCELLED = "cancelled"


# --- errors -----------------------------------------------------------------------------------
class TaperError(ValueError):
    """Base of the taper's refusals; the message is safe to show (no PHI)."""


class TaperRuleViolation(TaperError):
    """The request breaks a taper rule; ``field`` names the offending input (never its value)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class TaperStateConflict(TaperError):
    """The request is valid but the taper's state forbids it now (held, step pending...)."""


class TaperHeld(TaperStateConflict):
    def __init__(self) -> None:
        super().__init__("the taper is held: a clinician must resume it first")


# --- values -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClinicianDecision:
    """A recorded clinician decision: who decided what, and why (as a code, never free text)."""

    decision_id: uuid.UUID
    clinician: str
    kind: DecisionKind
    reason_code: str
    override: bool = False
    override_reason_code: str | None = None

    def check(self, kind: DecisionKind, *also: DecisionKind) -> None:
        if self.kind is not kind and self.kind not in also:
            raise TaperRuleViolation("decision", f"a {kind.value} decision is required")
        if not self.clinician:
            raise TaperRuleViolation("decision", "the deciding clinician is required")
        if not _CODE.fullmatch(self.reason_code or ""):
            raise TaperRuleViolation("reason_code", "a reason code is required")
        if self.override and self.kind is not DecisionKind.REDUCE:
            raise TaperRuleViolation("override", "only a reduction can be overridden")
        if self.override and not _CODE.fullmatch(self.override_reason_code or ""):
            raise TaperRuleViolation(
                "override_reason_code", "an override requires an override reason code"
            )
        if not self.override and self.override_reason_code is not None:
            raise TaperRuleViolation("override_reason_code", "given without override")


@dataclass(frozen=True)
class DoseStep:
    step_id: uuid.UUID
    step_number: int
    previous_daily_dose_mg: Decimal
    new_daily_dose_mg: Decimal
    effective_on: date
    decision_id: uuid.UUID
    overridden: bool = False
    status: StepStatus = StepStatus.SCHEDULED

    @property
    def live(self) -> bool:
        """Took effect or will: counts toward the rate bound."""
        return self.status in (StepStatus.SCHEDULED, StepStatus.EMITTED)


# --- the aggregate ----------------------------------------------------------------------------
@dataclass
class PatientTaper:
    patient_id: uuid.UUID
    plan_id: uuid.UUID
    drug: str
    half_life_class: str
    start_daily_dose_mg: Decimal
    current_daily_dose_mg: Decimal
    held: bool = False
    held_reason: str | None = None
    stage: Stage = Stage.PRE_TAPER
    version: int = 0
    # Every step of this plan, oldest first (the repository loads them with the taper).
    steps: list[DoseStep] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        *,
        patient_id: uuid.UUID,
        drug: str,
        half_life_class: str,
        current_daily_dose_mg: Decimal,
        decision: ClinicianDecision,
        plan_id: uuid.UUID | None = None,
    ) -> PatientTaper:
        decision.check(DecisionKind.START, DecisionKind.APPROVE)
        if not _DRUG.fullmatch(drug):
            raise TaperRuleViolation("drug", "must be a drug code")
        if half_life_class not in HALF_LIFE_CLASSES:
            raise TaperRuleViolation("half_life_class", "unknown half-life class")
        if not current_daily_dose_mg > ZERO:
            raise TaperRuleViolation("current_daily_dose_mg", "must be greater than 0")
        return cls(
            patient_id=patient_id,
            plan_id=plan_id or uuid.uuid4(),
            drug=drug,
            half_life_class=half_life_class,
            start_daily_dose_mg=current_daily_dose_mg,
            current_daily_dose_mg=current_daily_dose_mg,
        )

    # --- queries ------------------------------------------------------------------------------
    @property
    def pending_step(self) -> DoseStep | None:
        return next((s for s in self.steps if s.status is StepStatus.SCHEDULED), None)

    @property
    def completed(self) -> bool:
        return self.current_daily_dose_mg == ZERO

    def _running_stage(self) -> Stage:
        if self.completed:
            return Stage.COMPLETED
        if self.current_daily_dose_mg < self.start_daily_dose_mg:
            return Stage.ACTIVE
        return Stage.PRE_TAPER

    # --- commands -----------------------------------------------------------------------------
    def reduce(
        self,
        new_daily_dose_mg: Decimal,
        effective_on: date,
        decision: ClinicianDecision,
        *,
        today: date,
        bounds: TaperBounds | None = None,
        step_id: uuid.UUID | None = None,
        final_step_at_or_below_mg: Decimal | None = None,
    ) -> DoseStep:
        """Validate and schedule one reduction; the returned step takes effect on ``effective_on``.

        ``today`` is the service clock's date (the domain never reads a clock itself). A step of
        an approved plan carries the plan's approval decision. The step to zero from at or below
        ``final_step_at_or_below_mg`` (mg of the taper's drug) is exempt from the rate bound.
        """
        decision.check(DecisionKind.REDUCE, DecisionKind.APPROVE)
        bounds = bounds or taper_bounds_v1()
        if self.held:
            raise TaperHeld()
        if self.completed:
            raise TaperStateConflict("the taper is completed")
        if self.pending_step is not None:
            raise TaperStateConflict("a dose step is already scheduled")
        if effective_on < today:
            raise TaperRuleViolation("effective_on", "must not be in the past")
        last_live = [s for s in self.steps if s.live]
        if last_live and effective_on <= last_live[-1].effective_on:
            raise TaperRuleViolation("effective_on", "must be after the previous step")
        if new_daily_dose_mg < ZERO:
            raise TaperRuleViolation("new_daily_dose_mg", "must not be negative")
        current = self.current_daily_dose_mg
        if new_daily_dose_mg >= current:
            raise TaperRuleViolation("new_daily_dose_mg", "must be lower than the current dose")

        # The dose in effect when the window ending at effective_on began.
        window_start = effective_on - timedelta(days=bounds.window_days)
        in_window = [s for s in last_live if s.effective_on > window_start]
        baseline = in_window[0].previous_daily_dose_mg if in_window else current
        final_exempt = (
            new_daily_dose_mg == ZERO
            and final_step_at_or_below_mg is not None
            and current <= final_step_at_or_below_mg
        )
        exceeds = (
            baseline - new_daily_dose_mg > baseline * bounds.max_fraction_per_step
            and not final_exempt
        )
        if exceeds and not decision.override:
            raise TaperRuleViolation(
                "new_daily_dose_mg",
                f"cuts more than {bounds.max_fraction_per_step * 100:.0f}% within "
                f"{bounds.window_days} days; a clinician override with a reason code is required",
            )
        step = DoseStep(
            step_id=step_id or uuid.uuid4(),
            step_number=len(self.steps) + 1,
            previous_daily_dose_mg=current,
            new_daily_dose_mg=new_daily_dose_mg,
            effective_on=effective_on,
            decision_id=decision.decision_id,
            overridden=exceeds,
        )
        self.steps.append(step)
        return step

    def apply(self, step_id: uuid.UUID) -> DoseStep:
        """The scheduled step takes effect now: the taper's dose becomes the step's new dose.

        Refused while held (the caller marks the step ``blocked_by_hold``; it is never emitted).
        """
        index, step = next(
            ((i, s) for i, s in enumerate(self.steps) if s.step_id == step_id), (None, None)
        )
        if step is None or index is None:
            raise TaperStateConflict("the dose step does not belong to this taper")
        if step.status is not StepStatus.SCHEDULED:
            raise TaperStateConflict("the dose step is not scheduled")
        if self.held:
            raise TaperHeld()
        if step.previous_daily_dose_mg != self.current_daily_dose_mg:
            raise TaperStateConflict("the dose step was planned from another dose")
        applied = replace(step, status=StepStatus.EMITTED)
        self.steps[index] = applied
        self.current_daily_dose_mg = step.new_daily_dose_mg
        self.stage = self._running_stage()
        return applied

    def block(self, step_id: uuid.UUID) -> DoseStep:
        """Record that a due step was not given because the taper is held."""
        for i, s in enumerate(self.steps):
            if s.step_id == step_id and s.status is StepStatus.SCHEDULED:
                self.steps[i] = replace(s, status=StepStatus.BLOCKED_BY_HOLD)
                return self.steps[i]
        raise TaperStateConflict("the dose step is not scheduled")

    def hold(self, reason_code: str) -> bool:
        """Hold the taper (no step takes effect); False when there was nothing to change."""
        if not _CODE.fullmatch(reason_code or ""):
            raise TaperRuleViolation("reason_code", "a reason code is required")
        if self.held or self.completed:
            return False  # the first reason stands; a finished taper has nothing to hold
        self.held = True
        self.held_reason = reason_code
        self.stage = Stage.HELD
        return True

    def hold_by(self, decision: ClinicianDecision) -> bool:
        decision.check(DecisionKind.HOLD)
        return self.hold(decision.reason_code)

    def resume(self, decision: ClinicianDecision) -> None:
        """A clinician lifts the hold. Steps blocked while held stay blocked: plan anew."""
        decision.check(DecisionKind.RESUME)
        if not self.held:
            raise TaperStateConflict("the taper is not held")
        self.held = False
        self.held_reason = None
        self.stage = self._running_stage()
