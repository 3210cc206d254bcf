"""Moderator changes retried with an Idempotency-Key (issue 18 part 7): a 204 is replayed as a
204 (Idempotency-Replayed), the same key on another moderator is refused."""

from __future__ import annotations

from services.chassis.auth import Role
from tests.unit.group_matching.test_cohorts import Stack, stack  # noqa: F401 (fixture)


async def test_a_retried_deactivation_replays_its_204(stack: Stack) -> None:  # noqa: F811
    await stack.moderator("mod-1")
    await stack.moderator("mod-2")
    ops = {**stack.auth(Role.OPS, "ops-1"), "Idempotency-Key": "off-1"}
    base = "/api/group-matching/moderators"
    first = await stack.client.post(f"{base}/mod-1/deactivate", headers=ops)
    assert first.status_code == 204 and "Idempotency-Replayed" not in first.headers
    again = await stack.client.post(f"{base}/mod-1/deactivate", headers=ops)
    assert again.status_code == 204 and again.headers["Idempotency-Replayed"] == "true"
    assert again.content == b""
    other = await stack.client.post(f"{base}/mod-2/deactivate", headers=ops)
    assert other.status_code == 422
    listed = (await stack.client.get(base, headers=ops)).json()
    assert {m["subject"]: m["active"] for m in listed} == {"mod-1": False, "mod-2": True}
    # The same key on reactivation is another operation's key.
    back = await stack.client.post(f"{base}/mod-1/activate", headers=ops)
    assert back.status_code == 204 and "Idempotency-Replayed" not in back.headers
