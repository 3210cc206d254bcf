"""The documented bodies of group matching's reads that return rows as they are (read_bodies.py,
and the chassis' audit log) match what those reads answer: every key documented, nothing
documented that is not sent, every value of the documented type."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from services.chassis.audit_api import AuditEntryOut
from services.chassis.auth import Role
from services.group_matching.entrypoints.read_bodies import MyCohortOut, RosterCohortOut
from tests.unit.group_matching.test_cohorts import Stack, stack  # noqa: F401  (fixture)


def conforms(
    model: type[BaseModel], body: dict[str, Any], *, optional: frozenset[str] = frozenset()
) -> None:
    TypeAdapter(model).validate_python(body)
    assert set(model.model_fields) - optional <= set(body) <= set(model.model_fields), model


async def test_cohort_view_roster_and_audit_log_are_answered_as_documented(
    stack: Stack,  # noqa: F811
) -> None:
    await stack.moderator()
    [waiting] = await stack.join(1)
    placed_only = frozenset({"cohort_id", "stage_group", "language", "members", "next_sessions"})
    conforms(MyCohortOut, await stack.cohort_of(waiting), optional=placed_only)
    await stack.join(5)
    await stack.run()
    placed = await stack.cohort_of(waiting)
    assert placed["status"] == "placed"
    conforms(MyCohortOut, placed, optional=frozenset({"waiting_since"}))

    mod = stack.auth(Role.CLINICIAN, "mod-1")
    r = await stack.client.get("/api/group-matching/moderators/mod-1/cohorts", headers=mod)
    [cohort] = r.json()
    conforms(RosterCohortOut, cohort)

    ops = stack.auth(Role.OPS, "ops-1")
    rows = (await stack.client.get("/api/group-matching/ops/audit", headers=ops)).json()
    assert rows
    for row in rows:
        conforms(AuditEntryOut, row)
