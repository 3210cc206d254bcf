"""What a client reads about plans (issue 18, part 8), over SQLite with the real app: a patient's
plans listed and paged, the taper's next step and why it is blocked, a plan's schedule numbered
1..n after an adjustment with the superseded steps apart, and decimals in one format."""

from __future__ import annotations

import re
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from services.chassis.auth import Role
from services.chassis.decimals import DECIMAL_PATTERN
from services.chassis.runtime import ServiceRuntime
from services.scheduler.domain import model, plan_view
from tests.unit.scheduler.support import NOW, auth, clock
from tests.unit.scheduler.test_plan_changes import (
    BASE,
    BODY,
    PATIENT,
    approve,
    draft,
    fire_at,
    get_plan,
    get_taper,
)


@pytest.fixture
def clinician(runtime: ServiceRuntime) -> dict[str, str]:
    return auth(runtime, Role.CLINICIAN, panel=[PATIENT])


@pytest.fixture
def patient(runtime: ServiceRuntime) -> dict[str, str]:
    return auth(runtime, Role.PATIENT, patient_id=PATIENT)


async def act(client: httpx.AsyncClient, headers: dict[str, str], action: str) -> dict[str, Any]:
    r = await client.post(f"{BASE}/taper/{action}", json={"reason_code": "x_y"}, headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


# --- listPlans --------------------------------------------------------------------------------


async def test_a_patients_plans_are_listed_newest_first_paged_and_filtered(
    runtime: ServiceRuntime,
    client: httpx.AsyncClient,
    clinician: dict[str, str],
    patient: dict[str, str],
) -> None:
    discarded = await draft(client, clinician)
    r = await client.post(f"{BASE}/plans/{discarded['id']}/cancel", json={}, headers=clinician)
    assert r.status_code == 200, r.text
    clock(runtime).set(NOW + timedelta(minutes=1))  # drafted later: listed before
    active = await draft(client, clinician)
    first = (await approve(client, clinician, active["id"]))["steps"][0]
    assert await fire_at(runtime, first["effective_on"]) == 1  # the first step takes effect
    newest = await draft(client, clinician, {**BODY, "start_on": "2026-03-02"})

    r = await client.get(f"{BASE}/plans", headers=patient)  # the patient reads their own
    assert r.status_code == 200, r.text
    listed = r.json()
    assert [p["id"] for p in listed] == [newest["id"], active["id"], discarded["id"]]
    assert [p["status"] for p in listed] == ["draft", "active", "cancelled"]
    assert "X-Next-Cursor" not in r.headers  # nothing cut: one page holds them all

    row = listed[1]
    full = await get_plan(client, clinician, active["id"])
    assert row["drug"] == "diazepam" and row["final_drug"] == "diazepam"
    assert row["steps"] == len(full["steps"]) and row["steps_taken"] == 1
    assert row["current_step"] == {
        k: full["steps"][0][k] for k in ("number", "effective_on", "kind", "daily_dose_mg")
    } | {"status": "emitted"}
    assert row["next_step"]["number"] == 2 and row["next_step"]["status"] == "scheduled"
    assert row["ends_on"] == full["steps"][-1]["effective_on"]
    assert listed[2]["steps"] == 0 and listed[2]["next_step"] is None  # all cancelled

    # paged: one at a time, following X-Next-Cursor, every plan once
    seen, cursor = [], None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        r = await client.get(f"{BASE}/plans", params=params, headers=clinician)
        assert r.status_code == 200, r.text
        seen += [p["id"] for p in r.json()]
        cursor = r.headers.get("X-Next-Cursor")
        if cursor is None:
            break
        assert 'rel="next"' in r.headers["Link"]
    assert seen == [p["id"] for p in listed]

    r = await client.get(f"{BASE}/plans", params={"status": "active"}, headers=clinician)
    assert [p["id"] for p in r.json()] == [active["id"]]
    r = await client.get(f"{BASE}/plans", params={"status": "bogus"}, headers=clinician)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "status"]

    # another patient's list is theirs: none of these plans
    other = uuid.uuid4()
    r = await client.get(
        f"/api/scheduler/patients/{other}/plans",
        headers=auth(runtime, Role.CLINICIAN, panel=[PATIENT, other]),
    )
    assert r.status_code == 200 and r.json() == []


