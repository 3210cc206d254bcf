"""Group matching: the stage function (pure) and the event handlers over real SQLite."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from contracts import (
    DoseReduced,
    Event,
    TaperCompleted,
    TaperHeld,
    TaperResumed,
    TaperStage,
    topics_consumed_by,
)
from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from services.group_matching.adapters.orm import parked_stage_events, patient_stages
from services.group_matching.domain.model import (
    ACTIVE,
    COMPLETED,
    FINAL_PHASE,
    HELD,
    MAINTENANCE,
    STAGES,
    InvalidStageInput,
    stage_after_dose,
)
from services.group_matching.domain.reference import StageRules, stages_v1
from services.group_matching.entrypoints.consumers import SUBSCRIPTIONS
from services.group_matching.service_layer import stages
from tests import helpers
from tests.runtimes import runtime_fixture

D = Decimal


# --- the stage function -----------------------------------------------------------------------
def test_threshold_is_versioned_data_marked_unconfirmed() -> None:
    rules = stages_v1()
    assert rules.final_phase_below_fraction == D("0.10")
    assert "clinical-reference §5" in rules.source and "⚠" in rules.source


@pytest.mark.parametrize(
    ("new", "stage"),
    [
        ("20", ACTIVE),
        ("2", ACTIVE),
        ("1.9999", FINAL_PHASE),
        ("0.5", FINAL_PHASE),
        ("0", COMPLETED),
    ],
)
def test_stage_by_fraction_of_start(new: str, stage: str) -> None:
    assert stage_after_dose("active", D("20"), D(new)) == stage


def test_first_reduction_has_no_previous_stage() -> None:
    assert stage_after_dose(None, D("10"), D("9")) == ACTIVE


def test_threshold_is_configurable() -> None:
    rules = StageRules(version="t", source="test", final_phase_below_fraction=D("0.25"))
    assert stage_after_dose(None, D("10"), D("2.4"), rules=rules) == FINAL_PHASE
    assert stage_after_dose(None, D("10"), D("2.5"), rules=rules) == ACTIVE


@pytest.mark.parametrize(
    ("previous", "start", "new"),
    [("bogus", "10", "5"), (None, "0", "0"), (None, "10", "-1")],
)
def test_invalid_inputs_are_refused_without_values(
    previous: str | None, start: str, new: str
) -> None:
    with pytest.raises(InvalidStageInput):
        stage_after_dose(previous, D(start), D(new))


def test_stages_are_the_contract_values() -> None:
    assert {s.value for s in TaperStage} == STAGES


@given(
    start=st.decimals(min_value=D("0.01"), max_value=D("1000"), places=4),
    fraction=st.decimals(min_value=D("0"), max_value=D("1"), places=4),
)
def test_property_stage_is_monotone_in_dose(start: Decimal, fraction: Decimal) -> None:
    order = {ACTIVE: 0, FINAL_PHASE: 1, COMPLETED: 2}
    new = (start * fraction).quantize(D("0.0001"))
    lower = (new / 2).quantize(D("0.0001"))
    assert order[stage_after_dose(None, start, lower)] >= order[stage_after_dose(None, start, new)]


# --- the handler and the API ------------------------------------------------------------------
runtime = runtime_fixture("group_matching", at=datetime(2026, 2, 1, tzinfo=UTC))


T0 = datetime(2026, 1, 19, tzinfo=UTC)


def dose_reduced(
    patient: uuid.UUID,
    plan: uuid.UUID,
    step: int,
    prev: str,
    new: str,
    at: datetime = T0,
    taper_stage: str = "active",
) -> DoseReduced:
    return helpers.dose_reduced(
        patient,
        occurred_at=at,
        plan_id=plan,
        step_number=step,
        previous_daily_dose_mg=D(prev),
        new_daily_dose_mg=D(new),
        effective_on=date(2026, 1, 19),
        taper_stage=taper_stage,
    )


def held(patient: uuid.UUID, plan: uuid.UUID, at: datetime) -> TaperHeld:
    return TaperHeld.create(
        patient_id=patient,
        occurred_at=at,
        plan_id=plan,
        reason_code="red_threshold_exceeded",
        held_by="monitoring",
        taper_stage="held",
        causation_id=uuid.uuid4(),
    )


def resumed(
    patient: uuid.UUID, plan: uuid.UUID, at: datetime, taper_stage: str = "active"
) -> TaperResumed:
    return TaperResumed.create(
        patient_id=patient,
        occurred_at=at,
        plan_id=plan,
        decision_id=uuid.uuid4(),
        taper_stage=taper_stage,
    )


def completed(
    patient: uuid.UUID, plan: uuid.UUID, at: datetime, outcome: str = "stopped", final: str = "0"
) -> TaperCompleted:
    return TaperCompleted.create(
        patient_id=patient,
        occurred_at=at,
        plan_id=plan,
        final_daily_dose_mg=D(final),
        outcome=outcome,
        decision_id=uuid.uuid4(),
    )


HANDLERS = {s.topic.event: s.handler for s in SUBSCRIPTIONS}


async def apply(rt: ServiceRuntime, event: Event) -> None:
    """Run the subscribed handler for the event's type, as the consumer would."""
    async with rt.uow() as uow:
        await HANDLERS[type(event)](event, uow)
        await uow.commit()


