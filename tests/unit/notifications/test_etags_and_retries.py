"""Two administrators editing one policy or schedule, and a client retrying its POST (issue 18
part 7): ETag on the reads and writes, If-Match refusing a stale write (412, nothing changed),
Idempotency-Key replaying an override or an acknowledgement instead of doing it twice."""

from __future__ import annotations

from datetime import timedelta

import httpx

from services.chassis.auth import Role
from tests.unit.notifications.test_escalations import (
    ADMIN_SCOPES,
    NOW,
    PATIENT,
    Stack,
    auth,
    on_call_setup,
    threshold,
)

N = "/api/notifications"
SINGLE = {
    "levels": [
        {"targets": [{"kind": "schedule", "ref": "clinician-on-call"}], "ack_timeout_minutes": 1}
    ],
    "loops": 0,
}
ROTATION = {
    "timezone": "America/New_York",
    "participants": ["dr-ada", "dr-bo"],
    "starts_at": "2026-03-02T09:00:00-05:00",
    "shift_hours": 24,
}
OVERRIDE = {
    "clinician": "dr-cy",
    "starts_at": NOW.isoformat(),
    "ends_at": (NOW + timedelta(hours=2)).isoformat(),
}


async def test_a_policy_written_from_a_stale_read_is_412_and_changes_nothing(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await on_call_setup(client, stack)
    ada, bo = auth(stack, "dr-ada", scopes=ADMIN_SCOPES), auth(stack, "dr-bo", scopes=ADMIN_SCOPES)
    url = f"{N}/policies/red-default"
    read = await client.get(url, headers=ada)
    assert read.headers["ETag"] == '"0"'  # the shipped default
    assert (await client.get(url, headers=bo)).headers["ETag"] == '"0"'
    first = await client.put(url, json=SINGLE, headers={**ada, "If-Match": read.headers["ETag"]})
    assert first.status_code == 201, first.text
    assert first.headers["ETag"] == '"1"' and first.json()["version"] == 1
    # dr-bo read version 0 too: his save would silently undo dr-ada's.
    stale = await client.put(
        url, json={**SINGLE, "loops": 2}, headers={**bo, "If-Match": read.headers["ETag"]}
    )
    assert stale.status_code == 412
    assert "If-Match" in stale.json()["detail"]
    assert stale.headers["ETag"] == '"1"'
    assert (await client.get(url, headers=bo)).json()["definition"]["loops"] == 0
    # Read again, reapply: accepted. Without If-Match: written as before.
    fresh = await client.put(url, json={**SINGLE, "loops": 2}, headers={**bo, "If-Match": '"1"'})
    assert fresh.status_code == 201 and fresh.headers["ETag"] == '"2"'
    assert (await client.put(url, json=SINGLE, headers=ada)).headers["ETag"] == '"3"'
    # A policy that does not exist has no version to match.
    r = await client.put(f"{N}/policies/nope", json=SINGLE, headers={**ada, "If-Match": "*"})
    assert r.status_code == 412


async def test_a_schedule_versions_its_rotation_and_overrides(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    admin = auth(stack, "ops-1", Role.OPS)
    url = f"{N}/schedules/weekend"
    created = await client.put(url, json=ROTATION, headers={**admin, "If-Match": "*"})
    assert created.status_code == 412  # If-Match * : only an existing schedule
    created = await client.put(url, json=ROTATION, headers=admin)
    assert created.status_code == 204 and created.headers["ETag"] == '"1"'
    got = await client.get(url, headers=admin)
    assert got.headers["ETag"] == '"1"' and got.json()["version"] == 1

    added = await client.post(
        f"{url}/overrides", json=OVERRIDE, headers={**admin, "If-Match": '"1"'}
    )
    assert added.status_code == 201, added.text
    assert added.headers["ETag"] == '"2"'
    stale = await client.put(url, json=ROTATION, headers={**admin, "If-Match": '"1"'})
    assert stale.status_code == 412 and stale.headers["ETag"] == '"2"'
    override_id = added.json()["id"]
    stale = await client.delete(
        f"{url}/overrides/{override_id}", headers={**admin, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert len((await client.get(url, headers=admin)).json()["overrides"]) == 1
    removed = await client.delete(
        f"{url}/overrides/{override_id}", headers={**admin, "If-Match": '"2"'}
    )
    assert removed.status_code == 204 and removed.headers["ETag"] == '"3"'
    replaced = await client.put(url, json=ROTATION, headers={**admin, "If-Match": '"3"'})
    assert replaced.status_code == 204 and replaced.headers["ETag"] == '"4"'


async def test_a_retried_override_is_added_once(stack: Stack, client: httpx.AsyncClient) -> None:
    admin = {**auth(stack, "ops-1", Role.OPS), "Idempotency-Key": "override-1"}
    url = f"{N}/schedules/weekend"
    await client.put(url, json=ROTATION, headers=admin)
    first = await client.post(f"{url}/overrides", json=OVERRIDE, headers=admin)
    again = await client.post(f"{url}/overrides", json=OVERRIDE, headers=admin)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.headers["ETag"] == first.headers["ETag"] == '"2"'
    assert len(await stack.rows("oncall_overrides")) == 1
    other = await client.post(
        f"{url}/overrides", json={**OVERRIDE, "clinician": "dr-bo"}, headers=admin
    )
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_a_retried_acknowledgement_replays_the_first_answer(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await on_call_setup(client, stack)
    await stack.deliver(threshold("RED"))
    [esc] = await stack.rows("escalations")
    headers = {**auth(stack, "dr-ada", panel=[PATIENT]), "Idempotency-Key": "ack-1"}
    url = f"{N}/escalations/{esc['id']}/acknowledge"
    first = await client.post(url, headers=headers)
    assert first.status_code == 200, first.text
    stack.clock.advance(timedelta(minutes=3))
    again = await client.post(url, headers=headers)
    assert again.status_code == 200
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()  # the first answer, not a second acknowledgement's
    # Another clinician's key of the same name is theirs.
    bo = {**auth(stack, "dr-bo", panel=[PATIENT]), "Idempotency-Key": "ack-1"}
    assert "Idempotency-Replayed" not in (await client.post(url, headers=bo)).headers