# --- the taper's next step ------------------------------------------------------------------


async def test_the_taper_shows_its_next_step_and_why_it_is_blocked(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await approve(client, clinician, (await draft(client, clinician))["id"])
    taper = await get_taper(client, clinician)
    first = plan["steps"][0]
    assert taper["next_step_blocked_by"] is None
    nxt = taper["next_step"]
    assert (nxt["source"], nxt["number"], nxt["status"]) == ("plan", 1, "scheduled")
    assert nxt["effective_on"] == first["effective_on"] and nxt["kind"] == first["kind"]
    assert nxt["daily_dose_mg"] == first["daily_dose_mg"] == "9"
    assert nxt["takes_effect_at"].startswith(first["effective_on"])

    assert await fire_at(runtime, first["effective_on"]) == 1
    taper = await get_taper(client, clinician)
    assert taper["next_step"]["number"] == 2 and taper["next_step_blocked_by"] is None

    held = await act(client, clinician, "hold")  # the write answers with the view too
    assert held["next_step"]["number"] == 2 and held["next_step_blocked_by"] == "held"
    await act(client, clinician, "resume")
    # back to the prior dose: held; on resume the rest is only proposed until approved
    assert (await act(client, clinician, "return-to-prior-dose"))["next_step_blocked_by"] == "held"
    resumed = await act(client, clinician, "resume")
    assert resumed["next_step"]["status"] == "proposed"
    assert resumed["next_step_blocked_by"] == "awaiting_approval"
    await approve(client, clinician, plan["id"])
    taper = await get_taper(client, clinician)
    assert taper["next_step"]["status"] == "scheduled" and taper["next_step_blocked_by"] is None

    ended = await act(client, clinician, "end-at-maintenance")
    assert ended["next_step"] is None and ended["next_step_blocked_by"] == "maintenance"


async def test_a_taper_without_a_plan_shows_its_scheduled_reduction(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    r = await client.post(
        f"{BASE}/taper",
        json={"drug": "diazepam", "half_life_class": "long", "current_daily_dose_mg": "10.00"},
        headers=clinician,
    )
    assert r.status_code == 201, r.text
    assert r.json()["next_step"] is None
    assert r.json()["next_step_blocked_by"] == "none_scheduled"
    assert r.json()["current_daily_dose_mg"] == "10"  # as sent, "10.00": one format out
    r = await client.post(
        f"{BASE}/dose-reductions",
        json={"new_daily_dose_mg": "9.0", "effective_on": "2026-01-12", "reason_code": "plan"},
        headers=clinician,
    )
    assert r.status_code == 201, r.text
    taper = await get_taper(client, clinician)
    assert taper["next_step"]["source"] == "reduction"
    assert taper["next_step"]["effective_on"] == "2026-01-12"
    assert taper["next_step"]["daily_dose_mg"] == "9"
    assert taper["next_step_blocked_by"] is None


def _taper(**kw: Any) -> model.PatientTaper:
    decision = model.ClinicianDecision(uuid.uuid4(), "dr", model.DecisionKind.START, "start")
    taper = model.PatientTaper.start(
        patient_id=uuid.uuid4(),
        drug="diazepam",
        half_life_class="long",
        current_daily_dose_mg=model.Decimal(10),
        decision=decision,
    )
    for k, v in kw.items():
        setattr(taper, k, v)
    return taper


def _row(number: int, status: str, day: int = 12) -> dict[str, Any]:
    return {"number": number, "status": status, "effective_on": date(2026, 1, day), "kind": "x"}


def test_an_active_plan_without_a_step_left_is_at_its_end() -> None:
    emitted = [(1, _row(1, "emitted"), ())]
    assert plan_view.next_step(_taper(), "active", emitted) == plan_view.NextStep(
        None, plan_view.END_OF_PLAN
    )
    assert plan_view.next_step(_taper(held=True), "active", emitted).blocked_by == "held"
    assert plan_view.next_step(_taper(), "completed", emitted).blocked_by == "none_scheduled"
    ahead = [*emitted, (2, _row(40, "planned", 26), ())]
    step = plan_view.next_step(_taper(), "active", ahead).step
    assert step is not None and step.number == 2


# --- the schedule after an adjustment -------------------------------------------------------


def test_the_schedule_in_force_is_numbered_and_the_cancelled_are_apart() -> None:
    rows = [
        _row(34, "planned"),
        _row(1, "emitted"),
        _row(2, "cancelled"),
        _row(33, "scheduled"),
        _row(3, "cancelled"),
    ]
    kept, cancelled = plan_view.schedule(rows)
    assert [(n, r["number"]) for n, r in kept] == [(1, 1), (2, 33), (3, 34)]
    assert [r["number"] for r in cancelled] == [2, 3]


async def test_after_an_adjustment_the_plan_reads_1_to_n_with_the_superseded_apart(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = await approve(client, clinician, (await draft(client, clinician))["id"])
    planned = len(plan["steps"])
    assert await fire_at(runtime, plan["steps"][0]["effective_on"]) == 1
    r = await client.post(
        f"{BASE}/plans/{plan['id']}/adjust",
        json={"reason_code": "slower_pace", "pace": "slower"},
        headers=clinician,
    )
    assert r.status_code == 200, r.text
    for body in (r.json(), await get_plan(client, clinician, plan["id"])):
        steps = body["steps"]
        assert [s["number"] for s in steps] == list(range(1, len(steps) + 1))
        assert "cancelled" not in {s["status"] for s in steps}
        dates = [date.fromisoformat(s["effective_on"]) for s in steps]
        assert dates == sorted(dates)
        assert steps[1]["sequence"] == planned + 1  # stored after the ones it replaced
        assert len(body["cancelled_steps"]) == planned - 1
        assert {s["status"] for s in body["cancelled_steps"]} == {"cancelled"}
    taper = await get_taper(client, clinician)
    assert taper["next_step"]["number"] == 2  # the schedule's number, not the stored one
    fhir = await client.get(
        f"{BASE}/plans/{plan['id']}", params={"format": "fhir"}, headers=clinician
    )
    sequences = {d["sequence"] for d in fhir.json()["dosageInstruction"]}
    assert sequences == set(range(1, len(steps) + 1))  # FHIR numbers them the same way


# --- one decimal format -----------------------------------------------------------------------

DECIMAL_KEY = re.compile(r"(^|_)(mg|ml|fraction|quantity)(_|$)")


def _decimal_strings(value: Any, decimal: bool = False) -> list[str]:
    if isinstance(value, dict):
        return [
            t
            for k, v in value.items()
            for t in _decimal_strings(v, decimal or bool(DECIMAL_KEY.search(k)))
        ]
    if isinstance(value, list):
        return [t for v in value for t in _decimal_strings(v, decimal)]
    return [value] if decimal and isinstance(value, str) else []


async def test_every_decimal_a_plan_and_a_taper_send_is_canonical(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    body = {**BODY, "administrations_mg": ["5.000", "5.0"], "maintenance_mg": "1.50"}
    plan = await approve(client, clinician, (await draft(client, clinician, body))["id"])
    assert plan["input"]["administrations_mg"] == ["5", "5"]
    assert plan["input"]["maintenance_mg"] == "1.5"
    assert await fire_at(runtime, plan["steps"][0]["effective_on"]) == 1
    bodies = [
        plan,
        await get_taper(client, clinician),
        (await client.get(f"{BASE}/plans", headers=clinician)).json(),
        (await client.get(f"{BASE}/plans/{plan['id']}/dispensing", headers=clinician)).json(),
    ]
    found = [t for b in bodies for t in _decimal_strings(b)]
    assert len(found) > 50
    assert [t for t in found if not re.fullmatch(DECIMAL_PATTERN, t)] == []