async def stage_row(rt: ServiceRuntime, patient: uuid.UUID) -> dict[str, Any]:
    async with rt.uow() as uow:
        row = (
            (
                await uow.session.execute(
                    sa.select(patient_stages).where(patient_stages.c.patient_id == patient)
                )
            )
            .mappings()
            .one()
        )
        return dict(row)


def test_group_matching_subscribes_to_what_contracts_say() -> None:
    assert {s.topic for s in SUBSCRIPTIONS} == set(topics_consumed_by("group_matching"))


async def test_the_schedulers_final_phase_is_used_and_the_dose_derivation_is_the_fallback(
    runtime: ServiceRuntime,
) -> None:
    """Group matching first sees this plan at 1 mg (the scheduler knows it started at 20): from
    the doses alone 0.9 of 1 is active, but the scheduler announces final_phase (issue 13)."""
    patient, plan = uuid.uuid4(), uuid.uuid4()
    await apply(runtime, dose_reduced(patient, plan, 1, "1", "0.9", taper_stage="final_phase"))
    assert (await stage_row(runtime, patient))["stage"] == FINAL_PHASE
    at = T0 + timedelta(days=1)
    await apply(runtime, held(patient, plan, at))
    await apply(runtime, resumed(patient, plan, at + timedelta(hours=1), "final_phase"))
    assert (await stage_row(runtime, patient))["stage"] == FINAL_PHASE

    # An event saying only "active" (every scheduler before issue 13): the doses decide.
    other = uuid.uuid4()
    await apply(runtime, dose_reduced(other, uuid.uuid4(), 1, "1", "0.9"))
    assert (await stage_row(runtime, other))["stage"] == ACTIVE


async def test_dose_reductions_move_the_stage(runtime: ServiceRuntime) -> None:
    patient, plan = uuid.uuid4(), uuid.uuid4()
    await apply(runtime, dose_reduced(patient, plan, 1, "20", "15"))
    row = await stage_row(runtime, patient)
    assert row["stage"] == ACTIVE and D(row["start_daily_dose_mg"]) == D("20")

    last = dose_reduced(patient, plan, 2, "15", "1.5")
    await apply(runtime, last)
    row = await stage_row(runtime, patient)
    assert row["stage"] == FINAL_PHASE and row["last_event_id"] == last.event_id
    assert D(row["latest_daily_dose_mg"]) == D("1.5")

    await apply(runtime, dose_reduced(patient, plan, 1, "20", "15"))  # late, older step
    assert (await stage_row(runtime, patient))["stage"] == FINAL_PHASE

    await apply(runtime, dose_reduced(patient, plan, 3, "1.5", "0"))
    assert (await stage_row(runtime, patient))["stage"] == COMPLETED

    new_plan = uuid.uuid4()
    await apply(runtime, dose_reduced(patient, new_plan, 1, "10", "9"))
    row = await stage_row(runtime, patient)
    assert row["stage"] == ACTIVE and D(row["start_daily_dose_mg"]) == D("10")


async def test_an_unusable_event_is_permanent(runtime: ServiceRuntime) -> None:
    with pytest.raises(stages.UnusableDoseEvent):
        await apply(runtime, dose_reduced(uuid.uuid4(), uuid.uuid4(), 1, "0", "0"))


