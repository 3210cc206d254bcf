"""The taper's safety rules, on the pure domain model."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from services.scheduler.domain.model import (
    ClinicianDecision,
    DecisionKind,
    PatientTaper,
    Stage,
    StepStatus,
    TaperIsHeld,
    TaperRuleViolation,
    TaperStateConflict,
)
from services.scheduler.domain.reference import TaperBounds, taper_bounds_v1

TODAY = date(2026, 1, 5)
D = Decimal


def decision(
    kind: DecisionKind = DecisionKind.REDUCE,
    *,
    reason: str = "planned_step",
    override: bool = False,
    override_reason: str | None = None,
    clinician: str = "clin-1",
) -> ClinicianDecision:
    return ClinicianDecision(
        decision_id=uuid.uuid4(),
        clinician=clinician,
        kind=kind,
        reason_code=reason,
        override=override,
        override_reason_code=override_reason,
    )


def taper(dose: str = "10") -> PatientTaper:
    return PatientTaper.start(
        patient_id=uuid.uuid4(),
        drug="diazepam",
        half_life_class="long",
        current_daily_dose_mg=D(dose),
        decision=decision(DecisionKind.START, reason="taper_initiated"),
    )


def test_bounds_come_from_versioned_data_with_their_source() -> None:
    bounds = taper_bounds_v1()
    assert bounds.max_fraction_per_step == D("0.25")
    assert bounds.window_days == 14
    assert "ASAM 2025 Joint Clinical Practice Guideline [S1]" in bounds.source


def test_start_requires_a_start_decision_and_sane_inputs() -> None:
    t = taper("10")
    assert t.stage is Stage.PRE_TAPER and t.start_daily_dose_mg == D("10")
    with pytest.raises(TaperRuleViolation, match="start decision"):
        PatientTaper.start(
            patient_id=uuid.uuid4(),
            drug="diazepam",
            half_life_class="long",
            current_daily_dose_mg=D("10"),
            decision=decision(DecisionKind.REDUCE),
        )
    with pytest.raises(TaperRuleViolation) as exc:
        PatientTaper.start(
            patient_id=uuid.uuid4(),
            drug="diazepam",
            half_life_class="long",
            current_daily_dose_mg=D("0"),
            decision=decision(DecisionKind.START),
        )
    assert exc.value.field == "current_daily_dose_mg"


def test_a_24_percent_cut_is_accepted() -> None:
    t = taper("10")
    step = t.reduce(D("7.6"), TODAY, decision(), today=TODAY)
    assert step.new_daily_dose_mg == D("7.6") and step.previous_daily_dose_mg == D("10")
    assert step.step_number == 1 and step.status is StepStatus.SCHEDULED
    assert not step.overridden


def test_exactly_the_bound_is_accepted() -> None:
    assert taper("10").reduce(D("7.5"), TODAY, decision(), today=TODAY).new_daily_dose_mg == D(
        "7.5"
    )


def test_a_26_percent_cut_is_refused() -> None:
    with pytest.raises(TaperRuleViolation) as exc:
        taper("10").reduce(D("7.4"), TODAY, decision(), today=TODAY)
    assert exc.value.field == "new_daily_dose_mg"
    assert "7.4" not in str(exc.value) and "10" not in str(exc.value)  # no doses in messages


def test_a_26_percent_cut_with_an_override_reason_is_accepted() -> None:
    d = decision(override=True, override_reason="severe_adverse_effects")
    step = taper("10").reduce(D("7.4"), TODAY, d, today=TODAY)
    assert step.overridden and step.decision_id == d.decision_id


def test_an_override_without_a_reason_is_refused() -> None:
    with pytest.raises(TaperRuleViolation) as exc:
        taper("10").reduce(D("7.4"), TODAY, decision(override=True), today=TODAY)
    assert exc.value.field == "override_reason_code"


def test_an_override_reason_without_the_override_flag_is_refused() -> None:
    with pytest.raises(TaperRuleViolation):
        taper("10").reduce(
            D("7.4"), TODAY, decision(override_reason="severe_adverse_effects"), today=TODAY
        )


def test_an_override_reason_must_be_a_code() -> None:
    with pytest.raises(TaperRuleViolation):
        taper("10").reduce(
            D("7.4"), TODAY, decision(override=True, override_reason="Free text!"), today=TODAY
        )


@pytest.mark.parametrize("new", ["10", "12", "10.0001"])
def test_no_increase_and_no_standstill(new: str) -> None:
    with pytest.raises(TaperRuleViolation, match="lower than the current dose"):
        taper("10").reduce(D(new), TODAY, decision(), today=TODAY)


def test_never_below_zero_even_with_an_override() -> None:
    d = decision(override=True, override_reason="clinical_judgement")
    with pytest.raises(TaperRuleViolation, match="negative"):
        taper("1").reduce(D("-0.5"), TODAY, d, today=TODAY)


def test_the_last_step_to_zero_needs_an_override() -> None:
    with pytest.raises(TaperRuleViolation):
        taper("0.5").reduce(D("0"), TODAY, decision(), today=TODAY)
    d = decision(override=True, override_reason="final_step")
    t = taper("0.5")
    step = t.reduce(D("0"), TODAY, d, today=TODAY)
    t.apply(step.step_id)
    assert t.stage is Stage.COMPLETED and t.completed


def test_a_reduction_requires_a_recorded_clinician_decision() -> None:
    with pytest.raises(TaperRuleViolation, match="reduce decision"):
        taper().reduce(D("9"), TODAY, decision(DecisionKind.RESUME), today=TODAY)
    with pytest.raises(TaperRuleViolation, match="clinician"):
        taper().reduce(D("9"), TODAY, decision(clinician=""), today=TODAY)
    with pytest.raises(TaperRuleViolation) as exc:
        taper().reduce(D("9"), TODAY, decision(reason=""), today=TODAY)
    assert exc.value.field == "reason_code"


def test_effective_date_not_in_the_past() -> None:
    with pytest.raises(TaperRuleViolation) as exc:
        taper().reduce(D("9"), TODAY - timedelta(days=1), decision(), today=TODAY)
    assert exc.value.field == "effective_on"


def test_held_taper_refuses_reductions_until_resumed() -> None:
    t = taper("10")
    assert t.hold("red_threshold_exceeded")
    assert t.stage is Stage.HELD
    assert not t.hold("another_reason")  # the first reason stands
    assert t.held_reason == "red_threshold_exceeded"
    with pytest.raises(TaperIsHeld):
        t.reduce(D("9"), TODAY, decision(), today=TODAY)
    with pytest.raises(TaperRuleViolation):
        t.resume(decision(DecisionKind.REDUCE))
    t.resume(decision(DecisionKind.RESUME, reason="symptoms_settled"))
    assert not t.held and t.stage is Stage.PRE_TAPER
    t.reduce(D("9"), TODAY, decision(), today=TODAY)
    with pytest.raises(TaperStateConflict):
        t.resume(decision(DecisionKind.RESUME, reason="symptoms_settled"))


def test_a_held_taper_does_not_apply_its_scheduled_step() -> None:
    t = taper("10")
    step = t.reduce(D("9"), TODAY + timedelta(days=3), decision(), today=TODAY)
    t.hold("red_threshold_exceeded")
    with pytest.raises(TaperIsHeld):
        t.apply(step.step_id)
    assert t.block(step.step_id).status is StepStatus.BLOCKED_BY_HOLD
    assert t.current_daily_dose_mg == D("10")


def test_one_pending_step_at_a_time() -> None:
    t = taper("10")
    t.reduce(D("9"), TODAY + timedelta(days=14), decision(), today=TODAY)
    with pytest.raises(TaperStateConflict, match="already scheduled"):
        t.reduce(D("8"), TODAY + timedelta(days=28), decision(), today=TODAY)


def test_the_bound_holds_across_a_two_week_window() -> None:
    """Two 15% cuts a week apart are 28% in two weeks: refused without an override."""
    t = taper("10")
    first = t.reduce(D("8.5"), TODAY, decision(), today=TODAY)
    t.apply(first.step_id)
    with pytest.raises(TaperRuleViolation, match="within 14 days"):
        t.reduce(D("7.2"), TODAY + timedelta(days=7), decision(), today=TODAY)
    # 14 days later the window has moved on: 15% of the current dose is fine.
    second = t.reduce(D("7.225"), TODAY + timedelta(days=14), decision(), today=TODAY)
    assert second.step_number == 2 and t.current_daily_dose_mg == D("8.5")
    t.apply(second.step_id)
    assert t.current_daily_dose_mg == D("7.225") and t.stage is Stage.ACTIVE


def test_a_step_must_follow_the_previous_one() -> None:
    t = taper("10")
    first = t.reduce(D("9"), TODAY + timedelta(days=5), decision(), today=TODAY)
    t.apply(first.step_id)
    with pytest.raises(TaperRuleViolation) as exc:
        t.reduce(D("8.5"), TODAY + timedelta(days=5), decision(), today=TODAY)
    assert exc.value.field == "effective_on"


def test_the_bound_is_configurable_data() -> None:
    strict = TaperBounds(
        version="t", source="test", max_fraction_per_step=D("0.10"), window_days=28
    )
    with pytest.raises(TaperRuleViolation):
        taper("10").reduce(D("8.9"), TODAY, decision(), today=TODAY, bounds=strict)
    assert taper("10").reduce(D("9"), TODAY, decision(), today=TODAY, bounds=strict)
    with pytest.raises(ValueError):
        TaperBounds(version="t", source="test", max_fraction_per_step=D("1.5"), window_days=14)


# --- property: any accepted schedule respects the bound unless overridden ----------------------
# Each attempt asks for a fraction of the current dose: most land near the bound on either side.
fractions = st.decimals(min_value=D("-0.05"), max_value=D("1.05"), places=3, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    start=st.decimals(min_value=D("0.1"), max_value=D("100"), places=4, allow_nan=False),
    attempts=st.lists(
        st.tuples(fractions, st.integers(min_value=0, max_value=30), st.booleans()),
        min_size=1,
        max_size=12,
    ),
)
def test_property_accepted_reductions_respect_the_bound_and_zero(
    start: Decimal, attempts: list[tuple[Decimal, int, bool]]
) -> None:
    bounds = taper_bounds_v1()
    t = taper(str(start))
    day = TODAY
    accepted = 0
    for fraction, gap, override in attempts:
        day = day + timedelta(days=gap)
        new = (t.current_daily_dose_mg * fraction).quantize(D("0.0001"))
        d = decision(override=override, override_reason="clinical_judgement" if override else None)
        before = t.current_daily_dose_mg
        try:
            step = t.reduce(new, day, d, today=TODAY)
        except (TaperRuleViolation, TaperStateConflict):
            assert t.current_daily_dose_mg == before
            continue
        t.apply(step.step_id)
        accepted += 1
        assert D(0) <= step.new_daily_dose_mg < step.previous_daily_dose_mg
        assert t.current_daily_dose_mg >= 0
        if not override:
            assert not step.overridden
        # Whatever the path, every window_days window cuts at most the bound unless overridden.
        live = [s for s in t.steps if s.status is StepStatus.EMITTED]
        for i, first in enumerate(live):
            window = [
                s
                for s in live[i:]
                if s.effective_on < first.effective_on + timedelta(days=bounds.window_days)
            ]
            if any(s.overridden for s in window):
                continue
            cut = first.previous_daily_dose_mg - window[-1].new_daily_dose_mg
            assert cut <= first.previous_daily_dose_mg * bounds.max_fraction_per_step
    event(f"accepted steps: {accepted if accepted < 3 else '3+'}")
