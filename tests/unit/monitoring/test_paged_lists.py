"""Monitoring's lists page the chassis way (issue 18, part 2): symptom reports and episodes
(a patient's and a clinician's panel), newest first, every row once while new rows arrive
between pages; episodes take ``status`` open|resolved|all (the history), default open."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import sqlalchemy as sa

from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from services.monitoring.adapters.orm import episodes, symptom_reports
from tests.paging import each_once, walk
from tests.unit.monitoring.test_api import NOW, PATIENT, headers

M = "/api/monitoring"


async def _reports(runtime: ServiceRuntime, n: int, start_minutes: int) -> set[str]:
    rows = [
        {
            "id": uuid.uuid4(),
            "patient_id": PATIENT,
            "instrument": "gad-7",
            "instrument_version": "1",
            "method": "sum",
            "answers": {},
            "red_flags": [],
            "total_score": i,
            "band": "minimal",
            "reasons": [],
            "submitted_by": "patient-1",
            # three reports share each instant: the id breaks the tie
            "reported_at": NOW + timedelta(minutes=start_minutes + i // 3),
        }
        for i in range(n)
    ]
    async with runtime.engine.begin() as conn:
        await conn.execute(sa.insert(symptom_reports), rows)
    return {str(r["id"]) for r in rows}


async def _episodes(runtime: ServiceRuntime, n: int, start_minutes: int, status: str) -> set[str]:
    rows = [
        {
            "id": uuid.uuid4(),
            "patient_id": PATIENT,
            "family": f"family-{start_minutes}-{i}",
            "severity": "AMBER",
            "status": status,
            "opened_at": NOW + timedelta(minutes=start_minutes + i // 2),
            "updated_at": NOW + timedelta(minutes=start_minutes + i // 2),
            "last_source_id": uuid.uuid4(),
            "source_count": 1,
            "reasons": [],
            "history": [],
            "version": 1,
        }
        for i in range(n)
    ]
    async with runtime.engine.begin() as conn:
        await conn.execute(sa.insert(episodes), rows)
    return {str(r["id"]) for r in rows}


async def test_symptom_reports_every_one_once_newest_first_while_reports_arrive(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    first = await _reports(runtime, 11, 0)

    async def arrive() -> None:
        await _reports(runtime, 4, 60)

    url = f"{M}/patients/{PATIENT}/symptom-reports"
    pages = await walk(client, url, headers(runtime), limit=4, between=arrive)
    assert [len(p) for p in pages] == [4, 4, 3]
    each_once(pages, first)
    seen = [(r["reported_at"], r["id"]) for p in pages for r in p]
    assert seen == sorted(seen, reverse=True)
    window = {"since": (NOW + timedelta(minutes=1)).isoformat()}
    r = await client.get(
        url,
        params={**window, "until": (NOW + timedelta(minutes=3)).isoformat()},
        headers=headers(runtime),
    )
    assert len(r.json()) == 6  # minutes 1 and 2, three each
    fhir = await client.get(url, params={"format": "fhir", "limit": 4}, headers=headers(runtime))
    assert fhir.status_code == 200 and "x-next-cursor" in fhir.headers


async def test_episodes_history_by_status_paged_for_the_patient_and_the_panel(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    open_ = await _episodes(runtime, 5, 0, "open")
    resolved = await _episodes(runtime, 6, 10, "resolved")

    async def arrive() -> None:
        await _episodes(runtime, 3, 100, "resolved")

    url = f"{M}/patients/{PATIENT}/episodes"
    clinician = headers(runtime)
    default = await client.get(url, headers=clinician)
    assert {e["id"] for e in default.json()} == open_  # unchanged: open ones only
    history = await walk(client, url, clinician, limit=4, status="all", between=arrive)
    each_once(history, open_ | resolved)
    only = await client.get(url, params={"status": "resolved", "limit": 200}, headers=clinician)
    assert {e["status"] for e in only.json()} == {"resolved"} and len(only.json()) == 9
    panel = await walk(client, f"{M}/episodes", clinician, limit=2, status="resolved")
    each_once(panel, resolved)
    mine = headers(runtime, Role.PATIENT)
    assert len((await client.get(url, params={"status": "all"}, headers=mine)).json()) == 14
    bad = await client.get(url, params={"status": "closed"}, headers=clinician)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "status"]
