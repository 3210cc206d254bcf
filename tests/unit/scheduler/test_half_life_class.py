"""Issue 13 item 10: lorazepam is short-acting (clinical reference §1.2, Ashton [S3b], [S16]).

The scheduler's equivalence table is the one place a drug's half-life class is decided; it
travels on ``DoseReduced`` and monitoring picks the check-in offsets and the worsening window
from it (monitoring has no drug table of its own). So the test follows a planned lorazepam taper
from the scheduler's API to the event, then through monitoring's cadence and rules data.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from contracts import DoseReduced
from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from services.monitoring.domain.checkins import cadence_v1, plan_checkins
from services.monitoring.domain.rules import rules_v2
from services.scheduler.domain.planning import equivalence_v1
from tests.unit.scheduler.support import auth, clock, events

PATIENT = uuid.uuid4()
BASE = f"/api/scheduler/patients/{PATIENT}"
LORAZEPAM: dict[str, Any] = {
    "drug": "lorazepam",
    "administrations_mg": ["1", "1"],
    "duration_weeks": 30,
    "age": 40,
    "start_on": "2026-01-12",
    "formulations": ["lorazepam_tab_0_5mg", "lorazepam_tab_1mg", "lorazepam_conc_2mg_ml"],
}


def test_lorazepam_is_short_acting_with_its_source() -> None:
    assert equivalence_v1().get("lorazepam").half_life_class == "short"  # type: ignore[union-attr]
    assert equivalence_v1().get("oxazepam").half_life_class == "short"  # type: ignore[union-attr]


async def test_a_lorazepam_dose_reduced_gets_short_acting_checkins_and_window(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    headers = auth(runtime, Role.CLINICIAN, panel=[PATIENT])
    r = await client.post(f"{BASE}/plans", json=LORAZEPAM, headers=headers)
    assert r.status_code == 201, r.text
    plan_id = r.json()["id"]
    r = await client.post(f"{BASE}/plans/{plan_id}/approve", json={}, headers=headers)
    assert r.status_code == 200, r.text
    first = r.json()["steps"][0]
    clock(runtime).set(datetime.fromisoformat(first["effective_on"]).replace(tzinfo=UTC))
    assert await runtime.timers.fire_due() == 1

    [event] = await events(runtime)
    assert isinstance(event, DoseReduced) and event.drug == "lorazepam"
    assert event.half_life_class == "short"  # was "intermediate": 48/168 h and a 7-day window

    start = datetime.combine(event.effective_on, datetime.min.time(), tzinfo=UTC)
    offsets = [
        c.due_at - start
        for c in plan_checkins(event.effective_on, event.half_life_class, cadence_v1())
    ]
    assert offsets == [timedelta(hours=24), timedelta(hours=72)]
    assert rules_v2().window_days[event.half_life_class] == 3
