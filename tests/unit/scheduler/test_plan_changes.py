"""Changes to persisted plans over SQLite (the real app, unit of work and timers; no broker):
a crossover plan run to the end, return to the prior dose, adjust, end at maintenance, the
patient's hold request, cancelling a draft and a plan that ends at its maintenance target."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import pytest

from contracts import DoseReduced, DoseRestored, TaperCompleted, TaperHeld
from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from services.chassis.timers import DueTimer
from services.scheduler.service_layer.step_timer import emit_plan_step
from tests.plans import PLAN_BODY, approve_plan, draft_plan
from tests.unit.scheduler.support import NOW, auth, clock, events, live_timers, rows

D = Decimal
PATIENT = uuid.uuid4()
BASE = f"/api/scheduler/patients/{PATIENT}"
# Diazepam 10 mg a day: steps every 2 weeks from 2026-01-12 (10 -> 9 -> 8.1 -> ...).
BODY = PLAN_BODY
CROSSOVER: dict[str, Any] = {
    "drug": "alprazolam",
    "administrations_mg": ["0.5", "0.5", "0.5", "0.5"],
    "duration_weeks": 30,
    "age": 40,
    "start_on": "2026-01-12",
    "crossover_wanted": True,
    "formulations": [
        "alprazolam_tab_0_25mg",
        "alprazolam_tab_0_5mg",
        "diazepam_tab_2mg",
        "diazepam_tab_5mg",
        "diazepam_sol_1mg_ml",
    ],
}


@pytest.fixture
def clinician(runtime: ServiceRuntime) -> dict[str, str]:
    return auth(runtime, Role.CLINICIAN, panel=[PATIENT])


def at(day: str | date, hour: int = 0) -> datetime:
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


async def assert_no_timer_failed(runtime: ServiceRuntime) -> None:
    bad = [t for t in await rows(runtime, "timers") if t["failed_at"] or t["attempts"]]
    assert bad == [], [(t["key"], t["last_error"]) for t in bad]


async def reductions(runtime: ServiceRuntime) -> list[DoseReduced]:
    return [e for e in await events(runtime) if isinstance(e, DoseReduced)]


draft = partial(draft_plan, patient=PATIENT)
approve = partial(approve_plan, patient=PATIENT)


async def get_plan(
    client: httpx.AsyncClient, headers: dict[str, str], plan_id: str
) -> dict[str, Any]:
    r = await client.get(f"{BASE}/plans/{plan_id}", headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def get_taper(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get(f"{BASE}/taper", headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def decisions(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Oldest first (the API lists newest first): these tests read the history in order."""
    r = await client.get(f"{BASE}/decisions", headers=headers)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()
    return out[::-1]


async def fire_at(runtime: ServiceRuntime, day: str | date) -> int:
    clock(runtime).set(at(day))
    return await runtime.timers.fire_due()


async def run_to_the_end(runtime: ServiceRuntime, limit: int = 200) -> int:
    """Advance the clock to each live timer in turn and fire what is due, until none is left."""
    fired = 0
    for _ in range(limit):
        live = await live_timers(runtime)
        if not live:
            return fired
        clock(runtime).set(min(t["due_at"] for t in live))
        n = await runtime.timers.fire_due()
        assert n >= 1
        fired += n
    raise AssertionError("timers kept coming")


def daily(step: dict[str, Any], drug: str) -> Decimal:
    return sum((D(a["dose_mg"]) for a in step["administrations"] if a["drug"] == drug), D(0))


