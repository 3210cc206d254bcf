"""Two submissions of one report with one ``Idempotency-Key`` at the same moment (a client retry,
or the gateway trying the next replica while the first still works) on PostgreSQL: one stores it,
the other answers the stored report (200, replayed). Found by the proving grounds: after a
PostgreSQL restart the second met the unique index on its INSERT, outside the commit the race
handling guarded, and answered 500 for a report that was stored."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from services.monitoring.domain import instruments
from tests.runtimes import runtime_fixture

pytestmark = [pytest.mark.postgres]


runtime = runtime_fixture("monitoring", at=datetime(2026, 3, 2, 9, tzinfo=UTC), on="postgres")


async def test_one_key_submitted_twice_at_once_stores_one_report_and_answers_both(
    runtime: ServiceRuntime,
) -> None:
    definition = instruments.definition("ciwa-b", "1")
    codes = [i.code for i in definition.items if i.code not in definition.observed_items]
    body = {"instrument": "ciwa-b", "oriented": True, "answers": dict.fromkeys(codes, 1)}
    transport = httpx.ASGITransport(app=runtime.app)
    statuses: list[int] = []
    for _ in range(10):  # the race is not won every time: ten rounds, each its own patient
        patient = uuid.uuid4()
        token = issue_dev_token(
            runtime.settings, subject="patient-1", role=Role.PATIENT, patient_id=patient
        )
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"k-{patient}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            url = f"/api/monitoring/patients/{patient}/symptom-reports"
            first, second = await asyncio.gather(
                client.post(url, json=body, headers=headers),
                client.post(url, json=body, headers=headers),
            )
        statuses += [first.status_code, second.status_code]
        assert sorted([first.status_code, second.status_code]) == [200, 201], (
            first.text,
            second.text,
        )
        assert first.json()["report_id"] == second.json()["report_id"]
        async with runtime.uow() as uow:
            reports = uow.table("symptom_reports")
            stored = await uow.session.scalar(
                sa.select(sa.func.count()).where(reports.c.patient_id == patient)
            )
        assert stored == 1
    assert statuses.count(200) == 10
