"""Group matching's lists page the chassis way (issue 18, part 2): moderators (by subject,
``active``) and a moderator's cohorts (newest first, ``status`` and since/until), every row once
while rows arrive between pages."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from services.chassis.auth import Role
from services.group_matching.adapters.orm import cohorts, moderators
from tests.paging import each_once, walk
from tests.unit.group_matching.test_cohorts import NOW, Stack, stack  # noqa: F401  (fixture)

G = "/api/group-matching"


async def _insert(s: Stack, table: sa.Table, rows: list[dict[str, object]]) -> None:
    async with s.runtime.engine.begin() as conn:
        await conn.execute(sa.insert(table), rows)


def _moderators(names: list[str]) -> list[dict[str, object]]:
    return [
        {
            "subject": name,
            "languages": ["en"],
            "max_cohorts": 3,
            "active": i % 3 != 0,
            "updated_by": "ops-1",
            "updated_at": NOW,
        }
        for i, name in enumerate(names)
    ]


def _cohorts(n: int, start: int, status: str = "active") -> list[dict[str, object]]:
    return [
        {
            "id": uuid.uuid4(),
            "stage_group": "early",
            "language": "en",
            "session_weekday": 2,
            "session_utc_minute": 1080,
            "capacity": 8,
            "moderator": "mod-1",
            "status": status if i % 2 else "closed",
            "created_at": NOW + timedelta(minutes=start + i // 3),  # ties: the id decides
        }
        for i in range(n)
    ]


async def test_moderators_by_subject_each_once_while_others_register(
    stack: Stack,  # noqa: F811
) -> None:
    names = [f"mod-{i:02}" for i in range(8)]
    await _insert(stack, moderators, _moderators(names))
    ops = stack.auth(Role.OPS, "ops-1")

    async def more() -> None:  # one sorts before the cursor (not listed), one after (listed)
        await _insert(stack, moderators, _moderators(["mod-00a", "mod-99"]))

    got = await walk(stack.client, f"{G}/moderators", ops, limit=3, between=more)
    each_once(got, set(names) | {"mod-99"}, key="subject")
    listed = [m["subject"] for page in got for m in page]
    assert listed == sorted(listed) and "mod-00a" not in listed
    r = await stack.client.get(f"{G}/moderators", params={"active": "false"}, headers=ops)
    assert {m["active"] for m in r.json()} == {False} and len(r.json()) == 4


async def test_a_moderators_cohorts_each_once_while_cohorts_form(
    stack: Stack,  # noqa: F811
) -> None:
    rows = _cohorts(9, 0)
    await _insert(stack, cohorts, rows)
    mod = stack.auth(Role.CLINICIAN, "mod-1")

    async def arrive() -> None:
        await _insert(stack, cohorts, _cohorts(4, 60))

    url = f"{G}/moderators/mod-1/cohorts"
    got = await walk(stack.client, url, mod, limit=2, status="all", between=arrive)
    each_once(got, {str(r["id"]) for r in rows}, key="cohort_id")
    active = await stack.client.get(url, params={"limit": 200}, headers=mod)  # default: active
    assert len(active.json()) == 4 + 2  # 4 of the first 9, 2 of the 4 that arrived
    window = {"status": "all", "until": (NOW + timedelta(minutes=1)).isoformat()}
    assert len((await stack.client.get(url, params=window, headers=mod)).json()) == 3