# --- 1. crossover -------------------------------------------------------------------------------
async def test_a_crossover_plan_is_approved_and_runs_step_by_step_to_its_end(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician, CROSSOVER)
    assert plan["strategy"] == "crossover_then_proportional"
    approved = await approve(client, clinician, plan["id"])
    assert approved["status"] == "active"
    steps = approved["steps"]
    crossover = [s for s in steps if s["kind"] == "crossover"]
    assert len(crossover) >= 2 and steps[: len(crossover)] == crossover
    taper = await get_taper(client, clinician)
    assert taper["drug"] == "alprazolam" and taper["half_life_class"] == "short"
    assert D(taper["current_daily_dose_mg"]) == D(2)

    after_crossover: dict[str, Any] | None = None
    for _ in range(200):
        live = await live_timers(runtime)
        if not live:
            break
        clock(runtime).set(min(t["due_at"] for t in live))
        assert await runtime.timers.fire_due() == 1
        if len(await reductions(runtime)) == len(crossover):
            after_crossover = await get_taper(client, clinician)
    await assert_no_timer_failed(runtime)

    # after the last crossover stage the taper goes on with diazepam
    assert after_crossover is not None
    assert after_crossover["drug"] == "diazepam"
    assert after_crossover["half_life_class"] == "long"
    assert after_crossover["stage"] == "crossover"
    assert D(after_crossover["current_daily_dose_mg"]) == daily(crossover[-1], "diazepam")
    assert [r["drug"] for r in after_crossover["regimen"]] == ["diazepam"]

    reduced = await reductions(runtime)
    assert len(reduced) == len(steps)  # each step emitted once
    assert [e.step_number for e in reduced] == list(range(1, len(steps) + 1))
    assert {e.approved_by_decision_id for e in reduced} == {
        uuid.UUID(approved["approved_by_decision_id"])
    }
    previous = {"alprazolam": D(2), "diazepam": D(0)}
    previous_eq = D(plan["steps"][0]["diazepam_eq_mg"])  # a crossover keeps the eq dose
    for event, step in zip(reduced, steps, strict=True):
        assert event.effective_on == date.fromisoformat(step["effective_on"])
        assert event.previous_daily_diazepam_eq_mg is not None
        assert event.new_daily_diazepam_eq_mg is not None
        assert event.new_daily_diazepam_eq_mg == D(step["diazepam_eq_mg"])
        assert event.previous_daily_diazepam_eq_mg == previous_eq
        previous_eq = D(step["diazepam_eq_mg"])
        assert event.regimen is not None
        regimen = {d.drug: d.daily_dose_mg for d in event.regimen}
        if step["kind"] == "crossover":
            assert event.step_kind == "crossover"
            assert event.drug == "alprazolam" and event.half_life_class == "short"
            assert event.taper_stage == "crossover"
            assert event.previous_daily_dose_mg == previous["alprazolam"]
            assert event.new_daily_dose_mg == daily(step, "alprazolam")
            if daily(step, "alprazolam") > 0:  # mixed: both drugs
                assert set(regimen) == {"alprazolam", "diazepam"}
            else:
                assert set(regimen) == {"diazepam"}
            assert regimen == {d: daily(step, d) for d in regimen}
        else:
            assert event.drug == "diazepam" and event.half_life_class == "long"
            assert event.step_kind == ("final" if step is steps[-1] else "reduction")
            assert step["kind"] == event.step_kind
            assert event.previous_daily_dose_mg == previous["diazepam"]
            assert event.new_daily_dose_mg == daily(step, "diazepam") == regimen["diazepam"]
            assert event.new_daily_diazepam_eq_mg == event.new_daily_dose_mg
        previous = {d: daily(step, d) for d in ("alprazolam", "diazepam")}

    stored = await get_plan(client, clinician, plan["id"])
    completed = [e for e in await events(runtime) if isinstance(e, TaperCompleted)]
    if stored["summary"]["complete"] and not stored["summary"]["formulation_needs"]:
        assert D(stored["summary"]["ends_at_mg"]) == 0
        assert stored["status"] == "completed"
        assert {s["status"] for s in stored["steps"]} == {"emitted"}
        [done] = completed
        assert done.outcome == "stopped" and done.causation_id == reduced[-1].event_id
        assert (await get_taper(client, clinician))["stage"] == "completed"
    else:  # a product is missing: the plan stops short and stays active
        assert stored["status"] == "active" and completed == []
    assert await live_timers(runtime) == []


