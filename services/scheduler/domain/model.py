"""A patient's taper and the rules every dose change obeys. Pure: no I/O, no clock.

Safety rules enforced here (each a default a clinician can see, the rate bound one they can
override for one patient with a recorded reason):

* every start, change, hold, resume, return and end carries a recorded clinician decision (id,
  clinician, code); a patient may only ask for a hold (the safe direction);
* a reduction lowers the dose, never below zero, and takes effect today or later;
* within any ``window_days`` window the dose falls by at most ``max_fraction_per_step`` of the
  highest dose in effect during that window (ASAM 2025: "usually no more than 25% every 2
  weeks") unless the decision overrides it with a reason code. Doses compare in
  diazepam-equivalent mg, so the bound holds across a crossover (for a one-drug taper this is the
  same as comparing mg);
* a crossover stage only exchanges the tapered drug for diazepam, and may raise the
  diazepam-equivalent total by rounding to a makeable dose by at most the configured fraction of
  the dose it exchanges;
* nothing is reduced while the taper is held (a RED ``ThresholdExceeded`` holds it);
* one step is scheduled at a time: an approved plan arms its steps one after another;
* the FINAL step to zero is exempt from the rate bound when the dose it leaves is at or below the
  final-step dose (``final_step_at_or_below_mg``, the planner's ``check_bounds`` exemption); the
  caller passes that dose in the taper's drug, and without it a step to zero needs an override;
* a clinician can return the patient to the dose before the last step (at once, holding the taper
  until resumed: "if paused, resume more slowly") or end the taper at the current dose.

Error messages name fields and rules, never doses, dates or people (no PHI in logs or responses).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from contracts import DoseReduced, Event
from services.scheduler.domain.patient_day import step_starts_at
from services.scheduler.domain.reference import TaperBounds, taper_bounds_v1

CODE_PATTERN = r"^[a-z0-9_]{1,40}$"
DRUG_PATTERN = r"^[a-z0-9_-]{1,40}$"
HALF_LIFE_CLASSES = frozenset({"ultra_short", "short", "intermediate", "long"})
_CODE = re.compile(CODE_PATTERN)
_DRUG = re.compile(DRUG_PATTERN)
ZERO = Decimal(0)
DIAZEPAM = "diazepam"
RESTORED_HOLD_REASON = "returned_to_prior_dose"


class Stage(StrEnum):
    """The scheduler's view of the taper; values match ``contracts.TaperStage``."""

    PRE_TAPER = "pre_taper"
    CROSSOVER = "crossover"
    ACTIVE = "active"
    HELD = "held"
    MAINTENANCE = "maintenance"
    COMPLETED = "completed"


class DecisionKind(StrEnum):
    START = "start"
    REDUCE = "reduce"
    HOLD = "hold"
    RESUME = "resume"
    APPROVE = "approve"  # a clinician approves a whole plan: it authorises each of its steps
    ADJUST = "adjust"  # a clinician re-plans the rest of an active plan (slower, new products...)
    RESTORE = "restore"  # back to the dose before the last step, at once (temporary: held)
    MAINTAIN = "maintain"  # end the taper at the current dose
    CANCEL = "cancel"  # discard a draft plan
    PATIENT_HOLD = "patient_hold"  # the patient asks for a hold (recorded with the patient's id)


class StepStatus(StrEnum):
    SCHEDULED = "scheduled"
    EMITTED = "emitted"
    BLOCKED_BY_HOLD = "blocked_by_hold"
    CANCELLED = "cancelled"


class ChangeKind(StrEnum):
    REDUCTION = "reduction"
    CROSSOVER = "crossover"  # part of the tapered drug exchanged for diazepam
    FINAL = "final"  # the step to zero
    RESTORE = "restore"  # back up to the dose before the last step


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


class TaperIsHeld(TaperStateConflict):
    def __init__(self) -> None:
        super().__init__("the taper is held: a clinician must resume it first")


# --- values -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Administration:
    """One dose of one drug in the day (a day is a tuple of them, morning first)."""

    drug: str
    dose_mg: Decimal


