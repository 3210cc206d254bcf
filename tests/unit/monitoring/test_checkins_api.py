"""``GET /api/monitoring/patients/{patient_id}/check-ins`` (issue 18 part 8): a patient's
check-ins, latest due first, paged by the chassis cursor (stable while new steps add check-ins),
filtered by status and due time; the patient and their panel only, every decision audited."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.chassis.runtime import ServiceRuntime
from tests.all_services import deliver
from tests.helpers import dose_reduced
from tests.runtimes import service_runtime

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
PATIENT = uuid.uuid4()
URL = f"/api/monitoring/patients/{PATIENT}/check-ins"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    async with service_runtime("monitoring", tmp_path, clock=FrozenClock(NOW)) as rt:
        # a long-acting drug's step: four check-ins (72 h, 1, 2 and 3 weeks after it)
        await deliver(rt, dose_reduced(PATIENT, effective_on=date(2026, 3, 2)))
        await deliver(rt, dose_reduced(uuid.uuid4(), effective_on=date(2026, 3, 2)))  # another's
        yield rt


def headers(runtime: ServiceRuntime, **claims: Any) -> dict[str, str]:
    claims = {"subject": "patient-1", "role": Role.PATIENT, "patient_id": PATIENT, **claims}
    return {"Authorization": "Bearer " + issue_dev_token(runtime.settings, **claims)}


async def get(runtime: ServiceRuntime, client: httpx.AsyncClient, **params: Any) -> httpx.Response:
    return await client.get(URL, params=params, headers=headers(runtime))


async def test_the_patient_reads_their_check_ins_latest_due_first(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    r = await get(runtime, client)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body) == 4
    due = [c["due_at"] for c in body]
    assert due == sorted(due, reverse=True)
    assert {c["status"] for c in body} == {"scheduled"}
    assert all(c["instruments"] and c["completed_by_report_id"] is None for c in body)
    assert "x-next-cursor" not in r.headers


async def test_pages_follow_the_cursor_and_stay_stable_under_inserts(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    everything = [c["id"] for c in (await get(runtime, client)).json()]
    first = await get(runtime, client, limit=2)
    assert [c["id"] for c in first.json()] == everything[:2]
    assert first.headers["link"].endswith('rel="next"')
    # a new step meanwhile: later check-ins (and the old ones not due yet superseded)
    await deliver(runtime, dose_reduced(PATIENT, effective_on=date(2026, 3, 9), step_number=2))
    seen = [c["id"] for c in first.json()]
    cursor = first.headers["x-next-cursor"]
    while cursor:
        page = await get(runtime, client, limit=2, cursor=cursor)
        seen += [c["id"] for c in page.json()]
        cursor = page.headers.get("x-next-cursor")
    # nothing repeated, nothing skipped, still in order; a new check-in due before the cursor
    # may show on a later page (the list is by due time, not by when rows were written)
    assert len(seen) == len(set(seen))
    assert [c for c in seen if c in everything] == everything
    assert len((await get(runtime, client)).json()) > 4


async def test_status_and_due_time_filters(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    body = (await get(runtime, client)).json()
    earliest = datetime.fromisoformat(body[-1]["due_at"])
    assert isinstance(runtime.clock, FrozenClock)
    runtime.clock.set(earliest)
    await runtime.timers.fire_due()  # the first check-in falls due
    [due] = (await get(runtime, client, status="due")).json()
    assert due["id"] == body[-1]["id"]
    assert len((await get(runtime, client, status="scheduled")).json()) == 3
    second = body[-2]["due_at"]
    assert [c["id"] for c in (await get(runtime, client, since=second)).json()] == [
        c["id"] for c in body[:-1]
    ]
    assert [c["id"] for c in (await get(runtime, client, until=second)).json()] == [body[-1]["id"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"since": "2026-03-01T00:00:00"}, "since"),  # no offset: ambiguous
        ({"limit": 201}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    runtime: ServiceRuntime, client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    r = await get(runtime, client, **params)
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [["query", field]]


async def test_only_the_patient_and_their_panel_every_decision_audited(
    runtime: ServiceRuntime, client: httpx.AsyncClient
) -> None:
    other = headers(runtime, subject="patient-2", patient_id=uuid.uuid4())
    stranger = headers(runtime, subject="dr-2", role=Role.CLINICIAN, panel=[uuid.uuid4()])
    panel = headers(runtime, subject="dr-1", role=Role.CLINICIAN, panel=[PATIENT])
    assert (await client.get(URL)).status_code == 401
    assert (await client.get(URL, headers=other)).status_code == 403
    assert (await client.get(URL, headers=stranger)).status_code == 403
    assert len((await client.get(URL, headers=panel)).json()) == 4
    async with runtime.uow() as uow:
        log = uow.table("audit_log")
        rows = (await uow.session.execute(sa.select(log).order_by(log.c.id))).mappings().all()
    assert [(r["actor"], r["resource"], r["outcome"]) for r in rows] == [
        ("patient-2", "checkin", "denied"),
        ("dr-2", "checkin", "denied"),
        ("dr-1", "checkin", "allowed"),
    ]
    assert all(r["patient_id"] == PATIENT and r["action"] == "read" for r in rows)
