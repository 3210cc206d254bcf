"""The plan the scheduler tests draft and approve, and the HTTP calls that draft and approve it:
one home for the unit, integration and end-to-end modules that need an approved plan.

Diazepam 10 mg a day (5 mg twice) over 30 weeks from Monday 2026-01-12: steps every 2 weeks
(10 -> 9 -> 8.1 -> ...), the last one to 0."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

PLAN_BODY: dict[str, Any] = {
    "drug": "diazepam",
    "administrations_mg": ["5", "5"],
    "duration_weeks": 30,
    "age": 40,
    "start_on": "2026-01-12",
    "formulations": ["diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml"],
}


def plans_url(patient: uuid.UUID) -> str:
    return f"/api/scheduler/patients/{patient}/plans"


async def post_plan(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    *,
    patient: uuid.UUID,
) -> httpx.Response:
    """Draft ``body`` (default :data:`PLAN_BODY`) for ``patient``; the answer, a 201."""
    r = await client.post(plans_url(patient), json=body or PLAN_BODY, headers=headers)
    assert r.status_code == 201, r.text
    return r


async def draft_plan(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    *,
    patient: uuid.UUID,
) -> dict[str, Any]:
    """The drafted plan (:func:`post_plan`'s body)."""
    plan: dict[str, Any] = (await post_plan(client, headers, body, patient=patient)).json()
    return plan


async def approve_plan(
    client: httpx.AsyncClient, headers: dict[str, str], plan_id: str, *, patient: uuid.UUID
) -> dict[str, Any]:
    """Approve ``plan_id``; the approved plan (a 200)."""
    r = await client.post(f"{plans_url(patient)}/{plan_id}/approve", json={}, headers=headers)
    assert r.status_code == 200, r.text
    plan: dict[str, Any] = r.json()
    return plan
