"""The scheduler's lists page the chassis way (issue 18, part 2): a patient's decisions (newest
first, kind and since/until) and the audit log (every service serves the same one), every row
once while rows arrive between pages: each read of the audit log adds a row to it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import sqlalchemy as sa

from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from services.scheduler.adapters.orm import clinician_decisions
from tests.paging import each_once, walk
from tests.unit.scheduler.support import NOW, auth

PATIENT = uuid.uuid4()
S = "/api/scheduler"


async def _decisions(runtime: ServiceRuntime, n: int, start: int) -> set[str]:
    rows = [
        {
            "id": uuid.uuid4(),
            "patient_id": PATIENT,
            "clinician": "clinician-1",
            "kind": "hold" if i % 2 else "resume",
            "reason_code": "clinical_judgement",
            "payload": {},
            "decided_at": NOW + timedelta(minutes=start + i // 3),  # ties: the id decides
        }
        for i in range(n)
    ]
    async with runtime.engine.begin() as conn:
        await conn.execute(sa.insert(clinician_decisions), rows)
    return {str(r["id"]) for r in rows}


async def test_decisions_each_once_newest_first_while_decisions_arrive(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    first = await _decisions(runtime, 10, 0)
    clinician = auth(runtime, Role.CLINICIAN, panel=[PATIENT])

    async def arrive() -> None:
        await _decisions(runtime, 4, 60)

    url = f"{S}/patients/{PATIENT}/decisions"
    got = await walk(client, url, clinician, limit=4, between=arrive)
    assert [len(p) for p in got] == [4, 4, 2]
    each_once(got, first)
    keys = [(d["decided_at"], d["id"]) for page in got for d in page]
    assert keys == sorted(keys, reverse=True)
    r = await client.get(url, params={"kind": "hold", "limit": 200}, headers=clinician)
    assert {d["kind"] for d in r.json()} == {"hold"} and len(r.json()) == 7
    window = {"since": NOW.isoformat(), "until": (NOW + timedelta(minutes=1)).isoformat()}
    assert len((await client.get(url, params=window, headers=clinician)).json()) == 3
    bad = await client.get(url, params={"kind": "nope"}, headers=clinician)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "kind"]


async def test_the_audit_log_each_row_once_while_reads_are_audited(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    clinician = auth(runtime, Role.CLINICIAN, panel=[PATIENT])
    for _ in range(7):  # each read is audited: seven rows
        await client.get(f"{S}/patients/{PATIENT}/decisions", headers=clinician)
    async with runtime.engine.connect() as conn:
        before = {str(i) for i in (await conn.scalars(sa.text("SELECT id FROM audit_log"))).all()}
    assert len(before) >= 7
    ops = auth(runtime, Role.OPS)
    got = await walk(client, f"{S}/ops/audit", ops, limit=3)  # each page adds an audit.read
    each_once(got, before)
    ids = [row["id"] for page in got for row in page]
    assert ids == sorted(ids, reverse=True)
    r = await client.get(f"{S}/ops/audit", params={"limit": 1000}, headers=ops)
    assert r.status_code == 200  # the published bound stays (no break for ops clients)
