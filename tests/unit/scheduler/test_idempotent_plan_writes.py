"""Idempotency-Key and If-Match on the plan writes (issue 18 part 7), over SQLite with the real
app: a retried POST replays its first answer and does nothing twice; a stale If-Match is 412."""

from __future__ import annotations

import uuid
from functools import partial

import httpx
import pytest

from services.chassis.auth import Role, issue_dev_token
from services.chassis.runtime import ServiceRuntime
from tests.plans import PLAN_BODY, post_plan
from tests.unit.scheduler.support import auth, events, rows

PATIENT = uuid.uuid4()
BASE = f"/api/scheduler/patients/{PATIENT}"
BODY = PLAN_BODY


@pytest.fixture
def clinician(runtime: ServiceRuntime) -> dict[str, str]:
    return auth(runtime, Role.CLINICIAN, panel=[PATIENT])


def keyed(headers: dict[str, str], key: str, **more: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key, **more}


draft = partial(post_plan, patient=PATIENT)


async def test_a_retried_create_replays_the_first_answer_and_stores_one_plan(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    first = await draft(client, keyed(clinician, "create-1"))
    # The same JSON, laid out otherwise (keys reordered): still the same request.
    again = await client.post(
        f"{BASE}/plans", json=dict(reversed(BODY.items())), headers=keyed(clinician, "create-1")
    )
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotency-Replayed"] == "true"
    assert "Idempotency-Replayed" not in first.headers
    assert again.headers["ETag"] == first.headers["ETag"] == '"1"'
    assert len(await rows(runtime, "plans")) == 1
    # No key: every POST is a new plan, as before.
    await draft(client, clinician)
    await draft(client, clinician)
    assert len(await rows(runtime, "plans")) == 3


async def test_a_key_is_the_callers_and_the_operations(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    await draft(client, keyed(clinician, "shared"))
    colleague = {
        "Authorization": "Bearer "
        + issue_dev_token(
            runtime.settings, subject="dr-colleague", role=Role.CLINICIAN, panel=[PATIENT]
        )
    }
    second = await draft(client, keyed(colleague, "shared"))
    assert "Idempotency-Replayed" not in second.headers
    plan_id = second.json()["id"]
    # The same key on another operation is another key.
    r = await client.post(
        f"{BASE}/plans/{plan_id}/cancel",
        json={"reason_code": "plan_discarded"},
        headers=keyed(colleague, "shared"),
    )
    assert r.status_code == 200, r.text
    assert "Idempotency-Replayed" not in r.headers
    assert len(await rows(runtime, "plans")) == 2


async def test_the_same_key_with_another_request_is_422_naming_the_header(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    await draft(client, keyed(clinician, "k"))
    r = await client.post(
        f"{BASE}/plans", json={**BODY, "duration_weeks": 40}, headers=keyed(clinician, "k")
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert r.json()["detail"][0]["type"] == "idempotency_key_reused"
    # Another patient's path with the same key and body: another request too.
    elsewhere = uuid.uuid4()
    headers = keyed(auth(runtime, Role.CLINICIAN, panel=[PATIENT, elsewhere]), "k")
    r = await client.post(f"/api/scheduler/patients/{elsewhere}/plans", json=BODY, headers=headers)
    assert r.status_code == 422
    assert len(await rows(runtime, "plans")) == 1


@pytest.mark.parametrize("bad", ["", "x" * 256, "tab\there", "caf\u00e9"])
async def test_a_malformed_key_is_422_naming_the_header(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str], bad: str
) -> None:
    headers = {**clinician, "Idempotency-Key": bad}
    r = await client.post(
        f"{BASE}/plans",
        json=BODY,
        headers=[(k.encode(), v.encode("utf-8")) for k, v in headers.items()],
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert await rows(runtime, "plans") == []


async def test_a_refused_request_leaves_its_key_free(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    r = await client.post(
        f"{BASE}/plans", json={**BODY, "start_on": "2026-01-01"}, headers=keyed(clinician, "k")
    )
    assert r.status_code == 422
    assert await rows(runtime, "idempotency_keys") == []  # rolled back with the rest


async def test_a_retried_approve_replays_and_arms_the_plan_once(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = (await draft(client, clinician)).json()
    url = f"{BASE}/plans/{plan['id']}/approve"
    headers = keyed(clinician, "approve-1", **{"If-Match": '"1"'})
    first = await client.post(url, json={}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.headers["ETag"] == '"2"'
    published, timers = len(await events(runtime)), len(await rows(runtime, "timers"))
    # The retry's If-Match is stale now (the first try moved the plan on): replayed, not 412.
    again = await client.post(url, json={}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()
    decisions = [d for d in await rows(runtime, "clinician_decisions") if d["kind"] == "approve"]
    assert len(decisions) == 1
    assert len(await events(runtime)) == published
    assert len(await rows(runtime, "timers")) == timers


async def test_get_sends_the_etag_and_a_stale_if_match_is_412(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = (await draft(client, clinician)).json()
    url = f"{BASE}/plans/{plan['id']}"
    r = await client.get(url, headers=clinician)
    assert r.headers["ETag"] == f'"{plan["version"]}"' == '"1"'
    cancel = {"reason_code": "plan_discarded"}
    stale = await client.post(
        f"{url}/cancel", json=cancel, headers={**clinician, "If-Match": '"0", W/"1"'}
    )
    assert stale.status_code == 412
    assert "If-Match" in stale.json()["detail"]
    assert stale.headers["ETag"] == '"1"'
    assert (await client.get(url, headers=clinician)).json()["status"] == "draft"
    fresh = await client.post(
        f"{url}/cancel", json=cancel, headers={**clinician, "If-Match": '"1"'}
    )
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["status"] == "cancelled"
    assert (
        fresh.headers["ETag"] == '"2"' == (await client.get(url, headers=clinician)).headers["ETag"]
    )


async def test_if_match_star_and_no_if_match_write_as_before(
    runtime: ServiceRuntime, client: httpx.AsyncClient, clinician: dict[str, str]
) -> None:
    plan = (await draft(client, clinician)).json()
    r = await client.post(
        f"{BASE}/plans/{plan['id']}/approve", json={}, headers={**clinician, "If-Match": "*"}
    )
    assert r.status_code == 200, r.text
    other = (await draft(client, clinician)).json()
    r = await client.post(
        f"{BASE}/plans/{other['id']}/cancel",
        json={"reason_code": "plan_discarded"},
        headers=clinician,
    )
    assert r.status_code == 200, r.text
    # If-Match on a plan that does not exist: 404 as without it.
    r = await client.post(
        f"{BASE}/plans/{uuid.uuid4()}/cancel",
        json={"reason_code": "plan_discarded"},
        headers={**clinician, "If-Match": '"1"'},
    )
    assert r.status_code == 404
