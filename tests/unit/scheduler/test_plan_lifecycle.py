"""Persisted plans over SQLite (the real app, unit of work and timers; no broker started):
draft → approve → one durable timer per step, each step emitted once, a hold blocks the chain."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial

import httpx
import pytest

from contracts import DoseReduced
from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from services.scheduler.domain.model import (
    ClinicianDecision,
    DecisionKind,
    PatientTaper,
    TaperRuleViolation,
)
from tests.plans import PLAN_BODY, approve_plan, draft_plan
from tests.unit.scheduler.support import NOW, auth, clock, events, live_timers, rows

D = Decimal
PATIENT = uuid.uuid4()
BASE = f"/api/scheduler/patients/{PATIENT}"
BODY = PLAN_BODY


@pytest.fixture
def clinician(runtime: ServiceRuntime) -> dict[str, str]:
    return auth(runtime, Role.CLINICIAN, panel=[PATIENT])


draft = partial(draft_plan, patient=PATIENT)
approve = partial(approve_plan, patient=PATIENT)


async def test_a_draft_stores_every_step_and_schedules_nothing(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    assert plan["status"] == "draft" and plan["approved_by_decision_id"] is None
    assert len(plan["steps"]) > 3
    assert {s["status"] for s in plan["steps"]} == {"planned"}
    assert plan["steps"][-1]["daily_dose_mg"] == "0"
    assert plan["reference_versions"] and plan["input"]["drug"] == "diazepam"
    assert await live_timers(runtime) == [] and await rows(runtime, "outbox") == []
    assert await rows(runtime, "tapers") == []
    # the patient reads it; another clinician's panel does not reach it
    me = auth(runtime, Role.PATIENT, patient_id=PATIENT)
    r = await client.get(f"{BASE}/plans/{plan['id']}", headers=me)
    assert r.status_code == 200 and r.json()["steps"] == plan["steps"]
    other = auth(runtime, Role.CLINICIAN, panel=[uuid.uuid4()])
    r = await client.get(f"{BASE}/plans/{plan['id']}", headers=other)
    assert r.status_code == 403
    r = await client.post(f"{BASE}/plans", json=BODY, headers=me)  # patients cannot plan
    assert r.status_code == 403


async def test_bad_input_is_422_naming_the_field_and_nothing_is_saved(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    r = await client.post(
        f"{BASE}/plans", json={**BODY, "start_on": "2026-01-01"}, headers=clinician
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "start_on"]
    r = await client.post(f"{BASE}/plans", json={**BODY, "age": -1}, headers=clinician)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "age"]
    assert await rows(runtime, "plans") == [] and await rows(runtime, "plan_steps") == []


async def test_approve_schedules_exactly_one_timer_and_records_the_decision(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    approved = await approve(client, clinician, plan["id"])
    assert approved["status"] == "active" and approved["approved_by_decision_id"]
    assert [s["status"] for s in approved["steps"][:2]] == ["scheduled", "planned"]
    [timer] = await live_timers(runtime)
    assert timer["kind"] == "emit_plan_step" and timer["key"] == f"{plan['id']}:1"
    first_on = date.fromisoformat(approved["steps"][0]["effective_on"])
    assert timer["due_at"] == datetime(first_on.year, first_on.month, first_on.day, tzinfo=UTC)
    assert await rows(runtime, "outbox") == []  # nothing announced before the step's date
    [taper] = await rows(runtime, "tapers")
    assert str(taper["plan_id"]) == plan["id"] and D(taper["current_daily_dose_mg"]) == D(10)

    r = await client.get(f"{BASE}/decisions", headers=clinician)
    assert r.status_code == 200
    [d] = r.json()
    assert d["kind"] == "approve" and d["clinician"] == "clinician-1"
    assert d["reason_code"] == "plan_approved" and d["id"] == approved["approved_by_decision_id"]
    # approving twice is refused and arms nothing more
    r = await client.post(f"{BASE}/plans/{plan['id']}/approve", json={}, headers=clinician)
    assert r.status_code == 409
    assert len(await live_timers(runtime)) == 1


async def test_the_timer_emits_one_dose_reduced_arms_the_next_and_fires_once(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    approved = await approve(client, clinician, plan["id"])
    s1, s2 = approved["steps"][0], approved["steps"][1]
    clock(runtime).set(datetime.fromisoformat(s1["effective_on"]).replace(tzinfo=UTC))
    assert await runtime.timers.fire_due() == 1

    [event] = await events(runtime)
    assert isinstance(event, DoseReduced)
    assert event.patient_id == PATIENT and str(event.plan_id) == plan["id"]
    assert event.step_number == 1 and event.new_daily_dose_mg == D(s1["daily_dose_mg"])
    assert event.previous_daily_dose_mg == D(10) and event.drug == "diazepam"
    assert str(event.approved_by_decision_id) == approved["approved_by_decision_id"]
    assert event.effective_on == date.fromisoformat(s1["effective_on"])
    [timer] = await live_timers(runtime)
    assert timer["key"] == f"{plan['id']}:2"
    due = datetime.fromisoformat(s2["effective_on"]).replace(tzinfo=UTC)
    assert timer["due_at"] == due

    # firing the same timer again (a redelivery, a second poller) emits nothing more
    from services.chassis.timers import DueTimer
    from services.scheduler.service_layer.step_timer import emit_plan_step

    async with runtime.uow() as uow:
        await emit_plan_step(DueTimer("emit_plan_step", f"{plan['id']}:1", due, {}, 0), uow)
        await uow.commit()
    assert await runtime.timers.fire_due() == 0
    assert len(await events(runtime)) == 1
    r = await client.get(f"{BASE}/plans/{plan['id']}", headers=clinician)
    assert [s["status"] for s in r.json()["steps"][:3]] == ["emitted", "scheduled", "planned"]
    assert r.json()["steps"][0]["dose_step_id"]


async def test_a_held_taper_blocks_the_due_step_and_resume_goes_on_from_the_resume_date(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    approved = await approve(client, clinician, plan["id"])
    clock(runtime).set(NOW + timedelta(hours=1))  # decisions are listed in time order
    r = await client.post(
        f"{BASE}/taper/hold", json={"reason_code": "patient_request"}, headers=clinician
    )
    assert r.status_code == 200, r.text
    s1 = approved["steps"][0]
    clock(runtime).set(datetime.fromisoformat(s1["effective_on"]).replace(tzinfo=UTC))
    assert await runtime.timers.fire_due() == 1
    assert [e.event_type for e in await events(runtime)] == ["TaperHeld"]  # no DoseReduced
    assert await live_timers(runtime) == []  # the chain stops
    r = await client.get(f"{BASE}/plans/{plan['id']}", headers=clinician)
    assert r.json()["steps"][0]["status"] == "blocked_by_hold"

    # resumed ten days later: step 1 now falls on the resume date, later steps keep their spacing
    resumed_at = datetime.fromisoformat(s1["effective_on"]).replace(tzinfo=UTC) + timedelta(
        days=10, hours=9
    )
    clock(runtime).set(resumed_at)
    r = await client.post(
        f"{BASE}/taper/resume", json={"reason_code": "symptoms_settled"}, headers=clinician
    )
    assert r.status_code == 200, r.text
    r = await client.get(f"{BASE}/plans/{plan['id']}", headers=clinician)
    steps = r.json()["steps"]
    assert steps[0]["status"] == "scheduled"
    assert steps[0]["effective_on"] == resumed_at.date().isoformat()
    gap = date.fromisoformat(approved["steps"][1]["effective_on"]) - date.fromisoformat(
        s1["effective_on"]
    )
    assert date.fromisoformat(steps[1]["effective_on"]) - resumed_at.date() == gap
    assert await runtime.timers.fire_due() == 1
    reduced = [e for e in await events(runtime) if isinstance(e, DoseReduced)]
    assert len(reduced) == 1 and reduced[0].effective_on == resumed_at.date()
    kinds = [d["kind"] for d in (await client.get(f"{BASE}/decisions", headers=clinician)).json()]
    assert kinds == ["resume", "hold", "approve"]  # newest first


async def test_manual_reductions_are_refused_while_a_plan_is_active(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    await approve(client, clinician, plan["id"])
    r = await client.post(
        f"{BASE}/dose-reductions",
        json={"new_daily_dose_mg": "9", "effective_on": "2026-01-20", "reason_code": "plan"},
        headers=clinician,
    )
    assert r.status_code == 409


async def test_a_whole_plan_runs_to_completion_step_by_step(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    approved = await approve(client, clinician, plan["id"])
    for s in approved["steps"]:
        clock(runtime).set(datetime.fromisoformat(s["effective_on"]).replace(tzinfo=UTC))
        assert await runtime.timers.fire_due() == 1
    types = [e.event_type for e in await events(runtime)]
    assert types == ["DoseReduced"] * len(approved["steps"]) + ["TaperCompleted"]
    # The announced stage: final_phase below 10% (⚠ data) of the 10 mg start, as the contract
    # says (clinical reference §5); the step to zero completes the taper.
    reduced = [e for e in await events(runtime) if isinstance(e, DoseReduced)]
    expected = [
        "completed"
        if e.new_daily_dose_mg == 0
        else "final_phase"
        if e.new_daily_dose_mg < 1
        else "active"
        for e in reduced
    ]
    assert [e.taper_stage.value for e in reduced] == expected
    assert "final_phase" in expected and "active" in expected
    r = await client.get(f"{BASE}/plans/{plan['id']}", headers=clinician)
    assert r.json()["status"] == "completed"
    assert {s["status"] for s in r.json()["steps"]} == {"emitted"}


def test_the_final_step_to_zero_is_exempt_at_or_below_the_final_step_dose() -> None:
    def decision() -> ClinicianDecision:
        return ClinicianDecision(uuid.uuid4(), "clin-1", DecisionKind.REDUCE, "planned_step")

    def taper(dose: str) -> PatientTaper:
        start = ClinicianDecision(uuid.uuid4(), "clin-1", DecisionKind.START, "taper_initiated")
        return PatientTaper.start(
            patient_id=uuid.uuid4(),
            drug="diazepam",
            half_life_class="long",
            current_daily_dose_mg=D(dose),
            decision=start,
        )

    today = date(2026, 1, 5)
    step = taper("0.5").reduce(
        D(0), today, decision(), today=today, final_step_at_or_below_mg=D("0.5")
    )
    assert not step.overridden
    with pytest.raises(TaperRuleViolation):  # above the final-step dose: still bounded
        taper("0.6").reduce(
            D(0), today, decision(), today=today, final_step_at_or_below_mg=D("0.5")
        )
