"""Authorization matrix (issue 7, first part): every patient-scoped operation of every service
(enumerated from its OpenAPI document, so a new endpoint is covered without editing this file)
by every principal that must not reach that patient — another patient, a clinician without the
patient on their panel, ops, no token — never answers 2xx. Reads must answer exactly 401/403
(the refusal, not a validation error, so the check really ran) and every 403 is audited.

Writes whose body fails validation answer 422 before authorization runs: that leaks nothing,
but proves nothing either; giving every write a valid body (schemathesis) is the rest of
issue 7.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from services.chassis.auth import Role, issue_dev_token
from services.chassis.migrations import upgrade_to_head
from services.chassis.runtime import ServiceRuntime
from tests.all_services import SERVICES, sqlite_runtime

PATIENT = uuid.uuid4()
OTHER = uuid.uuid4()


def outsiders(runtime: ServiceRuntime) -> dict[str, dict[str, str]]:
    def bearer(**kw: Any) -> dict[str, str]:
        return {"Authorization": "Bearer " + issue_dev_token(runtime.settings, **kw)}

    return {
        "another patient": bearer(subject="p-other", role=Role.PATIENT, patient_id=OTHER),
        "clinician without the patient": bearer(
            subject="dr-other", role=Role.CLINICIAN, panel=[OTHER]
        ),
        "ops": bearer(subject="ops-1", role=Role.OPS),
        "no token": {},
    }


def concrete(path: str) -> str:
    return re.sub(
        r"\{[a-z_]+\}",
        lambda m: str(PATIENT if m.group(0) == "{patient_id}" else uuid.uuid4()),
        path,
    )


@pytest.fixture(params=list(SERVICES))
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    rt = sqlite_runtime(request.param, tmp_path)
    await upgrade_to_head(rt.engine, request.param)
    yield rt
    await rt.engine.dispose()


async def test_no_outsider_ever_reaches_a_patients_data(runtime: ServiceRuntime) -> None:
    operations = [
        (method.upper(), path)
        for path, ops in runtime.app.openapi()["paths"].items()
        if "{patient_id}" in path
        for method in ops
    ]
    assert operations, "every service has patient-scoped operations"
    leaks: list[str] = []
    unchecked_reads: list[str] = []
    refusals = 0
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for method, path in operations:
            url = concrete(path)
            for who, headers in outsiders(runtime).items():
                body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
                r = await client.request(method, url, json=body, headers=headers)
                if 200 <= r.status_code < 300:
                    leaks.append(f"{who}: {method} {path} -> {r.status_code}")
                if method == "GET" and r.status_code not in (401, 403):
                    unchecked_reads.append(f"{who}: GET {path} -> {r.status_code}")
                refusals += r.status_code == 403
    assert leaks == []
    assert unchecked_reads == []
    async with runtime.uow() as uow:
        audit = uow.table("audit_log")
        denied = await uow.session.scalar(
            sa.select(sa.func.count()).select_from(audit).where(audit.c.outcome == "denied")
        )
    assert denied == refusals  # every refusal is in the audit log