async def test_stage_endpoint(runtime: ServiceRuntime) -> None:
    patient = uuid.uuid4()
    url = f"/api/group-matching/patients/{patient}/stage"

    def headers(role: Role, **claims: Any) -> dict[str, str]:
        token = issue_dev_token(runtime.settings, subject="u-1", role=role, **claims)
        return {"Authorization": f"Bearer {token}"}

    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        me = headers(Role.PATIENT, patient_id=patient)
        assert (await client.get(url, headers=me)).status_code == 404
        await apply(runtime, dose_reduced(patient, uuid.uuid4(), 1, "10", "9"))
        r = await client.get(url, headers=me)
        assert r.status_code == 200 and r.json()["stage"] == ACTIVE
        r = await client.get(url, headers=headers(Role.CLINICIAN, panel=[patient]))
        assert r.status_code == 200
        r = await client.get(url, headers=headers(Role.CLINICIAN, panel=[uuid.uuid4()]))
        assert r.status_code == 403
        r = await client.get(url, headers=headers(Role.PATIENT, patient_id=uuid.uuid4()))
        assert r.status_code == 403


# --- lifecycle events -------------------------------------------------------------------------
def at(days: int) -> datetime:
    return T0 + timedelta(days=days)


async def test_hold_resume_and_completion_move_the_stage(runtime: ServiceRuntime) -> None:
    patient, plan = uuid.uuid4(), uuid.uuid4()
    await apply(runtime, dose_reduced(patient, plan, 1, "20", "15", at(0)))

    hold = held(patient, plan, at(1))
    await apply(runtime, hold)
    row = await stage_row(runtime, patient)
    assert row["stage"] == HELD and row["last_event_id"] == hold.event_id
    assert row["last_event_at"] == at(1)
    assert D(row["latest_daily_dose_mg"]) == D("15") and row["last_step_number"] == 1

    await apply(runtime, resumed(patient, plan, at(2)))
    assert (await stage_row(runtime, patient))["stage"] == ACTIVE  # 15 of 20: active

    await apply(runtime, dose_reduced(patient, plan, 2, "15", "1", at(3)))
    await apply(runtime, held(patient, plan, at(4)))
    await apply(runtime, resumed(patient, plan, at(5)))
    assert (await stage_row(runtime, patient))["stage"] == FINAL_PHASE  # what 1 of 20 implies

    await apply(runtime, dose_reduced(patient, plan, 3, "1", "0", at(6)))
    await apply(runtime, completed(patient, plan, at(6)))
    row = await stage_row(runtime, patient)
    assert row["stage"] == COMPLETED and D(row["latest_daily_dose_mg"]) == D("0")


async def test_completion_at_a_maintenance_dose(runtime: ServiceRuntime) -> None:
    patient, plan = uuid.uuid4(), uuid.uuid4()
    await apply(runtime, dose_reduced(patient, plan, 1, "20", "15", at(0)))
    await apply(runtime, completed(patient, plan, at(1), outcome="maintenance", final="15"))
    row = await stage_row(runtime, patient)
    assert row["stage"] == MAINTENANCE and D(row["latest_daily_dose_mg"]) == D("15")
    # an ended plan is neither held nor resumed any more
    await apply(runtime, held(patient, plan, at(2)))
    await apply(runtime, resumed(patient, plan, at(3)))
    assert (await stage_row(runtime, patient))["stage"] == MAINTENANCE


async def test_completion_delivered_before_its_dose_reduced_wins(runtime: ServiceRuntime) -> None:
    """The two are published together but travel on different topics: any order may arrive."""
    patient, plan = uuid.uuid4(), uuid.uuid4()
    await apply(runtime, dose_reduced(patient, plan, 1, "20", "15", at(0)))
    await apply(runtime, completed(patient, plan, at(5), outcome="maintenance", final="10"))
    await apply(runtime, dose_reduced(patient, plan, 2, "15", "10", at(5)))
    row = await stage_row(runtime, patient)
    assert row["stage"] == MAINTENANCE and row["last_step_number"] == 2


async def test_stale_lifecycle_events_are_ignored(runtime: ServiceRuntime) -> None:
    patient, plan = uuid.uuid4(), uuid.uuid4()
    await apply(runtime, dose_reduced(patient, plan, 1, "20", "15", at(0)))
    await apply(runtime, held(patient, plan, at(2)))
    before = await stage_row(runtime, patient)

    await apply(runtime, resumed(patient, plan, at(1)))  # resumed an earlier hold: stale
    assert await stage_row(runtime, patient) == before

    await apply(runtime, resumed(patient, plan, at(3)))
    await apply(runtime, held(patient, plan, at(2)))  # the hold again, redelivered late
    await apply(runtime, held(patient, plan, at(1)))  # an older hold, late
    row = await stage_row(runtime, patient)
    assert row["stage"] == ACTIVE and row["last_event_at"] == at(3)


