"""The scheduler's HTTP API in-process (bootstrap, SQLite, no broker started): auth and errors."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from contracts import topics_consumed_by
from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from services.scheduler.entrypoints.consumers import SUBSCRIPTIONS

PATIENT = uuid.uuid4()
OTHER = uuid.uuid4()
BASE = f"/api/scheduler/patients/{PATIENT}"


def auth(runtime: ServiceRuntime, role: Role, **claims: Any) -> dict[str, str]:
    token = issue_dev_token(runtime.settings, subject=f"{role}-1", role=role, **claims)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def clinician(runtime: ServiceRuntime) -> dict[str, str]:
    return auth(runtime, Role.CLINICIAN, panel=[PATIENT])


START_BODY = {"drug": "diazepam", "half_life_class": "long", "current_daily_dose_mg": "10"}


def test_the_scheduler_subscribes_to_what_contracts_say() -> None:
    assert {s.topic for s in SUBSCRIPTIONS} == set(topics_consumed_by("scheduler"))


async def test_clinician_starts_and_reduces_patient_reads(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    r = await client.post(f"{BASE}/taper", json=START_BODY, headers=clinician)
    assert r.status_code == 201, r.text
    assert r.json()["stage"] == "pre_taper"
    r = await client.post(
        f"{BASE}/dose-reductions",
        json={"new_daily_dose_mg": "7.6", "effective_on": "2026-01-19", "reason_code": "plan"},
        headers=clinician,
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "scheduled"

    me = auth(runtime, Role.PATIENT, patient_id=PATIENT)
    r = await client.get(f"{BASE}/taper", headers=me)
    assert r.status_code == 200
    body = r.json()
    assert body["current_daily_dose_mg"] in ("10", "10.0000")
    assert [s["status"] for s in body["steps"]] == ["scheduled"]


async def test_writes_are_for_clinicians_on_the_panel_only(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    patient = auth(runtime, Role.PATIENT, patient_id=PATIENT)
    stranger = auth(runtime, Role.CLINICIAN, panel=[OTHER])
    ops = auth(runtime, Role.OPS)
    for headers in (patient, stranger, ops):
        r = await client.post(f"{BASE}/taper", json=START_BODY, headers=headers)
        assert r.status_code == 403
    r = await client.post(f"{BASE}/taper", json=START_BODY)
    assert r.status_code == 401
    r = await client.get(f"{BASE}/taper", headers=auth(runtime, Role.PATIENT, patient_id=OTHER))
    assert r.status_code == 403


async def test_errors_map_to_422_404_409(
    client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    reduction = {"new_daily_dose_mg": "7.4", "effective_on": "2026-01-19", "reason_code": "plan"}
    r = await client.post(f"{BASE}/dose-reductions", json=reduction, headers=clinician)
    assert r.status_code == 404
    r = await client.get(f"{BASE}/taper", headers=clinician)
    assert r.status_code == 404

    assert (await client.post(f"{BASE}/taper", json=START_BODY, headers=clinician)).is_success
    r = await client.post(f"{BASE}/taper", json=START_BODY, headers=clinician)
    assert r.status_code == 409

    r = await client.post(f"{BASE}/dose-reductions", json=reduction, headers=clinician)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "new_daily_dose_mg"]
    assert "7.4" not in r.text

    r = await client.post(
        f"{BASE}/dose-reductions",
        json={**reduction, "override": True},
        headers=clinician,
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "override_reason_code"]

    r = await client.post(
        f"{BASE}/dose-reductions",
        json={**reduction, "new_daily_dose_mg": "9", "effective_on": "2026-01-04"},
        headers=clinician,
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "effective_on"]

    for bad in (
        {**reduction, "reason_code": "Patient said it hurts"},  # free text is refused
        {**reduction, "note": "x"},  # extra fields are refused
        {**reduction, "new_daily_dose_mg": "1001"},
        {**reduction, "new_daily_dose_mg": "7.00001"},
    ):
        r = await client.post(f"{BASE}/dose-reductions", json=bad, headers=clinician)
        assert r.status_code == 422, bad
        assert "hurts" not in r.text

    r = await client.post(f"{BASE}/taper/hold", json={"reason_code": "review"}, headers=clinician)
    assert r.status_code == 200 and r.json()["held"]
    ok = {**reduction, "new_daily_dose_mg": "9"}
    r = await client.post(f"{BASE}/dose-reductions", json=ok, headers=clinician)
    assert r.status_code == 409
    r = await client.post(f"{BASE}/taper/resume", json={"reason_code": "ok"}, headers=clinician)
    assert r.status_code == 200 and not r.json()["held"]
    r = await client.post(f"{BASE}/taper/resume", json={"reason_code": "ok"}, headers=clinician)
    assert r.status_code == 409
    r = await client.post(f"{BASE}/dose-reductions", json=ok, headers=clinician)
    assert r.status_code == 201
