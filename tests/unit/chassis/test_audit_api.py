"""The audit log is queryable by ops in every service (who, what, when, from where), filtered
by patient, actor, outcome and time; only ops may read it, and reading it is audited too."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from tests.runtimes import runtime_fixture

NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)
PATIENT, OTHER = uuid.uuid4(), uuid.uuid4()


runtime = runtime_fixture("group_matching", at=NOW)


def bearer(rt: ServiceRuntime, role: Role, subject: str, **claims: object) -> dict[str, str]:
    token = issue_dev_token(rt.settings, subject=subject, role=role, **claims)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


async def test_ops_query_who_touched_which_patient_and_the_query_is_audited(
    runtime: ServiceRuntime,
) -> None:
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        stage = "/api/group-matching/patients/{}/stage"
        await client.get(
            stage.format(PATIENT),
            headers=bearer(runtime, Role.CLINICIAN, "dr-ada", panel=[PATIENT]),
        )
        await client.get(stage.format(PATIENT), headers=bearer(runtime, Role.CLINICIAN, "dr-zed"))
        await client.get(
            stage.format(OTHER), headers=bearer(runtime, Role.PATIENT, "p-2", patient_id=OTHER)
        )
        ops = bearer(runtime, Role.OPS, "ops-1")
        url = "/api/group-matching/ops/audit"

        mine = (await client.get(url, params={"patient_id": str(PATIENT)}, headers=ops)).json()
        assert {(r["actor"], r["outcome"]) for r in mine} == {
            ("dr-ada", "allowed"),
            ("dr-zed", "denied"),
        }
        assert all(r["action"] == "read" and r["resource"] == "stage" for r in mine)
        denied = (await client.get(url, params={"outcome": "denied"}, headers=ops)).json()
        assert [r["actor"] for r in denied] == ["dr-zed"]
        later = (NOW + timedelta(minutes=1)).isoformat()
        assert (await client.get(url, params={"since": later}, headers=ops)).json() == []

        clinician = bearer(runtime, Role.CLINICIAN, "dr-ada", panel=[PATIENT])
        assert (await client.get(url, headers=clinician)).status_code == 403
        reads = (await client.get(url, params={"actor": "ops-1"}, headers=ops)).json()
        assert {r["action"] for r in reads} == {"audit.read"} and len(
            reads
        ) == 3  # the earlier three
