"""Notifications' lists page the chassis way (issue 18, part 2): a patient's pages and messages
(newest first, status and since/until), care teams and escalation policies (by key), every row
once while rows arrive between pages. Escalations: test_escalation_search.py."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import sqlalchemy as sa

from services.chassis.auth import Role
from services.notifications.adapters.orm import (
    care_teams,
    escalation_policies,
    pages,
    patient_messages,
)
from services.notifications.domain import escalation
from tests.paging import each_once, walk
from tests.unit.notifications.test_escalations import ADMIN_SCOPES, NOW, PATIENT, Stack, auth

N = "/api/notifications"


async def _insert(stack: Stack, table: sa.Table, rows: list[dict[str, object]]) -> None:
    async with stack.runtime.engine.begin() as conn:
        await conn.execute(sa.insert(table), rows)


async def _pages(stack: Stack, n: int, start: int, status: str = "delivered") -> set[str]:
    rows: list[dict[str, object]] = [
        {
            "id": uuid.uuid4(),
            "escalation_id": uuid.uuid4(),
            "episode_id": uuid.uuid4(),
            "patient_id": PATIENT,
            "severity": "RED",
            "level": 1,
            "reason_codes": ["red_flag:x"],
            "dedup_key": uuid.uuid4().hex,
            "threshold_event_id": uuid.uuid4(),
            "status": status if i % 2 else "undeliverable",
            "created_at": NOW + timedelta(minutes=start + i // 3),  # ties: the id decides
        }
        for i in range(n)
    ]
    await _insert(stack, pages, rows)
    return {str(r["id"]) for r in rows}


async def _messages(stack: Stack, n: int, start: int) -> set[str]:
    rows: list[dict[str, object]] = [
        {
            "id": uuid.uuid4(),
            "patient_id": PATIENT,
            "kind": "dose_changed",
            "source_event_id": uuid.uuid4(),
            "template": "dose_changed.v1",
            "params": {},
            "status": "sent" if i % 2 else "skipped",
            "send_at": NOW,
            "created_at": NOW + timedelta(minutes=start + i // 3),
        }
        for i in range(n)
    ]
    await _insert(stack, patient_messages, rows)
    return {str(r["id"]) for r in rows}


async def test_a_patients_pages_each_once_while_pages_arrive(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    first = await _pages(stack, 9, 0)
    clinician = auth(stack, "dr-ada", panel=[PATIENT])

    async def arrive() -> None:
        await _pages(stack, 4, 60)

    url = f"{N}/patients/{PATIENT}/pages"
    got = await walk(client, url, clinician, limit=4, between=arrive)
    assert [len(p) for p in got] == [4, 4, 1]
    each_once(got, first)
    keys = [(p["created_at"], p["id"]) for page in got for p in page]
    assert keys == sorted(keys, reverse=True)
    r = await client.get(url, params={"status": "undeliverable", "limit": 200}, headers=clinician)
    assert {p["status"] for p in r.json()} == {"undeliverable"} and len(r.json()) == 7
    r = await client.get(
        url, params={"until": (NOW + timedelta(minutes=1)).isoformat()}, headers=clinician
    )
    assert len(r.json()) == 3


async def test_a_patients_messages_each_once_while_messages_arrive(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    first = await _messages(stack, 10, 0)
    patient = auth(stack, "patient-1", Role.PATIENT, patient_id=PATIENT)

    async def arrive() -> None:
        await _messages(stack, 5, 60)

    url = f"{N}/patients/{PATIENT}/messages"
    got = await walk(client, url, patient, limit=3, between=arrive)
    assert [len(p) for p in got] == [3, 3, 3, 1]
    each_once(got, first)
    r = await client.get(url, params={"status": "sent", "limit": 200}, headers=patient)
    assert {m["status"] for m in r.json()} == {"sent"} and len(r.json()) == 7
    r = await client.get(
        url, params={"since": (NOW + timedelta(minutes=60)).isoformat()}, headers=patient
    )
    assert len(r.json()) == 5


async def test_care_teams_and_policies_by_key_each_once_while_others_are_added(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    admin = auth(stack, "dr-admin", scopes=ADMIN_SCOPES)
    shipped = escalation.defaults()
    a_policy = next(iter(shipped.policies))

    def teams(names: list[str]) -> list[dict[str, object]]:
        return [
            {
                "key": k,
                "routes": {"RED": a_policy},
                "is_default": False,
                "updated_by": "ops-1",
                "updated_at": NOW,
            }
            for k in names
        ]

    def policies(names: list[str]) -> list[dict[str, object]]:
        definition = shipped.policies[a_policy].model_dump(mode="json")
        return [
            {
                "id": uuid.uuid4(),
                "key": k,
                "version": 1,
                "definition": definition,
                "created_by": "ops-1",
                "created_at": NOW,
            }
            for k in names
        ]

    team_keys = [f"team-{i:02}" for i in range(7)]
    await _insert(stack, care_teams, teams(team_keys))

    async def more_teams() -> None:  # one before the cursor, one after: the latter is listed
        await _insert(stack, care_teams, teams(["team-00a", "team-99"]))

    got = await walk(client, f"{N}/care-teams", admin, limit=3, between=more_teams)
    each_once(got, set(team_keys) | {"team-99"}, key="key")
    assert "team-00a" not in {t["key"] for page in got for t in page}
    listed = [t["key"] for page in got for t in page]
    assert listed == sorted(listed)

    policy_keys = [f"policy-{i:02}" for i in range(5)]
    await _insert(stack, escalation_policies, policies(policy_keys))

    async def more_policies() -> None:
        await _insert(stack, escalation_policies, policies(["zz-policy"]))

    got = await walk(client, f"{N}/policies", admin, limit=2, between=more_policies)
    each_once(got, set(policy_keys) | set(shipped.policies) | {"zz-policy"}, key="key")


async def test_taperctl_says_when_more_failed_deliveries_exist_than_it_lists(
    stack: Stack,
) -> None:
    from services.notifications.adapters.orm import deliveries
    from services.notifications.service_layer import delivery_ops

    rows: list[dict[str, object]] = [
        {
            "id": uuid.uuid4(),
            "owner_kind": "page",
            "owner_id": uuid.uuid4(),
            "channel": "sms",
            "idempotency_key": uuid.uuid4().hex,
            "status": "failed",
            "attempts": 3,
            "created_at": NOW + timedelta(seconds=i),
        }
        for i in range(3)
    ]
    await _insert(stack, deliveries, rows)
    found, more = await delivery_ops.list_deliveries(stack.runtime.uow, limit=2)
    assert [f["id"] for f in found] == [str(r["id"]) for r in rows[:2]] and more  # told
    found, more = await delivery_ops.list_deliveries(stack.runtime.uow, limit=3)
    assert len(found) == 3 and not more


async def test_taperctl_retries_a_failed_delivery_once_and_nothing_else(stack: Stack) -> None:
    import sqlalchemy as sa

    from services.notifications.adapters.orm import deliveries
    from services.notifications.service_layer import delivery_ops

    failed, sent = uuid.uuid4(), uuid.uuid4()
    rows: list[dict[str, object]] = [
        {
            "id": delivery_id,
            "owner_kind": "page",
            "owner_id": uuid.uuid4(),
            "channel": "sms",
            "idempotency_key": uuid.uuid4().hex,
            "status": status,
            "attempts": 3,
            "created_at": NOW,
        }
        for delivery_id, status in ((failed, "failed"), (sent, "sent"))
    ]
    await _insert(stack, deliveries, rows)
    factory = stack.runtime.uow
    assert await delivery_ops.retry_delivery(factory, failed, "ops-1")
    assert not await delivery_ops.retry_delivery(factory, failed, "ops-1")  # pending now
    assert not await delivery_ops.retry_delivery(factory, sent, "ops-1")
    assert not await delivery_ops.retry_delivery(factory, uuid.uuid4(), "ops-1")
    async with factory() as uow:
        got = (
            await uow.session.execute(
                sa.select(deliveries.c.id, deliveries.c.status, deliveries.c.attempts)
            )
        ).all()
        timers = uow.table("timers")
        armed = (
            await uow.session.scalars(sa.select(timers.c.key).where(timers.c.kind == "deliver"))
        ).all()
    assert sorted((r.id == failed, r.status, r.attempts) for r in got) == [
        (False, "sent", 3),
        (True, "pending", 0),
    ]
    assert len(armed) == 1 and armed[0].startswith(f"{failed}:ops")
