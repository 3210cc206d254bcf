"""The taper records the events its changes announce (pure: no database, no clock).

A command given the moment (``at``) records its event; without it (a plan's dry run) the change
is made and nothing is announced. The unit of work publishes what ``pull_events`` returns.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from contracts import (
    DoseReduced,
    DoseRestored,
    TaperCompleted,
    TaperHeld,
    TaperResumed,
    TaperStage,
    ThresholdExceeded,
    ThresholdReason,
)
from services.scheduler.domain.model import (
    RESTORED_HOLD_REASON,
    ClinicianDecision,
    DecisionKind,
    PatientTaper,
)

D = Decimal
TODAY = date(2026, 1, 5)
AT = datetime(2026, 1, 5, 9, tzinfo=UTC)


def decision(kind: DecisionKind, **kw: object) -> ClinicianDecision:
    return ClinicianDecision.new(kind, "clin-1", "planned_step", **kw)  # type: ignore[arg-type]


def taper(dose: str = "10") -> PatientTaper:
    return PatientTaper.start(
        patient_id=uuid.uuid4(),
        drug="diazepam",
        half_life_class="long",
        current_daily_dose_mg=D(dose),
        decision=decision(DecisionKind.START),
    )


def threshold(t: PatientTaper) -> ThresholdExceeded:
    return ThresholdExceeded.create(
        patient_id=t.patient_id,
        occurred_at=AT,
        report_id=uuid.uuid4(),
        episode_id=uuid.uuid4(),
        severity="RED",
        reasons=(ThresholdReason(code="band:ciwa-b", instrument="ciwa-b", value=45, threshold=41),),
    )


def test_a_step_taken_at_a_moment_announces_dose_reduced_once() -> None:
    t = taper()
    step = t.reduce(D(8), TODAY, decision(DecisionKind.REDUCE), today=TODAY)
    assert t.pull_events() == []  # scheduling announces nothing
    t.apply(step.step_id, at=AT)
    [event] = t.pull_events()
    assert isinstance(event, DoseReduced)
    assert event.patient_id == t.patient_id and event.plan_id == t.plan_id
    assert event.previous_daily_dose_mg == D(10) and event.new_daily_dose_mg == D(8)
    assert event.approved_by_decision_id == step.decision_id == event.correlation_id
    assert event.occurred_at == AT and event.taper_stage is TaperStage.ACTIVE
    assert t.pull_events() == []  # published once


def test_the_step_to_zero_also_announces_taper_completed_caused_by_it() -> None:
    t = taper("0.5")
    reduce = decision(DecisionKind.REDUCE, override=True, override_reason_code="final_step")
    step = t.reduce(D(0), TODAY, reduce, today=TODAY)
    t.apply(step.step_id, at=AT)
    reduced, completed = t.pull_events()
    assert isinstance(reduced, DoseReduced) and isinstance(completed, TaperCompleted)
    assert completed.outcome == "stopped" and completed.causation_id == reduced.event_id
    assert completed.decision_id == step.decision_id


def test_without_a_moment_nothing_is_announced() -> None:
    t = taper()
    step = t.reduce(D(8), TODAY, decision(DecisionKind.REDUCE), today=TODAY)
    t.apply(step.step_id)
    assert t.hold("clinician_hold")
    t.resume(decision(DecisionKind.RESUME))
    assert t.events == []


def test_monitorings_hold_is_caused_by_the_threshold_and_a_second_hold_announces_nothing() -> None:
    t = taper()
    red = threshold(t)
    assert t.hold("red_threshold_exceeded", at=AT, cause=red)
    assert not t.hold("amber_threshold_exceeded", at=AT, cause=red)
    [held] = t.pull_events()
    assert isinstance(held, TaperHeld)
    assert held.held_by == "monitoring" and held.decision_id is None
    assert held.causation_id == red.event_id and held.reason_code == "red_threshold_exceeded"
    resume = decision(DecisionKind.RESUME)
    t.resume(resume, at=AT)
    [resumed] = t.pull_events()
    assert isinstance(resumed, TaperResumed) and resumed.correlation_id == resume.decision_id


def test_a_patients_hold_names_the_patient() -> None:
    t = taper()
    asked = ClinicianDecision.new(DecisionKind.PATIENT_HOLD, "patient-1", "feeling_unwell")
    assert t.hold_by(asked, at=AT)
    [held] = t.pull_events()
    assert isinstance(held, TaperHeld)
    assert held.held_by == "patient" and held.decision_id == asked.decision_id


def test_a_return_to_the_prior_dose_announces_the_hold_it_causes_unless_already_held() -> None:
    for already_held in (False, True):
        t = taper()
        step = t.reduce(D(8), TODAY, decision(DecisionKind.REDUCE), today=TODAY)
        t.apply(step.step_id)
        if already_held:
            t.hold("clinician_hold")
        t.restore_prior(decision(DecisionKind.RESTORE), today=TODAY, at=AT)
        events = t.pull_events()
        assert isinstance(events[0], DoseRestored)
        assert events[0].restored_daily_dose_mg == D(10)
        if already_held:
            assert len(events) == 1
        else:
            [held] = events[1:]
            assert isinstance(held, TaperHeld) and held.reason_code == RESTORED_HOLD_REASON
            assert held.causation_id == events[0].event_id and held.held_by == "clinician"


def test_ending_at_maintenance_after_the_plans_last_step_is_caused_by_that_step() -> None:
    t = taper()
    approval = decision(DecisionKind.APPROVE)
    step = t.reduce(D(8), TODAY, decision(DecisionKind.REDUCE), today=TODAY)
    t.apply(step.step_id, at=AT)
    t.end_at_maintenance(approval, at=AT)
    reduced, completed = t.pull_events()
    assert isinstance(completed, TaperCompleted) and completed.outcome == "maintenance"
    assert completed.causation_id == reduced.event_id
    maintain = decision(DecisionKind.MAINTAIN)
    other = taper()
    other.end_at_maintenance(maintain, at=AT)
    [alone] = other.pull_events()
    assert isinstance(alone, TaperCompleted)
    assert alone.correlation_id == maintain.decision_id and alone.causation_id is None