# --- 2. return to the prior dose ------------------------------------------------------------------
async def test_return_to_prior_dose_holds_blocks_the_next_step_and_resume_replans(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    approved = await approve(client, clinician, plan["id"])
    old = approved["steps"]
    url = f"{BASE}/taper/return-to-prior-dose"
    r = await client.post(url, json={"reason_code": "withdrawal_symptoms"}, headers=clinician)
    assert r.status_code == 409  # no step has taken effect yet
    assert await rows(runtime, "outbox") == []

    assert await fire_at(runtime, old[0]["effective_on"]) == 1
    clock(runtime).set(at(old[0]["effective_on"], 10) + timedelta(days=2))
    r = await client.post(url, json={"reason_code": "withdrawal_symptoms"}, headers=clinician)
    assert r.status_code == 200, r.text
    taper = r.json()
    assert taper["held"] is True and taper["stage"] == "held"
    assert D(taper["current_daily_dose_mg"]) == D(10)
    assert taper["held_reason"] == "returned_to_prior_dose"

    first, restored, held = await events(runtime)
    assert isinstance(first, DoseReduced) and isinstance(restored, DoseRestored)
    assert isinstance(held, TaperHeld)
    assert restored.previous_daily_dose_mg == D(old[0]["daily_dose_mg"])
    assert restored.restored_daily_dose_mg == D(10) and restored.drug == "diazepam"
    assert restored.effective_on == clock(runtime).now().date()
    assert held.causation_id == restored.event_id
    assert held.correlation_id == restored.correlation_id
    assert held.held_by == "clinician" and held.decision_id == restored.decision_id

    r = await client.post(url, json={"reason_code": "withdrawal_symptoms"}, headers=clinician)
    assert r.status_code == 409  # a second return in a row
    assert len(await events(runtime)) == 3

    # the next step's timer comes due while held: blocked, nothing announced
    assert await fire_at(runtime, old[1]["effective_on"]) == 1
    assert len(await events(runtime)) == 3
    stored = await get_plan(client, clinician, plan["id"])
    assert stored["steps"][1]["status"] == "blocked_by_hold"
    assert await live_timers(runtime) == []

    # the pace interval the plan had when the clinician resumed
    interval = int(stored["summary"]["pace"]["interval_weeks"])
    version_before_resume = stored["version"]
    resumed_at = at(old[1]["effective_on"], 9) + timedelta(days=7)
    clock(runtime).set(resumed_at)
    r = await client.post(
        f"{BASE}/taper/resume", json={"reason_code": "symptoms_settled"}, headers=clinician
    )
    assert r.status_code == 200, r.text
    assert r.json()["held"] is False
    stored = await get_plan(client, clinician, plan["id"])
    steps = stored["steps"]
    assert steps[0]["status"] == "emitted"
    # The schedule in force reads 1..n; the superseded steps are apart (issue 18), each still
    # under its stored sequence, which the new ones follow.
    superseded = stored["cancelled_steps"]
    assert {s["status"] for s in superseded} == {"cancelled"}
    assert [s["sequence"] for s in superseded] == [s["number"] for s in old[1:]]
    new = steps[1:]
    assert [s["number"] for s in steps] == list(range(1, len(steps) + 1))
    assert new and [s["sequence"] for s in new] == list(
        range(len(old) + 1, len(old) + len(new) + 1)
    )
    assert date.fromisoformat(new[0]["effective_on"]) == resumed_at.date() + timedelta(
        weeks=interval
    )
    assert D(new[0]["daily_dose_mg"]) < D(10)
    # No clinician has seen these doses: they are only proposed, nothing is armed, and their
    # day passes without a dose change (issue 13, item 12).
    assert {s["status"] for s in new} == {"proposed"}
    assert await live_timers(runtime) == []
    kinds = [d["kind"] for d in await decisions(client, clinician)]
    assert kinds.count("resume") == 1  # one resume decision for one resume
    assert "adjust" not in kinds and kinds.count("approve") == 1  # the original approval only
    clock(runtime).set(at(new[0]["effective_on"]) - timedelta(days=1))
    assert await runtime.timers.fire_due() == 0
    assert len(await reductions(runtime)) == 1

    # A clinician approves the proposal they reviewed (its version): the decision records the
    # steps; the first is armed. Approving an older version of the plan is refused.
    r = await client.post(
        f"{BASE}/plans/{plan['id']}/approve",
        json={"version": version_before_resume},
        headers=clinician,
    )
    assert r.status_code == 409, r.text
    reviewed = await get_plan(client, clinician, plan["id"])
    r = await client.post(
        f"{BASE}/plans/{plan['id']}/approve",
        json={"version": reviewed["version"]},
        headers=clinician,
    )
    assert r.status_code == 200, r.text
    approved_again = r.json()
    new = approved_again["steps"][1:]
    assert new[0]["status"] == "scheduled" and {s["status"] for s in new[1:]} == {"planned"}
    [timer] = await live_timers(runtime)
    assert timer["due_at"] == at(new[0]["effective_on"])
    approval = (await decisions(client, clinician))[-1]
    assert approval["kind"] == "approve"
    [row] = [
        d for d in await rows(runtime, "clinician_decisions") if str(d["id"]) == approval["id"]
    ]
    assert [s["number"] for s in row["payload"]["steps"]] == [s["sequence"] for s in new]
    assert approved_again["approved_by_decision_id"] == approval["id"]

    assert await fire_at(runtime, new[0]["effective_on"]) == 1
    await assert_no_timer_failed(runtime)
    latest = (await reductions(runtime))[-1]
    assert len(await reductions(runtime)) == 2
    assert latest.previous_daily_dose_mg == D(10)  # from the restored dose
    assert latest.new_daily_dose_mg == D(new[0]["daily_dose_mg"])
    assert latest.effective_on == date.fromisoformat(new[0]["effective_on"])
    assert latest.plan_id == uuid.UUID(plan["id"])
    # the step names the approval of the new doses, not the original plan's
    assert str(latest.approved_by_decision_id) == approval["id"]


# --- 3. adjust ------------------------------------------------------------------------------------
async def test_adjust_replans_the_rest_and_the_cancelled_step_emits_nothing(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    other = await draft(client, clinician)
    r = await client.post(
        f"{BASE}/plans/{other['id']}/adjust",
        json={"reason_code": "slower_pace", "pace": "slower"},
        headers=clinician,
    )
    assert r.status_code == 409  # a draft is not adjusted
    r = await client.post(f"{BASE}/plans/{other['id']}/cancel", json={}, headers=clinician)
    assert r.status_code == 200, r.text

    plan = await draft(client, clinician)
    approved = await approve(client, clinician, plan["id"])
    old = approved["steps"]
    assert await fire_at(runtime, old[0]["effective_on"]) == 1
    clock(runtime).set(at(old[0]["effective_on"], 9))
    adjust = f"{BASE}/plans/{plan['id']}/adjust"

    before_steps = (await get_plan(client, clinician, plan["id"]))["steps"]
    before_decisions = await decisions(client, clinician)
    for bad, field in (
        ({"start_on": "2026-01-01"}, "start_on"),
        ({"formulations": ["no_such_product"]}, "formulations"),
    ):
        r = await client.post(
            adjust, json={"reason_code": "slower_pace", "pace": "slower", **bad}, headers=clinician
        )
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", field]
        assert (await get_plan(client, clinician, plan["id"]))["steps"] == before_steps
        assert await decisions(client, clinician) == before_decisions

    r = await client.post(
        adjust, json={"reason_code": "slower_pace", "pace": "slower"}, headers=clinician
    )
    assert r.status_code == 200, r.text
    adjusted = r.json()
    assert adjusted["status"] == "active"
    steps = adjusted["steps"]
    assert steps[0]["status"] == "emitted"
    assert [s["sequence"] for s in adjusted["cancelled_steps"]] == [s["number"] for s in old[1:]]
    assert {s["status"] for s in adjusted["cancelled_steps"]} == {"cancelled"}
    new = steps[1:]
    assert new and new[0]["number"] == 2 and new[0]["sequence"] == len(old) + 1
    assert [s["status"] for s in steps].count("scheduled") == 1
    assert new[0]["status"] == "scheduled"
    assert adjusted["input"]["pace"] == "slower"
    # one pace interval (the plan's, 2 weeks) after the last step taken
    assert date.fromisoformat(new[0]["effective_on"]) == date.fromisoformat(
        old[0]["effective_on"]
    ) + timedelta(weeks=2)
    assert D(new[0]["daily_dose_mg"]) < D(old[0]["daily_dose_mg"])
    gaps = {
        date.fromisoformat(b["effective_on"]) - date.fromisoformat(a["effective_on"])
        for a, b in itertools.pairwise(new)
        if a["kind"] == "reduction"
    }
    assert min(gaps) > timedelta(weeks=2)  # slower: rarer cuts

    kinds = [d["kind"] for d in await decisions(client, clinician)]
    assert kinds.count("adjust") == 1 and kinds[-1] == "adjust"

    # the cancelled step's timer fires and emits nothing; the new first step is emitted once
    old_timer_key = f"{plan['id']}:2"
    assert old_timer_key in {t["key"] for t in await live_timers(runtime)}
    async with runtime.uow() as uow:
        await emit_plan_step(
            DueTimer("emit_plan_step", old_timer_key, at(old[1]["effective_on"]), {}, 0), uow
        )
        await uow.commit()
    assert len(await reductions(runtime)) == 1
    await fire_at(runtime, new[0]["effective_on"])
    await assert_no_timer_failed(runtime)
    reduced = await reductions(runtime)
    assert len(reduced) == 2
    assert reduced[-1].new_daily_dose_mg == D(new[0]["daily_dose_mg"])
    assert reduced[-1].previous_daily_dose_mg == D(old[0]["daily_dose_mg"])
    # The re-planned step names the adjustment that authorised it (its steps recorded there),
    # not the approval of the steps it replaced.
    adjustment = (await decisions(client, clinician))[-1]
    assert str(reduced[-1].approved_by_decision_id) == adjustment["id"]
    assert reduced[0].approved_by_decision_id != reduced[-1].approved_by_decision_id
    [row] = [
        d for d in await rows(runtime, "clinician_decisions") if str(d["id"]) == adjustment["id"]
    ]
    assert [s["number"] for s in row["payload"]["new_steps"]] == [s["sequence"] for s in new]
    stored = await get_plan(client, clinician, plan["id"])
    assert stored["cancelled_steps"][0]["status"] == "cancelled"
    assert stored["steps"][1]["status"] == "emitted" and stored["steps"][1]["number"] == 2


# --- 4. end at maintenance ------------------------------------------------------------------------
async def test_end_at_maintenance_closes_the_plan_and_a_new_plan_from_that_dose_takes_over(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    approved = await approve(client, clinician, plan["id"])
    old = approved["steps"]
    assert await fire_at(runtime, old[0]["effective_on"]) == 1
    clock(runtime).set(at(old[0]["effective_on"], 9))
    url = f"{BASE}/taper/end-at-maintenance"
    r = await client.post(url, json={"reason_code": "stable_on_dose"}, headers=clinician)
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "maintenance"
    maintained = D(old[0]["daily_dose_mg"])
    assert D(r.json()["current_daily_dose_mg"]) == maintained
    stored = await get_plan(client, clinician, plan["id"])
    assert stored["status"] == "maintenance"
    assert [s["status"] for s in stored["steps"]] == ["emitted"]
    assert {s["status"] for s in stored["cancelled_steps"]} == {"cancelled"}
    reduced, completed = await events(runtime)
    assert isinstance(reduced, DoseReduced) and isinstance(completed, TaperCompleted)
    assert completed.outcome == "maintenance" and completed.final_daily_dose_mg == maintained
    assert completed.plan_id == uuid.UUID(plan["id"])

    assert await fire_at(runtime, old[1]["effective_on"]) <= 1
    assert len(await events(runtime)) == 2  # no further DoseReduced
    assert await live_timers(runtime) == []
    r = await client.post(url, json={"reason_code": "stable_on_dose"}, headers=clinician)
    assert r.status_code == 409
    assert len(await events(runtime)) == 2

    start_on = (date.fromisoformat(old[1]["effective_on"]) + timedelta(weeks=2)).isoformat()
    wrong = await draft(client, clinician, {**BODY, "start_on": start_on})  # from 10 mg
    r = await client.post(f"{BASE}/plans/{wrong['id']}/approve", json={}, headers=clinician)
    assert r.status_code == 409, r.text
    assert (await get_plan(client, clinician, wrong["id"]))["status"] == "draft"

    current = [a["dose_mg"] for a in old[0]["administrations"]]
    right = await draft(
        client, clinician, {**BODY, "administrations_mg": current, "start_on": start_on}
    )
    taken = await approve(client, clinician, right["id"])
    assert taken["status"] == "active"
    taper = await get_taper(client, clinician)
    assert taper["plan_id"] == right["id"] and taper["held"] is False
    assert taper["stage"] != "maintenance"
    assert await fire_at(runtime, taken["steps"][0]["effective_on"]) == 1
    await assert_no_timer_failed(runtime)
    latest = (await reductions(runtime))[-1]
    assert latest.plan_id == uuid.UUID(right["id"])
    assert latest.previous_daily_dose_mg == maintained
    assert latest.new_daily_dose_mg == D(taken["steps"][0]["daily_dose_mg"])
    assert str(latest.approved_by_decision_id) == taken["approved_by_decision_id"]


# --- 5. the patient's hold request ----------------------------------------------------------------
async def test_the_patient_asks_for_a_hold_and_only_a_clinician_resumes(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    await approve(client, clinician, plan["id"])
    clock(runtime).set(NOW + timedelta(hours=1))
    me = auth(runtime, Role.PATIENT, patient_id=PATIENT)
    someone_else = auth(runtime, Role.PATIENT, patient_id=uuid.uuid4())
    url = f"{BASE}/taper/hold-request"

    r = await client.post(url, json={"reason_code": "feeling_unwell"}, headers=someone_else)
    assert r.status_code == 403
    assert (await get_taper(client, clinician))["held"] is False

    r = await client.post(url, json={"reason_code": "feeling_unwell"}, headers=me)
    assert r.status_code == 200, r.text
    assert r.json()["held"] is True and r.json()["held_reason"] == "feeling_unwell"
    [held] = await events(runtime)
    assert isinstance(held, TaperHeld)
    assert held.held_by == "patient" and held.decision_id is not None
    assert held.plan_id == uuid.UUID(plan["id"]) and held.reason_code == "feeling_unwell"
    decision = next(d for d in await decisions(client, clinician) if d["kind"] == "patient_hold")
    assert decision["decided_by_role"] == "patient"
    assert decision["id"] == str(held.decision_id)
    assert decision["reason_code"] == "feeling_unwell"

    clock(runtime).set(NOW + timedelta(hours=2))
    resume = f"{BASE}/taper/resume"
    r = await client.post(resume, json={"reason_code": "patient_ready"}, headers=me)
    assert r.status_code == 403
    r = await client.post(resume, json={"reason_code": "patient_ready"}, headers=someone_else)
    assert r.status_code == 403
    assert (await get_taper(client, clinician))["held"] is True
    r = await client.post(resume, json={"reason_code": "patient_ready"}, headers=clinician)
    assert r.status_code == 200, r.text
    assert r.json()["held"] is False
    assert [e.event_type for e in await events(runtime)] == ["TaperHeld", "TaperResumed"]
    roles = [(d["kind"], d["decided_by_role"]) for d in await decisions(client, clinician)]
    assert roles[-2:] == [("patient_hold", "patient"), ("resume", "clinician")]


# --- 6. cancel ------------------------------------------------------------------------------------
async def test_a_draft_can_be_cancelled_an_active_plan_cannot(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    r = await client.post(f"{BASE}/plans/{plan['id']}/cancel", json={}, headers=clinician)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["steps"] == []
    assert {s["status"] for s in r.json()["cancelled_steps"]} == {"cancelled"}
    r = await client.post(f"{BASE}/plans/{plan['id']}/approve", json={}, headers=clinician)
    assert r.status_code == 409
    assert await rows(runtime, "tapers") == [] and await live_timers(runtime) == []
    assert [d["kind"] for d in await decisions(client, clinician)] == ["cancel"]

    active = await draft(client, clinician)
    await approve(client, clinician, active["id"])
    r = await client.post(f"{BASE}/plans/{active['id']}/cancel", json={}, headers=clinician)
    assert r.status_code == 409
    assert (await get_plan(client, clinician, active["id"]))["status"] == "active"
    assert len(await live_timers(runtime)) == 1


# --- 7. a plan with a maintenance target --------------------------------------------------------
async def test_a_plan_with_a_maintenance_target_ends_at_maintenance(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician, {**BODY, "maintenance_mg": "5"})
    approved = await approve(client, clinician, plan["id"])
    steps = approved["steps"]
    assert D(steps[-1]["daily_dose_mg"]) == D(5)
    assert await run_to_the_end(runtime) == len(steps)
    await assert_no_timer_failed(runtime)

    evts = await events(runtime)
    assert [e.event_type for e in evts] == ["DoseReduced"] * len(steps) + ["TaperCompleted"]
    last, completed = evts[-2], evts[-1]
    assert isinstance(last, DoseReduced) and isinstance(completed, TaperCompleted)
    assert last.new_daily_dose_mg == D(5) and last.step_kind == "reduction"
    assert completed.outcome == "maintenance" and completed.final_daily_dose_mg == D(5)
    assert completed.causation_id == last.event_id
    assert completed.correlation_id == last.correlation_id
    assert str(completed.decision_id) == approved["approved_by_decision_id"]
    stored = await get_plan(client, clinician, plan["id"])
    assert stored["status"] == "maintenance"
    assert {s["status"] for s in stored["steps"]} == {"emitted"}
    taper = await get_taper(client, clinician)
    assert taper["stage"] == "maintenance" and D(taper["current_daily_dose_mg"]) == D(5)


async def test_an_adjustment_to_a_maintenance_target_authorises_its_steps_and_the_end(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await draft(client, clinician)
    approved = await approve(client, clinician, plan["id"])
    assert await fire_at(runtime, approved["steps"][0]["effective_on"]) == 1
    r = await client.post(
        f"{BASE}/plans/{plan['id']}/adjust",
        json={"reason_code": "maintenance_agreed", "maintenance_mg": "5"},
        headers=clinician,
    )
    assert r.status_code == 200, r.text
    adjustment = (await decisions(client, clinician))[-1]
    assert adjustment["kind"] == "adjust"
    assert r.json()["approved_by_decision_id"] == adjustment["id"]
    assert await run_to_the_end(runtime) >= 1
    await assert_no_timer_failed(runtime)
    evts = await events(runtime)
    completed = evts[-1]
    assert isinstance(completed, TaperCompleted) and completed.outcome == "maintenance"
    assert str(completed.decision_id) == adjustment["id"]
    later = [e for e in evts[1:] if isinstance(e, DoseReduced)]
    assert later and {str(e.approved_by_decision_id) for e in later} == {adjustment["id"]}
