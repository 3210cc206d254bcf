"""A clinician's resolve retried with its Idempotency-Key (issue 18 part 7): the retry gets the
first answer (200, replayed) instead of 409 "already resolved", and EscalationResolved is
announced once; without the key the second resolve is still the 409 it was."""

from __future__ import annotations

import httpx

from contracts import EscalationResolved
from services.chassis.auth import Role
from services.chassis.runtime import ServiceRuntime
from tests.unit.monitoring.test_api import (
    BASE,
    ciwa,
    events,
    headers,
    submit,
    thresholds_exceeded,
)


async def test_a_retried_resolve_replays_and_announces_once(
    runtime: ServiceRuntime,
    client: httpx.AsyncClient,
) -> None:
    await submit(client, headers(runtime, Role.PATIENT), ciwa(45))
    [exceeded] = await thresholds_exceeded(runtime)
    url = f"{BASE}/episodes/{exceeded.episode_id}/resolve"
    body = {"resolution": "keep_held"}
    keyed = {**headers(runtime), "Idempotency-Key": "resolve-1"}
    first = await client.post(url, json=body, headers=keyed)
    assert first.status_code == 200, first.text
    again = await client.post(url, json=body, headers=keyed)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()
    resolved = [e for e in await events(runtime) if isinstance(e, EscalationResolved)]
    assert len(resolved) == 1
    assert (await client.post(url, json=body, headers=headers(runtime))).status_code == 409
    other = await client.post(url, json={"resolution": "referred"}, headers=keyed)
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
