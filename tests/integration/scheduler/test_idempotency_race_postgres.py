"""Concurrent writers on PostgreSQL (issue 18 part 7).

* One ``Idempotency-Key`` sent twice at the same moment (a client retry, or the gateway trying the
  other replica while the first still works): one plan is stored, both answers are that plan
  (201 both, one of them replayed), never a 500.
* Two clinicians cancelling the same plan from the same read (If-Match "1") at once: the plan row
  is locked for the If-Match check, so one cancel goes through and the other is 412.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from tests.plans import PLAN_BODY
from tests.runtimes import runtime_fixture

pytestmark = [pytest.mark.postgres]

BODY = PLAN_BODY


runtime = runtime_fixture("scheduler", at=datetime(2026, 1, 5, 9, tzinfo=UTC), on="postgres")


def clinician(runtime: ServiceRuntime, patient: uuid.UUID, subject: str) -> dict[str, str]:
    token = issue_dev_token(runtime.settings, subject=subject, role=Role.CLINICIAN, panel=[patient])
    return {"Authorization": f"Bearer {token}"}


async def count_plans(runtime: ServiceRuntime, patient: uuid.UUID) -> int:
    async with runtime.uow() as uow:
        plans = uow.table("plans")
        return int(
            await uow.session.scalar(
                sa.select(sa.func.count()).where(plans.c.patient_id == patient)
            )
            or 0
        )


async def test_one_key_sent_twice_at_once_stores_one_plan_and_answers_both(
    runtime: ServiceRuntime,
) -> None:
    transport = httpx.ASGITransport(app=runtime.app)
    replayed = 0
    for _ in range(10):  # the race is not won every time: ten rounds, each its own patient
        patient = uuid.uuid4()
        headers = {**clinician(runtime, patient, "dr-a"), "Idempotency-Key": f"k-{patient}"}
        url = f"/api/scheduler/patients/{patient}/plans"
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first, second = await asyncio.gather(
                client.post(url, json=BODY, headers=headers),
                client.post(url, json=BODY, headers=headers),
            )
        assert [first.status_code, second.status_code] == [201, 201], (first.text, second.text)
        assert first.json() == second.json()
        flags = [r.headers.get("Idempotency-Replayed") for r in (first, second)]
        assert flags.count("true") == 1 and flags.count(None) == 1, flags
        replayed += flags.count("true")
        assert await count_plans(runtime, patient) == 1
    assert replayed == 10


async def test_two_stale_cancels_at_once_one_wins_the_other_is_412(
    runtime: ServiceRuntime,
) -> None:
    transport = httpx.ASGITransport(app=runtime.app)
    for _ in range(5):
        patient = uuid.uuid4()
        base = f"/api/scheduler/patients/{patient}/plans"
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            created = await client.post(
                base, json=BODY, headers=clinician(runtime, patient, "dr-a")
            )
            assert created.status_code == 201, created.text
            url = f"{base}/{created.json()['id']}/cancel"
            body = {"reason_code": "plan_discarded"}
            answers = await asyncio.gather(
                *(
                    client.post(
                        url,
                        json=body,
                        headers={**clinician(runtime, patient, who), "If-Match": '"1"'},
                    )
                    for who in ("dr-a", "dr-b")
                )
            )
        assert sorted(r.status_code for r in answers) == [200, 412], [r.text for r in answers]
        stale = next(r for r in answers if r.status_code == 412)
        assert stale.headers["ETag"] == '"2"'
