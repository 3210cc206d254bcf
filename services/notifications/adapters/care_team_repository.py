"""Care teams in the database: their routes, the default team, and which team a patient is in.

Also what routability checks need to know of the paging configuration: the on-call schedules
that exist and the clinicians with a contact method.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.chassis.pagination import PageParams, fetch_page
from services.chassis.uow import UnitOfWork
from services.notifications.adapters.orm import (
    care_team_patients,
    care_teams,
    clinician_contacts,
    oncall_schedules,
)


class CareTeamRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def routes_for_patient(self, patient_id: uuid.UUID) -> dict[str, str] | None:
        """The routes of the patient's team; None when they are in none."""
        team_key = (
            sa.select(care_team_patients.c.team_key)
            .where(care_team_patients.c.patient_id == patient_id)
            .scalar_subquery()
        )
        return await self._routes(care_teams.c.key == team_key)

    async def default_routes(self) -> dict[str, str] | None:
        return await self._routes(care_teams.c.is_default.is_(True))

    async def exists(self, key: str) -> bool:
        query = sa.select(care_teams.c.key).where(care_teams.c.key == key)
        return await self._uow.session.scalar(query) is not None

    async def save(
        self, key: str, routes: Mapping[Any, str], *, default: bool, by: str, now: datetime
    ) -> None:
        """Create or replace a team; a default team makes every other one not the default."""
        session = self._uow.session
        if default:  # at most one default team: the latest one written wins
            await session.execute(
                sa.update(care_teams).where(care_teams.c.key != key).values(is_default=False)
            )
        values = {
            "routes": dict(routes),
            "is_default": default,
            "updated_by": by,
            "updated_at": now,
        }
        if not await self.exists(key):
            await session.execute(sa.insert(care_teams).values(key=key, **values))
        else:
            await session.execute(
                sa.update(care_teams).where(care_teams.c.key == key).values(**values)
            )

    async def all(self) -> list[dict[str, Any]]:
        rows = await self._uow.session.execute(sa.select(care_teams).order_by(care_teams.c.key))
        return [_team(dict(r)) for r in rows.mappings()]

    async def page(self, page: PageParams) -> tuple[list[dict[str, Any]], str | None]:
        """One page of teams by key."""
        rows, following = await fetch_page(
            self._uow.session, sa.select(care_teams), (care_teams.c.key,), page, ascending=True
        )
        return [_team(r) for r in rows], following

    async def team_of(self, patient_id: uuid.UUID) -> str | None:
        found: str | None = await self._uow.session.scalar(
            sa.select(care_team_patients.c.team_key).where(
                care_team_patients.c.patient_id == patient_id
            )
        )
        return found

    async def assign(self, patient_id: uuid.UUID, team_key: str, by: str, now: datetime) -> None:
        values = {"team_key": team_key, "assigned_by": by, "assigned_at": now}
        members = care_team_patients
        if await self.team_of(patient_id) is None:
            await self._uow.session.execute(
                sa.insert(members).values(patient_id=patient_id, **values)
            )
        else:
            await self._uow.session.execute(
                sa.update(members).where(members.c.patient_id == patient_id).values(**values)
            )

    # --- what routability checks against -----------------------------------------------------

    async def schedule_keys(self) -> set[str]:
        return set((await self._uow.session.scalars(sa.select(oncall_schedules.c.key))).all())

    async def reachable_clinicians(self) -> set[str]:
        """Clinicians with at least one contact method."""
        rows = await self._uow.session.execute(
            sa.select(clinician_contacts.c.subject, clinician_contacts.c.methods)
        )
        return {row.subject for row in rows if row.methods}

    async def _routes(self, where: sa.ColumnElement[bool]) -> dict[str, str] | None:
        query = sa.select(care_teams.c.routes).where(where).limit(1)
        routes = await self._uow.session.scalar(query)
        return dict(routes) if routes is not None else None


def _team(r: Mapping[str, Any]) -> dict[str, Any]:
    return {"key": r["key"], "routes": dict(r["routes"]), "default": r["is_default"]}