async def test_a_reduction_older_than_the_hold_keeps_the_stage_held(
    runtime: ServiceRuntime,
) -> None:
    patient, plan = uuid.uuid4(), uuid.uuid4()
    await apply(runtime, dose_reduced(patient, plan, 1, "20", "15", at(0)))
    await apply(runtime, held(patient, plan, at(3)))
    await apply(runtime, dose_reduced(patient, plan, 2, "15", "12", at(2)))  # delivered late
    row = await stage_row(runtime, patient)
    assert row["stage"] == HELD and D(row["latest_daily_dose_mg"]) == D("12")
    assert row["last_step_number"] == 2 and row["last_event_at"] == at(3)

    await apply(runtime, resumed(patient, plan, at(4)))
    await apply(runtime, dose_reduced(patient, plan, 3, "12", "1", at(5)))
    assert (await stage_row(runtime, patient))["stage"] == FINAL_PHASE


async def test_a_newer_reduction_implies_the_hold_was_lifted(runtime: ServiceRuntime) -> None:
    """Hold, resume, reduce; delivered hold, reduce, resume: the stage follows the newest fact."""
    patient, plan = uuid.uuid4(), uuid.uuid4()
    await apply(runtime, dose_reduced(patient, plan, 1, "20", "15", at(0)))
    await apply(runtime, held(patient, plan, at(1)))
    await apply(runtime, dose_reduced(patient, plan, 2, "15", "12", at(3)))
    await apply(runtime, resumed(patient, plan, at(2)))
    row = await stage_row(runtime, patient)
    assert row["stage"] == ACTIVE and row["last_event_at"] == at(3)


async def test_lifecycle_events_before_the_first_step_are_parked_then_applied(
    runtime: ServiceRuntime,
) -> None:
    """Issue 17: a valid TaperHeld (or TaperResumed/TaperCompleted) that arrives before the
    patient's first DoseReduced is parked, never dead-lettered, and applied once the step comes."""
    patient, plan = uuid.uuid4(), uuid.uuid4()
    hold = held(patient, plan, at(2))
    await apply(runtime, hold)  # no error: nothing for the dead-letter topic
    await apply(runtime, hold)  # a redelivery parks nothing twice
    async with runtime.uow() as uow:
        assert (await uow.session.execute(sa.select(patient_stages))).first() is None
        parked = (await uow.session.execute(sa.select(parked_stage_events))).all()
    assert len(parked) == 1

    await apply(runtime, dose_reduced(patient, plan, 1, "20", "15", at(1)))
    row = await stage_row(runtime, patient)
    assert row["stage"] == HELD and row["last_event_id"] == hold.event_id  # the hold came later
    async with runtime.uow() as uow:
        assert (await uow.session.execute(sa.select(parked_stage_events))).first() is None

    # a parked event older than the step is stale when released, as it would have been in order
    late, plan2 = uuid.uuid4(), uuid.uuid4()
    await apply(runtime, held(late, plan2, at(0)))
    await apply(runtime, dose_reduced(late, plan2, 1, "20", "15", at(1)))
    assert (await stage_row(runtime, late))["stage"] == ACTIVE


async def test_events_of_other_plans_change_nothing(runtime: ServiceRuntime) -> None:
    patient, plan = uuid.uuid4(), uuid.uuid4()
    await apply(runtime, dose_reduced(patient, plan, 1, "20", "15", at(1)))
    before = await stage_row(runtime, patient)
    other = uuid.uuid4()
    await apply(runtime, held(patient, other, at(2)))
    await apply(runtime, resumed(patient, other, at(3)))
    await apply(runtime, completed(patient, other, at(4)))
    assert await stage_row(runtime, patient) == before


async def test_a_redelivered_lifecycle_event_is_a_no_op(runtime: ServiceRuntime) -> None:
    patient, plan = uuid.uuid4(), uuid.uuid4()
    await apply(runtime, dose_reduced(patient, plan, 1, "20", "15", at(0)))
    hold = held(patient, plan, at(1))
    await apply(runtime, hold)
    first = await stage_row(runtime, patient)
    await apply(runtime, hold)
    assert await stage_row(runtime, patient) == first