Regimen = tuple[Administration, ...]


def daily_mg(regimen: Regimen, drug: str) -> Decimal:
    return sum((a.dose_mg for a in regimen if a.drug == drug), ZERO)


def drugs_taken(regimen: Regimen) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a.drug for a in regimen if a.dose_mg > 0))


@dataclass(frozen=True)
class ClinicianDecision:
    """A recorded clinician decision: who decided what, and why (as a code, never free text)."""

    decision_id: uuid.UUID
    clinician: str
    kind: DecisionKind
    reason_code: str
    override: bool = False
    override_reason_code: str | None = None

    @classmethod
    def new(
        cls,
        kind: DecisionKind,
        clinician: str,
        reason_code: str,
        *,
        override: bool = False,
        override_reason_code: str | None = None,
    ) -> ClinicianDecision:
        """A decision taken now, with a fresh id (recorded by the decision log)."""
        return cls(uuid.uuid4(), clinician, kind, reason_code, override, override_reason_code)

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
    """One change of the day's doses. ``drug`` is the drug the step changes (the tapered one);
    ``previous``/``new_daily_dose_mg`` are its mg; ``before``/``after`` the whole day (every drug),
    empty for a one-drug step stored before regimens were recorded."""

    step_id: uuid.UUID
    step_number: int
    previous_daily_dose_mg: Decimal
    new_daily_dose_mg: Decimal
    effective_on: date
    decision_id: uuid.UUID
    overridden: bool = False
    status: StepStatus = StepStatus.SCHEDULED
    drug: str = ""
    kind: ChangeKind = ChangeKind.REDUCTION
    before: Regimen = ()
    after: Regimen = ()

    @property
    def live(self) -> bool:
        """Took effect or will: counts toward the rate bound."""
        return self.status in (StepStatus.SCHEDULED, StepStatus.EMITTED)

    @property
    def regimen_before(self) -> Regimen:
        return self.before or (Administration(self.drug, self.previous_daily_dose_mg),)

    @property
    def regimen_after(self) -> Regimen:
        return self.after or (Administration(self.drug, self.new_daily_dose_mg),)


