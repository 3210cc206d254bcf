"""Care teams and routability: which policy pages for a patient, and can it page a person.

A patient's team routes each severity to its policy; a patient of no team follows the default
team, and with none the shipped routes (``domain/data/escalation.v1.json``). A policy naming a
missing schedule or a clinician without a contact method is refused when saved; one already in
use (the shipped defaults on a fresh install) is flagged by :func:`routing_report`, by the
``taper.policies.unroutable`` gauge and, when an escalation starts on it, once in the logs.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.chassis.errors import NotFound
from services.chassis.pagination import PageParams
from services.chassis.uow import UnitOfWork
from services.notifications.adapters import paging_config_repository as paging_config
from services.notifications.adapters import paging_metrics
from services.notifications.adapters.care_team_repository import CareTeamRepository
from services.notifications.domain import escalation, routing
from services.notifications.domain.escalation import PolicyDefinition
from services.notifications.domain.routing import CareTeamDefinition, Problem


class Unroutable(Exception):
    """Refused input: each problem names its field (the API answers 422 with them)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in problems))
        self.problems = problems


# --- routing ----------------------------------------------------------------------------------


async def policy_for(
    uow: UnitOfWork, patient_id: uuid.UUID, severity: str
) -> paging_config.VersionedPolicy:
    teams = CareTeamRepository(uow)
    key = routing.route(
        severity,
        team=await teams.routes_for_patient(patient_id),
        default_team=await teams.default_routes(),
        shipped=escalation.defaults().routes,
    )
    return await paging_config.current_policy(uow, key)


# --- routability ------------------------------------------------------------------------------


async def refresh_gauge_if_stale(uow: UnitOfWork) -> None:
    if paging_metrics.METRICS.unroutable_stale(uow.clock.now()):
        await routing_report(uow)


async def problems_of(uow: UnitOfWork, policy: PolicyDefinition) -> list[Problem]:
    teams = CareTeamRepository(uow)
    return routing.problems_of(
        policy, schedules=await teams.schedule_keys(), reachable=await teams.reachable_clinicians()
    )


async def check_policy(uow: UnitOfWork, policy: PolicyDefinition) -> None:
    problems = await problems_of(uow, policy)
    if problems:
        raise Unroutable(problems)


async def routing_report(uow: UnitOfWork) -> dict[str, Any]:
    """Every policy (shipped or stored), who routes to it, and why it cannot page a person.
    No patient data: keys, versions and field paths only."""
    teams = await list_teams(uow)
    used_by: dict[str, list[str]] = {}
    covered_by_default: set[str] = set()
    for team in teams:
        for severity, key in team["routes"].items():
            used_by.setdefault(key, []).append(f"team:{team['key']}:{severity}")
            if team["default"]:
                covered_by_default.add(severity)
    for severity, key in escalation.defaults().routes.items():
        if severity not in covered_by_default:
            used_by.setdefault(key, []).append(f"shipped:{severity}")
    policies = []
    for policy in await paging_config.list_policies(uow):
        problems = await problems_of(uow, policy.definition)
        policies.append(
            {
                "key": policy.key,
                "version": policy.version,
                "used_by": used_by.get(policy.key, []),
                "routable": not problems,
                "problems": [{"loc": list(p.loc), "msg": p.msg, "type": p.type} for p in problems],
            }
        )
    unroutable = sum(1 for p in policies if p["used_by"] and not p["routable"])
    paging_metrics.METRICS.set_unroutable(unroutable, uow.clock.now())
    return {"unroutable_in_use": unroutable, "policies": policies, "teams": teams}


# --- teams ------------------------------------------------------------------------------------


async def save_team(uow: UnitOfWork, key: str, team: CareTeamDefinition, by: str) -> None:
    """Create or replace a team; every route must name a policy that can page a person."""
    problems: list[Problem] = []
    for severity, policy_key in team.routes.items():
        loc = ("routes", severity)
        try:
            policy = await paging_config.current_policy(uow, policy_key)
        except NotFound:
            problems.append(Problem(loc, "names a policy that does not exist", "unknown_policy"))
            continue
        for p in await problems_of(uow, policy.definition):
            where = ".".join(map(str, p.loc))
            problems.append(Problem(loc, f"policy {where} {p.msg}", "unroutable_policy"))
    if problems:
        raise Unroutable(problems)
    await CareTeamRepository(uow).save(
        key, team.routes, default=team.default, by=by, now=uow.clock.now()
    )


async def list_teams(uow: UnitOfWork) -> list[dict[str, Any]]:
    """Every team (the routing report weighs them all)."""
    return await CareTeamRepository(uow).all()


async def team_page(uow: UnitOfWork, page: PageParams) -> tuple[list[dict[str, Any]], str | None]:
    """One page of teams by key."""
    return await CareTeamRepository(uow).page(page)


async def assign(uow: UnitOfWork, patient_id: uuid.UUID, team_key: str, by: str) -> None:
    teams = CareTeamRepository(uow)
    if not await teams.exists(team_key):
        raise Unroutable(
            [Problem(("team",), "names a care team that does not exist", "unknown_team")]
        )
    await teams.assign(patient_id, team_key, by, uow.clock.now())


async def team_of(uow: UnitOfWork, patient_id: uuid.UUID) -> str | None:
    return await CareTeamRepository(uow).team_of(patient_id)
