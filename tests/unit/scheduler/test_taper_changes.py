"""Crossover stages, returns to the prior dose, maintenance, plan adoption and patient holds, on
the pure domain model (``PatientTaper.change`` and the clinician commands)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest

from services.scheduler.domain.model import (
    Administration,
    ChangeKind,
    ClinicianDecision,
    DecisionKind,
    PatientTaper,
    Regimen,
    Stage,
    StepStatus,
    TaperIsHeld,
    TaperRuleViolation,
    TaperStateConflict,
)

TODAY = date(2026, 1, 5)
D = Decimal
# mg equal to 10 mg diazepam: 0.5 mg alprazolam, so 4 x 0.5 mg alprazolam is 40 mg diazepam-eq.
EQUIVALENCE = {"alprazolam": D("0.5"), "diazepam": D("10")}


def decision(
    kind: DecisionKind = DecisionKind.APPROVE,
    *,
    reason: str = "planned_step",
    override: bool = False,
    override_reason: str | None = None,
) -> ClinicianDecision:
    return ClinicianDecision(
        decision_id=uuid.uuid4(),
        clinician="clin-1",
        kind=kind,
        reason_code=reason,
        override=override,
        override_reason_code=override_reason,
    )


def day(n: int) -> date:
    return TODAY + timedelta(days=n)


def alp(mg: str) -> Administration:
    return Administration("alprazolam", D(mg))


def dz(mg: str) -> Administration:
    return Administration("diazepam", D(mg))


BASELINE: Regimen = (alp("0.5"),) * 4
# The planner's order: the last administration of the day first, 10 mg diazepam for 0.5 mg.
STAGE_1: Regimen = (alp("0.5"), alp("0.5"), alp("0.5"), dz("10"))
STAGE_2: Regimen = (alp("0.5"), alp("0.5"), dz("10"), dz("10"))
STAGE_3: Regimen = (alp("0.5"), dz("10"), dz("10"), dz("10"))
STAGE_4: Regimen = (dz("10"),) * 4


def alprazolam_taper(
    regimen: Regimen = BASELINE, equivalence: dict[str, Decimal] | None = None
) -> PatientTaper:
    return PatientTaper.start(
        patient_id=uuid.uuid4(),
        drug="alprazolam",
        half_life_class="short",
        current_daily_dose_mg=sum((a.dose_mg for a in regimen), D(0)),
        decision=decision(DecisionKind.APPROVE, reason="plan_approved"),
        regimen=regimen,
        equivalence=EQUIVALENCE if equivalence is None else equivalence,
    )


def diazepam_taper(dose: str = "10") -> PatientTaper:
    return PatientTaper.start(
        patient_id=uuid.uuid4(),
        drug="diazepam",
        half_life_class="long",
        current_daily_dose_mg=D(dose),
        decision=decision(DecisionKind.START, reason="taper_initiated"),
    )


def take(
    t: PatientTaper,
    after: Regimen,
    kind: ChangeKind,
    on: date,
    d: ClinicianDecision | None = None,
) -> None:
    """Schedule and apply one step."""
    step = t.change(after, kind, on, d or decision(), today=TODAY)
    t.apply(step.step_id)


def crossed_over(stage_gap_days: int = 7) -> PatientTaper:
    t = alprazolam_taper()
    for i, stage in enumerate((STAGE_1, STAGE_2, STAGE_3, STAGE_4)):
        take(t, stage, ChangeKind.CROSSOVER, day(i * stage_gap_days))
    return t


# --- crossover ----------------------------------------------------------------------------------
def test_a_crossover_stage_exchanges_alprazolam_for_its_diazepam_equivalent() -> None:
    t = alprazolam_taper()
    assert t.diazepam_eq(t.current_regimen) == 40
    step = t.change(STAGE_1, ChangeKind.CROSSOVER, TODAY, decision(), today=TODAY)
    assert step.kind is ChangeKind.CROSSOVER and step.status is StepStatus.SCHEDULED
    assert step.drug == "alprazolam" and not step.overridden
    assert step.previous_daily_dose_mg == D("2") and step.new_daily_dose_mg == D("1.5")
    assert step.before == BASELINE and step.after == STAGE_1
    t.apply(step.step_id)
    assert t.stage is Stage.CROSSOVER
    assert t.drug == "alprazolam" and t.current_daily_dose_mg == D("1.5")
    assert t.current_regimen == STAGE_1 and t.diazepam_eq(t.current_regimen) == 40


@pytest.mark.parametrize(
    ("after", "field", "problem"),
    [
        pytest.param(
            (alp("0.5"), alp("0.5"), alp("0.5"), Administration("lorazepam", D("1"))),
            "administrations",
            "only adds diazepam",
            id="adds-another-drug",
        ),
        pytest.param(
            (alp("0.5"), alp("0.5"), alp("0.5"), dz("10"), Administration("lorazepam", D("1"))),
            "administrations",
            "only adds diazepam",
            id="adds-diazepam-and-another-drug",
        ),
        pytest.param(
            (alp("0.5"), alp("0.5"), alp("0.5"), alp("0")),
            "administrations",
            "raises diazepam",
            id="diazepam-does-not-rise",
        ),
        pytest.param(
            (*BASELINE, dz("10")),
            "administrations",
            "lowers the tapered drug",
            id="alprazolam-does-not-fall",
        ),
        pytest.param(
            (alp("0.5"), alp("0.5"), alp("0.5"), alp("0.5"), alp("0.25"), dz("5")),
            "administrations",
            "lowers the tapered drug",
            id="alprazolam-rises",
        ),
        pytest.param(
            (alp("0.5"), alp("0.5"), alp("0.5"), dz("10.1")),
            "administrations",
            "raises the equivalent dose too much",
            id="eq-rises-without-allowance",
        ),
    ],
)
def test_a_crossover_stage_is_refused_when_it_is_not_an_exchange_for_diazepam(
    after: Regimen, field: str, problem: str
) -> None:
    t = alprazolam_taper()
    with pytest.raises(TaperRuleViolation, match=problem) as exc:
        t.change(after, ChangeKind.CROSSOVER, TODAY, decision(), today=TODAY)
    assert exc.value.field == field
    assert t.steps == [] and t.current_regimen == BASELINE


def test_diazepam_cannot_rise_twice_by_the_same_amount() -> None:
    t = alprazolam_taper()
    take(t, STAGE_1, ChangeKind.CROSSOVER, TODAY)
    # Less alprazolam but the same 10 mg diazepam: a cut, not an exchange.
    with pytest.raises(TaperRuleViolation, match="raises diazepam") as exc:
        t.change(
            (alp("0.5"), alp("0.5"), alp("0.25"), dz("10")),
            ChangeKind.CROSSOVER,
            day(7),
            decision(),
            today=TODAY,
        )
    assert exc.value.field == "administrations"


@pytest.mark.parametrize(
    "equivalence",
    [{"alprazolam": D("0.5")}, {"diazepam": D("10")}, {}],
    ids=["no-diazepam", "no-alprazolam", "none"],
)
def test_a_crossover_needs_an_equivalence_for_every_drug(equivalence: dict[str, Decimal]) -> None:
    t = alprazolam_taper(equivalence=equivalence)
    with pytest.raises(TaperRuleViolation) as exc:
        t.change(STAGE_1, ChangeKind.CROSSOVER, TODAY, decision(), today=TODAY)
    assert exc.value.field == "equivalence"


def test_a_diazepam_taper_has_nothing_to_cross_over_to() -> None:
    t = diazepam_taper("10")
    with pytest.raises(TaperRuleViolation, match="only adds diazepam") as exc:
        t.change((dz("5"), dz("6")), ChangeKind.CROSSOVER, TODAY, decision(), today=TODAY)
    assert exc.value.field == "administrations"


@pytest.mark.parametrize(
    ("diazepam_mg", "max_rise", "accepted"),
    [
        ("10", "0", True),  # the exact equivalent of the 0.5 mg alprazolam exchanged
        ("10.1", "0", False),
        ("10.5", "0.05", True),  # exactly 5% more than the exchanged dose's equivalent
        ("10.6", "0.05", False),
        ("12.5", "0.25", True),  # exactly the planner's 25% rounding allowance
        ("12.6", "0.25", False),
        ("20", "0.25", False),  # 25% of the whole day, but double the exchanged dose
    ],
)
def test_a_crossover_may_raise_the_equivalent_total_only_by_the_allowance(
    diazepam_mg: str, max_rise: str, accepted: bool
) -> None:
    t = alprazolam_taper()
    after = (alp("0.5"), alp("0.5"), alp("0.5"), dz(diazepam_mg))
    if accepted:
        step = t.change(
            after,
            ChangeKind.CROSSOVER,
            TODAY,
            decision(),
            today=TODAY,
            crossover_max_rise_fraction=D(max_rise),
        )
        assert step.after == after
        return
    with pytest.raises(TaperRuleViolation, match="raises the equivalent dose too much") as exc:
        t.change(
            after,
            ChangeKind.CROSSOVER,
            TODAY,
            decision(),
            today=TODAY,
            crossover_max_rise_fraction=D(max_rise),
        )
    assert exc.value.field == "administrations"


def test_a_crossover_stage_cutting_the_equivalent_beyond_the_bound_needs_an_override() -> None:
    # Two 0.5 mg alprazolam (20 mg eq) for 1 mg diazepam: 40 -> 21 mg eq, a 47.5% cut.
    after = (alp("0.5"), alp("0.5"), alp("0"), dz("1"))
    with pytest.raises(TaperRuleViolation, match="within 14 days") as exc:
        alprazolam_taper().change(after, ChangeKind.CROSSOVER, TODAY, decision(), today=TODAY)
    assert exc.value.field == "new_daily_dose_mg"
    override = decision(
        DecisionKind.REDUCE, override=True, override_reason="clinician_fast_crossover"
    )
    step = alprazolam_taper().change(after, ChangeKind.CROSSOVER, TODAY, override, today=TODAY)
    assert step.overridden and step.kind is ChangeKind.CROSSOVER


def test_crossover_stages_that_cut_are_bounded_over_the_whole_window() -> None:
    t = alprazolam_taper()
    # 40 -> 35 mg eq (12.5%): accepted.
    take(t, (alp("0.5"), alp("0.5"), alp("0.5"), dz("5")), ChangeKind.CROSSOVER, TODAY)
    assert not t.steps[-1].overridden
    # 35 -> 29.9 is 14.6% of this stage but 25.25% of the 40 in effect when the window began.
    second = (alp("0.5"), alp("0.5"), dz("5"), dz("4.9"))
    with pytest.raises(TaperRuleViolation, match="within 14 days"):
        t.change(second, ChangeKind.CROSSOVER, day(7), decision(), today=TODAY)
    # Once the first stage is out of the window the same stage is within the bound.
    step = t.change(second, ChangeKind.CROSSOVER, day(14), decision(), today=TODAY)
    assert not step.overridden


def test_completing_the_crossover_makes_the_taper_a_diazepam_taper() -> None:
    t = alprazolam_taper()
    for i, stage in enumerate((STAGE_1, STAGE_2, STAGE_3)):
        take(t, stage, ChangeKind.CROSSOVER, day(7 * i))
        assert t.stage is Stage.CROSSOVER and t.drug == "alprazolam"
    assert t.current_daily_dose_mg == D("0.5")
    take(t, STAGE_4, ChangeKind.CROSSOVER, day(21))
    assert t.drug == "diazepam" and t.current_daily_dose_mg == D("40")
    assert t.current_regimen == STAGE_4 and t.stage is Stage.CROSSOVER
    assert [s.kind for s in t.steps] == [ChangeKind.CROSSOVER] * 4
    assert t.steps[-1].drug == "alprazolam" and t.steps[-1].new_daily_dose_mg == 0
    # No second crossover from diazepam, and the next step is a reduction of diazepam.
    with pytest.raises(TaperRuleViolation, match="only adds diazepam"):
        t.change(
            (dz("10"),) * 3 + (dz("9"),), ChangeKind.CROSSOVER, day(35), decision(), today=TODAY
        )
    step = t.reduce(D("36"), day(35), decision(), today=TODAY)
    assert step.drug == "diazepam" and step.previous_daily_dose_mg == D("40")
    t.apply(step.step_id)
    assert t.stage is Stage.ACTIVE and t.current_daily_dose_mg == D("36")
    assert t.current_regimen == (dz("36"),)


def test_a_reduction_during_the_crossover_makes_the_taper_active() -> None:
    t = alprazolam_taper()
    take(t, STAGE_1, ChangeKind.CROSSOVER, TODAY)
    take(t, (alp("0.5"), alp("0.5"), alp("0.25"), dz("10")), ChangeKind.REDUCTION, day(14))
    assert t.stage is Stage.ACTIVE and t.drug == "alprazolam"
    assert t.current_daily_dose_mg == D("1.25")


def test_a_reduction_adds_no_drug_and_raises_none() -> None:
    t = alprazolam_taper()
    with pytest.raises(TaperRuleViolation, match="only a crossover adds a drug"):
        t.change(STAGE_1, ChangeKind.REDUCTION, TODAY, decision(), today=TODAY)
    take(t, STAGE_1, ChangeKind.CROSSOVER, TODAY)
    # Lower in total (-5 mg eq) but one drug rises: refused.
    with pytest.raises(TaperRuleViolation, match="raises no drug"):
        t.change(
            (alp("0.5"), alp("0.5"), alp("0"), dz("15")),
            ChangeKind.REDUCTION,
            day(14),
            decision(),
            today=TODAY,
        )


def test_a_return_to_the_prior_dose_is_never_scheduled() -> None:
    with pytest.raises(TaperRuleViolation) as exc:
        alprazolam_taper().change(BASELINE, ChangeKind.RESTORE, TODAY, decision(), today=TODAY)
    assert exc.value.field == "kind"


# --- the window bound is in diazepam-equivalents across a crossover ----------------------------
def test_crossover_stages_that_halve_the_alprazolam_mg_in_a_week_are_within_the_bound() -> None:
    """In mg of the tapered drug 2 -> 1.5 -> 1 mg alprazolam is a 50% cut within 14 days; in
    diazepam-equivalents it is no cut at all, so no override is needed."""
    t = alprazolam_taper()
    take(t, STAGE_1, ChangeKind.CROSSOVER, TODAY)
    step = t.change(STAGE_2, ChangeKind.CROSSOVER, day(7), decision(), today=TODAY)
    assert not step.overridden
    assert step.previous_daily_dose_mg == D("1.5") and step.new_daily_dose_mg == D("1")


def test_a_cut_right_after_the_crossover_is_measured_against_the_equivalent_before_it() -> None:
    """The window began on 2 mg alprazolam (40 mg eq). In mg, 2 mg -> 29.5 mg looks like a rise
    (and 38 -> 29.5 mg diazepam like 22%); in diazepam-equivalents it is a 26.25% cut."""
    t = alprazolam_taper()
    for i, stage in enumerate((STAGE_1, STAGE_2, STAGE_3)):
        take(t, stage, ChangeKind.CROSSOVER, day(i))
    take(t, (dz("8"), dz("10"), dz("10"), dz("10")), ChangeKind.CROSSOVER, day(3))  # 38 mg eq
    assert t.drug == "diazepam" and t.current_daily_dose_mg == D("38")
    with pytest.raises(TaperRuleViolation, match="within 14 days") as exc:
        t.reduce(D("29.5"), day(4), decision(), today=TODAY)
    assert exc.value.field == "new_daily_dose_mg"
    step = t.reduce(D("30"), day(4), decision(), today=TODAY)  # exactly 25% of 40
    assert not step.overridden


# --- return to the prior dose -------------------------------------------------------------------
REDUCED: Regimen = (alp("0.5"), alp("0.5"), alp("0.5"), alp("0.25"))


def test_restore_returns_to_the_day_before_the_last_step_and_holds() -> None:
    t = alprazolam_taper()
    take(t, REDUCED, ChangeKind.REDUCTION, TODAY)
    pending = t.change(
        (alp("0.5"), alp("0.5"), alp("0.25"), alp("0.25")),
        ChangeKind.REDUCTION,
        day(14),
        decision(),
        today=TODAY,
    )
    d = decision(DecisionKind.RESTORE, reason="withdrawal_symptoms")
    step, cancelled = t.restore_prior(d, today=day(3))
    assert step.kind is ChangeKind.RESTORE and step.status is StepStatus.EMITTED
    assert step.effective_on == day(3) and step.decision_id == d.decision_id
    assert step.before == REDUCED and step.after == BASELINE
    assert step.previous_daily_dose_mg == D("1.75") and step.new_daily_dose_mg == D("2")
    assert cancelled is not None and cancelled.step_id == pending.step_id
    assert cancelled.status is StepStatus.CANCELLED
    assert t.pending_step is None
    assert t.current_regimen == BASELINE and t.current_daily_dose_mg == D("2")
    assert t.held and t.held_reason == "returned_to_prior_dose" and t.stage is Stage.HELD
    assert t.last_applied == step
    with pytest.raises(TaperIsHeld):
        t.change(REDUCED, ChangeKind.REDUCTION, day(20), decision(), today=TODAY)
    t.resume(decision(DecisionKind.RESUME, reason="symptoms_settled"))
    assert not t.held and t.held_reason is None


def test_restore_without_a_pending_step_cancels_nothing() -> None:
    t = alprazolam_taper()
    take(t, REDUCED, ChangeKind.REDUCTION, TODAY)
    _, cancelled = t.restore_prior(decision(DecisionKind.RESTORE), today=TODAY)
    assert cancelled is None


def test_restore_keeps_an_earlier_hold_reason() -> None:
    t = alprazolam_taper()
    take(t, REDUCED, ChangeKind.REDUCTION, TODAY)
    assert t.hold("red_threshold_exceeded")
    t.restore_prior(decision(DecisionKind.RESTORE), today=day(1))
    assert t.held and t.held_reason == "red_threshold_exceeded" and t.stage is Stage.HELD
    assert t.current_regimen == BASELINE


def test_restore_needs_a_restore_decision() -> None:
    t = alprazolam_taper()
    take(t, REDUCED, ChangeKind.REDUCTION, TODAY)
    with pytest.raises(TaperRuleViolation) as exc:
        t.restore_prior(decision(DecisionKind.RESUME), today=TODAY)
    assert exc.value.field == "decision"
    assert t.current_regimen == REDUCED and not t.held


def test_restore_is_refused_before_any_step_took_effect() -> None:
    t = alprazolam_taper()
    pending = t.change(REDUCED, ChangeKind.REDUCTION, day(1), decision(), today=TODAY)
    with pytest.raises(TaperStateConflict, match="no dose step"):
        t.restore_prior(decision(DecisionKind.RESTORE), today=TODAY)
    assert t.pending_step == pending and not t.held  # nothing changed


def test_restore_is_refused_twice_in_a_row() -> None:
    t = alprazolam_taper()
    take(t, REDUCED, ChangeKind.REDUCTION, TODAY)
    t.restore_prior(decision(DecisionKind.RESTORE), today=day(1))
    with pytest.raises(TaperStateConflict, match="already returned"):
        t.restore_prior(decision(DecisionKind.RESTORE), today=day(2))
    t.resume(decision(DecisionKind.RESUME))
    with pytest.raises(TaperStateConflict, match="already returned"):
        t.restore_prior(decision(DecisionKind.RESTORE), today=day(2))
    assert t.current_regimen == BASELINE
    assert [s.kind for s in t.steps] == [ChangeKind.REDUCTION, ChangeKind.RESTORE]


def test_restore_is_refused_after_maintenance() -> None:
    t = alprazolam_taper()
    take(t, REDUCED, ChangeKind.REDUCTION, TODAY)
    t.end_at_maintenance(decision(DecisionKind.MAINTAIN))
    with pytest.raises(TaperStateConflict, match="ended"):
        t.restore_prior(decision(DecisionKind.RESTORE), today=day(1))
    assert t.current_regimen == REDUCED and t.stage is Stage.MAINTENANCE


def test_restore_is_refused_after_completion() -> None:
    t = diazepam_taper("0.5")
    step = t.reduce(D("0"), TODAY, decision(), today=TODAY, final_step_at_or_below_mg=D("0.5"))
    assert step.kind is ChangeKind.FINAL and not step.overridden
    t.apply(step.step_id)
    assert t.stage is Stage.COMPLETED
    with pytest.raises(TaperStateConflict, match="ended"):
        t.restore_prior(decision(DecisionKind.RESTORE), today=day(1))
    assert t.completed


def test_the_final_step_exemption_needs_the_dose_at_or_below_the_threshold() -> None:
    with pytest.raises(TaperRuleViolation, match="within 14 days"):
        diazepam_taper("0.5").reduce(
            D("0"), TODAY, decision(), today=TODAY, final_step_at_or_below_mg=D("0.4")
        )


def test_restore_across_the_last_crossover_stage_returns_to_the_original_drug() -> None:
    t = crossed_over()
    assert t.drug == "diazepam"
    step, _ = t.restore_prior(decision(DecisionKind.RESTORE), today=day(22))
    assert step.drug == "alprazolam"
    assert step.previous_daily_dose_mg == 0 and step.new_daily_dose_mg == D("0.5")
    assert t.drug == "alprazolam" and t.current_daily_dose_mg == D("0.5")
    assert t.current_regimen == STAGE_3 and t.held and t.stage is Stage.HELD
    t.resume(decision(DecisionKind.RESUME))
    assert t.stage is Stage.CROSSOVER
    # The last stage can be taken again later.
    take(t, STAGE_4, ChangeKind.CROSSOVER, day(29))
    assert t.drug == "diazepam" and t.current_daily_dose_mg == D("40")


# --- end at a maintenance dose -------------------------------------------------------------------
def test_end_at_maintenance_ends_the_taper_at_the_current_dose() -> None:
    t = alprazolam_taper()
    take(t, REDUCED, ChangeKind.REDUCTION, TODAY)
    pending = t.change(
        (alp("0.5"), alp("0.5"), alp("0.25"), alp("0.25")),
        ChangeKind.REDUCTION,
        day(14),
        decision(),
        today=TODAY,
    )
    assert t.hold("red_threshold_exceeded")
    cancelled = t.end_at_maintenance(decision(DecisionKind.MAINTAIN, reason="stable_on_dose"))
    assert cancelled is not None and cancelled.step_id == pending.step_id
    assert cancelled.status is StepStatus.CANCELLED and t.pending_step is None
    assert t.stage is Stage.MAINTENANCE and t.ended and not t.completed
    assert not t.held and t.held_reason is None
    assert t.current_regimen == REDUCED
    with pytest.raises(TaperStateConflict):
        t.reduce(D("1"), day(28), decision(), today=TODAY)
    with pytest.raises(TaperStateConflict):
        t.change(STAGE_1, ChangeKind.CROSSOVER, day(28), decision(), today=TODAY)
    assert not t.hold("red_threshold_exceeded")
    assert not t.held and t.stage is Stage.MAINTENANCE
    with pytest.raises(TaperStateConflict, match="already ended"):
        t.end_at_maintenance(decision(DecisionKind.MAINTAIN))


@pytest.mark.parametrize("kind", [DecisionKind.APPROVE, DecisionKind.ADJUST])
def test_end_at_maintenance_is_allowed_before_any_step(kind: DecisionKind) -> None:
    """By the plan's approval, or by the adjustment that set its target (issue 13: re-planned
    steps name the adjustment that authorised them, and so does the end at its target)."""
    t = alprazolam_taper()
    assert t.end_at_maintenance(decision(kind, reason="plan_target")) is None
    assert t.stage is Stage.MAINTENANCE


@pytest.mark.parametrize("kind", [DecisionKind.REDUCE, DecisionKind.HOLD, DecisionKind.RESUME])
def test_end_at_maintenance_needs_a_maintain_approve_or_adjust_decision(kind: DecisionKind) -> None:
    t = alprazolam_taper()
    with pytest.raises(TaperRuleViolation) as exc:
        t.end_at_maintenance(decision(kind))
    assert exc.value.field == "decision"
    assert t.stage is Stage.PRE_TAPER


# --- adopting a new plan ------------------------------------------------------------------------
def test_a_plan_is_adopted_before_any_step_with_its_own_split_of_the_day() -> None:
    t = alprazolam_taper()
    plan_id = uuid.uuid4()
    t.adopt_plan(plan_id, decision(), (alp("1"), alp("1")))
    assert t.plan_id == plan_id and t.current_regimen == (alp("1"), alp("1"))
    assert t.stage is Stage.PRE_TAPER and t.current_daily_dose_mg == D("2")


def test_a_plan_is_adopted_after_maintenance_and_the_taper_goes_on() -> None:
    t = alprazolam_taper()
    take(t, REDUCED, ChangeKind.REDUCTION, TODAY)
    t.end_at_maintenance(decision(DecisionKind.MAINTAIN))
    plan_id = uuid.uuid4()
    t.adopt_plan(plan_id, decision(), REDUCED)
    assert t.plan_id == plan_id and t.stage is Stage.ACTIVE and not t.ended
    take(t, (alp("0.5"), alp("0.5"), alp("0.25"), alp("0.25")), ChangeKind.REDUCTION, day(28))
    assert t.current_daily_dose_mg == D("1.5")


@pytest.mark.parametrize(
    "start",
    [
        (alp("0.5"), alp("0.5"), alp("0.5")),
        (alp("0.5"), alp("0.5"), alp("0.5"), alp("0.5"), alp("0.5")),
        (dz("2"),),
        (*BASELINE, dz("10")),
    ],
    ids=["less", "more", "other-drug", "extra-drug"],
)
def test_a_plan_from_another_dose_is_not_adopted(start: Regimen) -> None:
    t = alprazolam_taper()
    plan_id = t.plan_id
    with pytest.raises(TaperStateConflict, match="current dose"):
        t.adopt_plan(uuid.uuid4(), decision(), start)
    assert t.plan_id == plan_id and t.current_regimen == BASELINE


def test_a_plan_is_not_adopted_while_held() -> None:
    t = alprazolam_taper()
    t.hold("red_threshold_exceeded")
    with pytest.raises(TaperIsHeld):
        t.adopt_plan(uuid.uuid4(), decision(), BASELINE)


def test_a_plan_is_not_adopted_while_a_step_is_pending() -> None:
    t = alprazolam_taper()
    t.change(REDUCED, ChangeKind.REDUCTION, day(1), decision(), today=TODAY)
    with pytest.raises(TaperStateConflict, match="already scheduled"):
        t.adopt_plan(uuid.uuid4(), decision(), BASELINE)


def test_a_plan_is_not_adopted_once_the_taper_has_begun() -> None:
    t = alprazolam_taper()
    take(t, REDUCED, ChangeKind.REDUCTION, TODAY)
    with pytest.raises(TaperStateConflict, match="already begun"):
        t.adopt_plan(uuid.uuid4(), decision(), REDUCED)


def test_adopting_a_plan_needs_an_approve_decision() -> None:
    with pytest.raises(TaperRuleViolation) as exc:
        alprazolam_taper().adopt_plan(uuid.uuid4(), decision(DecisionKind.START), BASELINE)
    assert exc.value.field == "decision"


# --- holds asked for by the patient -------------------------------------------------------------
def test_a_patient_may_ask_for_a_hold_but_only_a_clinician_resumes() -> None:
    t = alprazolam_taper()
    assert t.hold_by(decision(DecisionKind.PATIENT_HOLD, reason="patient_request"))
    assert t.held and t.held_reason == "patient_request" and t.stage is Stage.HELD
    assert not t.hold_by(decision(DecisionKind.HOLD, reason="clinician_hold"))
    assert t.held_reason == "patient_request"
    for kind in (DecisionKind.PATIENT_HOLD, DecisionKind.HOLD, DecisionKind.APPROVE):
        with pytest.raises(TaperRuleViolation, match="resume decision"):
            t.resume(decision(kind))
        assert t.held
    t.resume(decision(DecisionKind.RESUME, reason="symptoms_settled"))
    assert not t.held and t.stage is Stage.PRE_TAPER


@pytest.mark.parametrize("kind", [DecisionKind.REDUCE, DecisionKind.RESUME, DecisionKind.APPROVE])
def test_a_hold_needs_a_hold_decision(kind: DecisionKind) -> None:
    t = alprazolam_taper()
    with pytest.raises(TaperRuleViolation) as exc:
        t.hold_by(decision(kind))
    assert exc.value.field == "decision" and not t.held


def test_a_clinician_hold_is_recorded_with_its_reason() -> None:
    t = alprazolam_taper()
    assert t.hold_by(decision(DecisionKind.HOLD, reason="clinician_hold"))
    assert t.held and t.held_reason == "clinician_hold"


def test_crossover_rounding_allowances_do_not_add_up_across_stages() -> None:
    """Found by review: with the allowance taken on the whole day, four stages could take the
    patient from 40 to 97.7 mg-eq. Measured on the exchanged dose, the second stage is refused."""
    t = alprazolam_taper()
    first = (alp("0.5"), alp("0.5"), alp("0.5"), dz("12.5"))
    step = t.change(
        first,
        ChangeKind.CROSSOVER,
        TODAY,
        decision(),
        today=TODAY,
        crossover_max_rise_fraction=D("0.25"),
    )
    t.apply(step.step_id)
    with pytest.raises(TaperRuleViolation, match="raises the equivalent dose too much"):
        t.change(
            (alp("0.5"), alp("0.5"), dz("22.5"), dz("12.5")),
            ChangeKind.CROSSOVER,
            TODAY + timedelta(days=7),
            decision(),
            today=TODAY,
            crossover_max_rise_fraction=D("0.25"),
        )


def test_a_cut_soon_after_a_return_to_the_prior_dose_is_measured_from_the_restored_dose() -> None:
    """Found by review: 10 -> 7.5, back to 10, then 5.7 the next day was accepted because the
    window began at 7.5. The window's highest dose (10) is the baseline now: 43% is refused."""
    t = PatientTaper.start(
        patient_id=uuid.uuid4(),
        drug="diazepam",
        half_life_class="long",
        current_daily_dose_mg=D("10"),
        decision=decision(DecisionKind.START, reason="taper_initiated"),
    )
    step = t.reduce(D("7.5"), TODAY, decision(), today=TODAY)
    t.apply(step.step_id)
    day14 = TODAY + timedelta(days=14)
    t.restore_prior(decision(DecisionKind.RESTORE, reason="withdrawal_symptoms"), today=day14)
    t.resume(decision(DecisionKind.RESUME, reason="symptoms_settled"))
    with pytest.raises(TaperRuleViolation, match="cuts more than 25%"):
        t.reduce(D("5.7"), day14 + timedelta(days=1), decision(), today=day14)
    assert (
        t.reduce(D("7.5"), day14 + timedelta(days=1), decision(), today=day14).overridden is False
    )