# --- the aggregate ----------------------------------------------------------------------------
@dataclass
class PatientTaper:
    patient_id: uuid.UUID
    plan_id: uuid.UUID
    drug: str  # the drug being tapered now: diazepam once a crossover is complete
    half_life_class: str  # of ``drug``
    start_daily_dose_mg: Decimal  # of the drug the taper started on
    current_daily_dose_mg: Decimal  # of ``drug``, kept equal to its mg in ``regimen``
    held: bool = False
    held_reason: str | None = None
    stage: Stage = Stage.PRE_TAPER
    version: int = 0
    # Every dose step of the patient (all plans), oldest first; the repository loads them.
    steps: list[DoseStep] = field(default_factory=list)
    # The day's doses now; () means one dose of ``drug`` (a taper started with a daily total).
    regimen: Regimen = ()
    # mg equal to 10 mg diazepam per drug, as the plan used (with any clinician override). A drug
    # missing counts its mg as is: enough for a one-drug taper, refused for a crossover.
    equivalence: Mapping[str, Decimal] = field(default_factory=dict)
    # The patient's IANA time zone and first-dose time: when a step's date begins for them
    # (``patient_day.step_starts_at``). None: unknown (00:00 UTC of the date).
    timezone: str | None = None
    first_dose_time: time | None = None
    # What the changes announced, not yet published (``domain.taper_events``): a command given
    # the moment (``at``) records its event; the unit of work writes them to the outbox on commit.
    # Without ``at`` (a dry run of a plan, a rule check) the change is made and nothing announced.
    events: list[Event] = field(default_factory=list, init=False, repr=False, compare=False)

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
        regimen: Regimen = (),
        equivalence: Mapping[str, Decimal] | None = None,
    ) -> PatientTaper:
        decision.check(DecisionKind.START, DecisionKind.APPROVE)
        if not _DRUG.fullmatch(drug):
            raise TaperRuleViolation("drug", "must be a drug code")
        if half_life_class not in HALF_LIFE_CLASSES:
            raise TaperRuleViolation("half_life_class", "unknown half-life class")
        if not current_daily_dose_mg > ZERO:
            raise TaperRuleViolation("current_daily_dose_mg", "must be greater than 0")
        if regimen and (
            drugs_taken(regimen) != (drug,) or daily_mg(regimen, drug) != current_daily_dose_mg
        ):
            raise TaperRuleViolation("administrations", "must be the daily dose of the drug")
        return cls(
            patient_id=patient_id,
            plan_id=plan_id or uuid.uuid4(),
            drug=drug,
            half_life_class=half_life_class,
            start_daily_dose_mg=current_daily_dose_mg,
            current_daily_dose_mg=current_daily_dose_mg,
            regimen=regimen,
            equivalence=dict(equivalence or {}),
        )

    def pull_events(self) -> list[Event]:
        """The recorded events, oldest first; the taper forgets them (published once)."""
        events, self.events = self.events, []
        return events

    def _announced(self, kind: type[Event]) -> Event | None:
        """The latest event of ``kind`` this taper recorded and has not yet published."""
        return next((e for e in reversed(self.events) if isinstance(e, kind)), None)

    # --- queries ------------------------------------------------------------------------------
    def step_due_at(self, day: date) -> datetime:
        """When a step dated ``day`` takes effect: the patient's first dose that day, their zone."""
        return step_starts_at(day, self.timezone, self.first_dose_time)

    @property
    def pending_step(self) -> DoseStep | None:
        return next((s for s in self.steps if s.status is StepStatus.SCHEDULED), None)

    @property
    def current_regimen(self) -> Regimen:
        return self.regimen or (Administration(self.drug, self.current_daily_dose_mg),)

    @property
    def completed(self) -> bool:
        return not drugs_taken(self.current_regimen)

    @property
    def ended(self) -> bool:
        return self.completed or self.stage is Stage.MAINTENANCE

    @property
    def last_applied(self) -> DoseStep | None:
        return next((s for s in reversed(self.steps) if s.status is StepStatus.EMITTED), None)

    def diazepam_eq(self, regimen: Regimen) -> Fraction:
        """Exact diazepam-equivalent mg of a day; a drug without equivalence counts as mg."""
        total = Fraction(0)
        for a in regimen:
            per_10 = self.equivalence.get(a.drug)
            total += Fraction(a.dose_mg) * (Fraction(10) / Fraction(per_10) if per_10 else 1)
        return total

    def _running_stage(self) -> Stage:
        if self.completed:
            return Stage.COMPLETED
        applied = [s for s in self.steps if s.status is StepStatus.EMITTED]
        if any(s.kind in (ChangeKind.REDUCTION, ChangeKind.FINAL) for s in applied):
            return Stage.ACTIVE
        if any(s.kind is ChangeKind.CROSSOVER for s in applied):
            return Stage.CROSSOVER
        if self.current_daily_dose_mg < self.start_daily_dose_mg and self.drug_is_original:
            return Stage.ACTIVE
        return Stage.PRE_TAPER

    @property
    def drug_is_original(self) -> bool:
        return not any(s.kind is ChangeKind.CROSSOVER for s in self.steps if s.live)

    # --- commands: scheduling -----------------------------------------------------------------
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
        """Schedule one reduction of the tapered drug to a daily total (one dose a day of it).

        ``today`` is the service clock's date (the domain never reads a clock itself). The step
        to zero from at or below ``final_step_at_or_below_mg`` (mg of the taper's drug) is exempt
        from the rate bound.
        """
        if new_daily_dose_mg < ZERO:
            raise TaperRuleViolation("new_daily_dose_mg", "must not be negative")
        others = tuple(a for a in self.current_regimen if a.drug != self.drug)
        after = (*others, Administration(self.drug, new_daily_dose_mg))
        kind = ChangeKind.FINAL if not drugs_taken(after) else ChangeKind.REDUCTION
        return self.change(
            after,
            kind,
            effective_on,
            decision,
            today=today,
            bounds=bounds,
            step_id=step_id,
            final_step_at_or_below_mg=final_step_at_or_below_mg,
        )

    def change(
        self,
        after: Regimen,
        kind: ChangeKind,
        effective_on: date,
        decision: ClinicianDecision,
        *,
        today: date,
        bounds: TaperBounds | None = None,
        step_id: uuid.UUID | None = None,
        final_step_at_or_below_mg: Decimal | None = None,
        crossover_max_rise_fraction: Decimal = ZERO,
    ) -> DoseStep:
        """Validate and schedule one step to the day ``after``; it takes effect on
        ``effective_on``. A step of an approved plan carries the decision that authorised it:
        the plan's approval, or the clinician's adjustment that re-planned it."""
        decision.check(DecisionKind.REDUCE, DecisionKind.APPROVE, DecisionKind.ADJUST)
        bounds = bounds or taper_bounds_v1()
        if kind is ChangeKind.RESTORE:
            raise TaperRuleViolation("kind", "a return to the prior dose is not scheduled")
        if self.held:
            raise TaperIsHeld()
        if self.completed:
            raise TaperStateConflict("the taper is completed")
        if self.stage is Stage.MAINTENANCE:
            raise TaperStateConflict("the taper ended at a maintenance dose: approve a new plan")
        if self.pending_step is not None:
            raise TaperStateConflict("a dose step is already scheduled")
        if effective_on < today:
            raise TaperRuleViolation("effective_on", "must not be in the past")
        last_live = [s for s in self.steps if s.live]
        if last_live and effective_on <= last_live[-1].effective_on:
            raise TaperRuleViolation("effective_on", "must be after the previous step")
        if any(a.dose_mg < ZERO for a in after) or not after:
            raise TaperRuleViolation("new_daily_dose_mg", "must not be negative")
        current = self.current_regimen
        self._check_shape(current, after, kind, crossover_max_rise_fraction)

        # The highest dose in effect during the window ending at effective_on: the dose when it
        # began, or a higher one a step inside it reached (a crossover rounding up, a return to
        # the prior dose): a cut after a rise is measured from the top.
        window_start = effective_on - timedelta(days=bounds.window_days)
        in_window = [s for s in last_live if s.effective_on > window_start]
        baseline = self.diazepam_eq(in_window[0].regimen_before if in_window else current)
        baseline = max([baseline, *(self.diazepam_eq(s.regimen_after) for s in in_window)])
        new_eq = self.diazepam_eq(after)
        final_exempt = (
            new_eq == 0
            and final_step_at_or_below_mg is not None
            and self.current_daily_dose_mg <= final_step_at_or_below_mg
            and drugs_taken(current) == (self.drug,)
        )
        exceeds = (
            baseline - new_eq > baseline * Fraction(bounds.max_fraction_per_step)
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
            previous_daily_dose_mg=self.current_daily_dose_mg,
            new_daily_dose_mg=daily_mg(after, self.drug),
            effective_on=effective_on,
            decision_id=decision.decision_id,
            overridden=exceeds,
            drug=self.drug,
            kind=kind,
            before=current,
            after=after,
        )
        self.steps.append(step)
        return step

    def _check_shape(
        self, current: Regimen, after: Regimen, kind: ChangeKind, max_rise: Decimal
    ) -> None:
        drugs_now, drugs_after = set(drugs_taken(current)), set(drugs_taken(after))
        if kind is ChangeKind.CROSSOVER:
            if self.drug == DIAZEPAM or drugs_after - drugs_now - {DIAZEPAM}:
                raise TaperRuleViolation("administrations", "a crossover only adds diazepam")
            if any(d not in self.equivalence for d in drugs_now | drugs_after):
                raise TaperRuleViolation("equivalence", "a crossover needs each drug's equivalence")
            if daily_mg(after, self.drug) >= self.current_daily_dose_mg:
                raise TaperRuleViolation("administrations", "a crossover lowers the tapered drug")
            if daily_mg(after, DIAZEPAM) <= daily_mg(current, DIAZEPAM):
                raise TaperRuleViolation("administrations", "a crossover raises diazepam")
            # Rounding to a makeable diazepam dose may add at most ``max_rise`` of the exchanged
            # dose (per stage, so the stages together stay within it of the start).
            exchanged = self.diazepam_eq(
                (
                    Administration(
                        self.drug, self.current_daily_dose_mg - daily_mg(after, self.drug)
                    ),
                )
            )
            rise = self.diazepam_eq(after) - self.diazepam_eq(current)
            if rise > exchanged * Fraction(max_rise):
                raise TaperRuleViolation(
                    "administrations", "the crossover raises the equivalent dose too much"
                )
            return
        if drugs_after - drugs_now:
            raise TaperRuleViolation("administrations", "only a crossover adds a drug")
        if self.diazepam_eq(after) >= self.diazepam_eq(current):
            raise TaperRuleViolation("new_daily_dose_mg", "must be lower than the current dose")
        if any(daily_mg(after, d) > daily_mg(current, d) for d in drugs_now):
            raise TaperRuleViolation("new_daily_dose_mg", "a reduction raises no drug")
        if (kind is ChangeKind.FINAL) != (not drugs_after):
            raise TaperRuleViolation("kind", "the final step, and only it, stops every drug")

    def apply(self, step_id: uuid.UUID, *, at: datetime | None = None) -> DoseStep:
        """The scheduled step takes effect now: the taper's day becomes the step's day.

        Refused while held (the timer blocks the step instead). When a crossover stage leaves
        none of the tapered drug, the taper goes on with diazepam and its half-life class.
        Announces ``DoseReduced`` and, for the step to zero, ``TaperCompleted`` caused by it.
        """
        index, step = self._find(step_id)
        if step.status is not StepStatus.SCHEDULED:
            raise TaperStateConflict("the dose step is not scheduled")
        if self.held:
            raise TaperIsHeld()
        if step.regimen_before != self.current_regimen and (
            step.before or step.previous_daily_dose_mg != self.current_daily_dose_mg
        ):
            raise TaperStateConflict("the dose step was planned from another dose")
        applied = replace(step, status=StepStatus.EMITTED)
        self.steps[index] = applied
        half_life_before = self.half_life_class
        self._take(step.regimen_after, step.drug)
        self.stage = self._running_stage()
        if at is not None:
            from services.scheduler.domain import taper_events  # stages imports this module

            reduced = taper_events.reduced(self, applied, at, half_life_before)
            self.events.append(reduced)
            if self.completed:  # the step to zero: the taper ends with it
                self.events.append(
                    taper_events.completed(self, at, "stopped", applied.decision_id, reduced)
                )
        return applied

    def _take(self, regimen: Regimen, drug: str) -> None:
        self.regimen = regimen
        self.drug = drug
        if daily_mg(regimen, drug) == 0 and drugs_taken(regimen):
            self.drug = drugs_taken(regimen)[0]  # the crossover is complete
        self.current_daily_dose_mg = daily_mg(regimen, self.drug)
        self._follow_drug()

    def _follow_drug(self) -> None:
        """The half-life class is the tapered drug's (it changes with a completed crossover, or
        a return before it), from the equivalence table."""
        from services.scheduler.domain.planning import equivalence_v1  # planning imports model

        known = equivalence_v1().get(self.drug)
        if known is not None:
            self.half_life_class = known.half_life_class

    def block(self, step_id: uuid.UUID) -> DoseStep:
        """Record that a due step was not given because the taper is held."""
        return self._set_status(step_id, StepStatus.BLOCKED_BY_HOLD)

    def reschedule(self, step_id: uuid.UUID, effective_on: date) -> DoseStep:
        """A step a hold blocked is due again on ``effective_on`` (a reduction scheduled by hand,
        re-armed on resume like a plan's step). Refused while held, once the taper has ended,
        with another step pending, or when the patient no longer takes the day it was planned
        from (after a return to the prior dose)."""
        index, step = self._find(step_id)
        if step.status is not StepStatus.BLOCKED_BY_HOLD:
            raise TaperStateConflict("the dose step is not blocked by a hold")
        if self.held:
            raise TaperIsHeld()
        if self.ended:
            raise TaperStateConflict("the taper has ended")
        if self.pending_step is not None:
            raise TaperStateConflict("a dose step is already scheduled")
        if step.regimen_before != self.current_regimen and (
            step.before or step.previous_daily_dose_mg != self.current_daily_dose_mg
        ):
            raise TaperStateConflict("the dose step was planned from another dose")
        self.steps[index] = replace(step, status=StepStatus.SCHEDULED, effective_on=effective_on)
        return self.steps[index]

    def _set_status(self, step_id: uuid.UUID, status: StepStatus) -> DoseStep:
        index, step = self._find(step_id)
        if step.status is not StepStatus.SCHEDULED:
            raise TaperStateConflict("the dose step is not scheduled")
        self.steps[index] = replace(step, status=status)
        return self.steps[index]

    def _find(self, step_id: uuid.UUID) -> tuple[int, DoseStep]:
        for i, s in enumerate(self.steps):
            if s.step_id == step_id:
                return i, s
        raise TaperStateConflict("the dose step does not belong to this taper")

    def _cancel_pending(self) -> DoseStep | None:
        pending = self.pending_step
        return self._set_status(pending.step_id, StepStatus.CANCELLED) if pending else None

    # --- commands: holds and clinician changes ------------------------------------------------
    def hold(
        self, reason_code: str, *, at: datetime | None = None, cause: Event | None = None
    ) -> bool:
        """Hold the taper (no step takes effect); False when there was nothing to change.

        Monitoring's hold: announced ``TaperHeld`` (held by monitoring), caused by ``cause``."""
        return self._hold(reason_code, at, "monitoring", None, cause)

    def _hold(
        self,
        reason_code: str,
        at: datetime | None,
        held_by: str,
        decision_id: uuid.UUID | None,
        cause: Event | None,
    ) -> bool:
        if not _CODE.fullmatch(reason_code or ""):
            raise TaperRuleViolation("reason_code", "a reason code is required")
        if self.held or self.ended:
            return False  # the first reason stands; a finished taper has nothing to hold
        self.held = True
        self.held_reason = reason_code
        self.stage = Stage.HELD
        if at is not None:
            from services.scheduler.domain import taper_events  # stages imports this module

            self.events.append(
                taper_events.held(self, at, held_by, decision_id, cause)  # type: ignore[arg-type]
            )
        return True

    def hold_by(self, decision: ClinicianDecision, *, at: datetime | None = None) -> bool:
        """A clinician's hold, or the patient's (the safe direction is theirs to take)."""
        decision.check(DecisionKind.HOLD, DecisionKind.PATIENT_HOLD)
        held_by = "patient" if decision.kind is DecisionKind.PATIENT_HOLD else "clinician"
        return self._hold(decision.reason_code, at, held_by, decision.decision_id, None)

    def resume(self, decision: ClinicianDecision, *, at: datetime | None = None) -> None:
        """A clinician lifts the hold (an approved plan re-arms its blocked step)."""
        decision.check(DecisionKind.RESUME)
        if not self.held:
            raise TaperStateConflict("the taper is not held")
        self.held = False
        self.held_reason = None
        self.stage = self._running_stage()
        if at is not None:
            from services.scheduler.domain import taper_events  # stages imports this module

            self.events.append(taper_events.resumed(self, at, decision.decision_id))

    def restore_prior(
        self,
        decision: ClinicianDecision,
        *,
        today: date,
        step_id: uuid.UUID | None = None,
        at: datetime | None = None,
    ) -> tuple[DoseStep, DoseStep | None]:
        """Return to the day before the last step, from today, and hold the taper there.

        Temporary by design: the taper stays held (unless it already was, for another reason)
        until a clinician resumes it, and the rest of a plan is then re-planned from this dose.
        Returns the restoring step (already in effect) and the pending step it cancelled.
        """
        decision.check(DecisionKind.RESTORE)
        if self.ended:
            raise TaperStateConflict("the taper has ended: approve a new plan")
        last = self.last_applied
        if last is None:
            raise TaperStateConflict("no dose step has taken effect yet")
        if last.kind is ChangeKind.RESTORE:
            raise TaperStateConflict("already returned to the prior dose: resume or adjust")
        cancelled = self._cancel_pending()
        step = DoseStep(
            step_id=step_id or uuid.uuid4(),
            step_number=len(self.steps) + 1,
            previous_daily_dose_mg=daily_mg(self.current_regimen, last.drug),
            new_daily_dose_mg=daily_mg(last.regimen_before, last.drug),
            effective_on=today,
            decision_id=decision.decision_id,
            status=StepStatus.EMITTED,
            drug=last.drug,
            kind=ChangeKind.RESTORE,
            before=self.current_regimen,
            after=last.regimen_before,
        )
        self.steps.append(step)
        self._take(step.after, last.drug)
        was_held = self.held
        if not was_held:
            self.held = True
            self.held_reason = RESTORED_HOLD_REASON
        self.stage = Stage.HELD
        if at is not None:  # DoseRestored and, unless already held, the TaperHeld it causes
            from services.scheduler.domain import taper_events  # stages imports this module

            restored = taper_events.restored(self, step, at)
            self.events.append(restored)
            if not was_held:
                self.events.append(
                    taper_events.held(self, at, "clinician", decision.decision_id, restored)
                )
        return step, cancelled

    def end_at_maintenance(
        self, decision: ClinicianDecision, *, at: datetime | None = None
    ) -> DoseStep | None:
        """End the taper at the current dose; returns the pending step it cancelled, if any.

        A clinician's ``maintain`` decision, or the approval (or adjustment) of a plan whose
        target this is. Announces ``TaperCompleted`` (maintenance), caused by the step just
        announced if there is one (the plan's last step reached its target)."""
        decision.check(DecisionKind.MAINTAIN, DecisionKind.APPROVE, DecisionKind.ADJUST)
        if self.ended:
            raise TaperStateConflict("the taper has already ended")
        cancelled = self._cancel_pending()
        self.held = False
        self.held_reason = None
        self.stage = Stage.MAINTENANCE
        if at is not None:
            from services.scheduler.domain import taper_events  # stages imports this module

            cause = self._announced(DoseReduced)
            self.events.append(
                taper_events.completed(self, at, "maintenance", decision.decision_id, cause)
            )
        return cancelled

    def adopt_plan(self, plan_id: uuid.UUID, decision: ClinicianDecision, start: Regimen) -> None:
        """A newly approved plan takes the taper over: before its first step, or after it ended
        at a maintenance dose. The plan must start from the day the patient takes now."""
        decision.check(DecisionKind.APPROVE)
        if self.held:
            raise TaperIsHeld()
        if self.completed:
            raise TaperStateConflict("the taper is completed")
        if self.pending_step is not None:
            raise TaperStateConflict("a dose step is already scheduled")
        if self.stage is not Stage.MAINTENANCE and any(s.live for s in self.steps):
            raise TaperStateConflict("the patient's taper has already begun")
        if sorted(_totals(start).items()) != sorted(_totals(self.current_regimen).items()):
            raise TaperStateConflict("the plan does not start from the taper's current dose")
        self.plan_id = plan_id
        self.regimen = start
        self.stage = self._running_stage()

    def cancel_pending(self, decision: ClinicianDecision) -> DoseStep | None:
        """An adjustment replaces the rest of the plan: its pending step is cancelled."""
        decision.check(DecisionKind.ADJUST)
        return self._cancel_pending()


def _totals(regimen: Regimen) -> dict[str, Decimal]:
    return {d: daily_mg(regimen, d) for d in drugs_taken(regimen)}
