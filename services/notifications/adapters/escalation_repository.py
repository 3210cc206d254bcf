"""Escalations and their pages in the database: loading, adding and saving the aggregate.

Every escalation the repository hands out is tracked by the unit of work, so what it records
(``PageAcknowledged``) reaches the outbox in the transaction that saved it.

Locks: timers fire concurrently and an acknowledgement can race a step, so every change to an
escalation loads it with its row lock (PostgreSQL; SQLite has one writer anyway): one waits for
the other and then sees its outcome. Lock order is always the timer row (taken by the poller),
then the escalation: nothing here touches timer rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.chassis.db import is_postgres
from services.chassis.errors import NotFound
from services.chassis.uow import UnitOfWork
from services.notifications.adapters.orm import escalations, pages, resolved_episodes
from services.notifications.domain.escalation import PolicyDefinition, Step
from services.notifications.domain.paging import Escalation, EscalationStatus, PageStatus

# Written by ``save``: what changes as an escalation walks its policy.
_MUTABLE = (
    "status",
    "cycle",
    "loop",
    "level",
    "next_step_key",
    "next_step_at",
    "acknowledged_at",
    "acknowledged_by",
    "acknowledged_via",
    "resolved_at",
    "resolution",
)


class EscalationRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def get(self, escalation_id: uuid.UUID, *, lock: bool = False) -> Escalation:
        return self._tracked(await self.row(escalation_id, lock=lock))

    async def find(self, escalation_id: uuid.UUID) -> Escalation | None:
        """Locked, or None when there is no such escalation (a timer for a deleted one)."""
        rows = await self._locked(escalations.c.id == escalation_id)
        return self._tracked(rows[0]) if rows else None

    async def of_episode(self, episode_id: uuid.UUID) -> list[Escalation]:
        """Every escalation of the episode (one per severity), locked."""
        return [
            self._tracked(r) for r in await self._locked(escalations.c.episode_id == episode_id)
        ]

    async def row(self, escalation_id: uuid.UUID, *, lock: bool = False) -> sa.RowMapping:
        """The stored row as the API shows it; NotFound when there is none."""
        rows = await self._locked(escalations.c.id == escalation_id) if lock else None
        query = sa.select(escalations).where(escalations.c.id == escalation_id)
        row = rows[0] if rows else (await self._uow.session.execute(query)).mappings().first()
        if row is None:
            raise NotFound("no such escalation")
        return row

    async def add(self, escalation: Escalation) -> None:
        values = {name: getattr(escalation, name) for name in _MUTABLE}
        await self._uow.session.execute(
            sa.insert(escalations).values(
                id=escalation.id,
                episode_id=escalation.episode_id,
                patient_id=escalation.patient_id,
                severity=escalation.severity,
                family=escalation.family,
                reason_codes=escalation.reason_codes,
                threshold_event_id=escalation.threshold_event_id,
                policy_key=escalation.policy_key,
                policy_version=escalation.policy_version,
                policy=escalation.policy.model_dump(mode="json"),
                created_at=escalation.created_at,
                **values,
            )
        )
        self._uow.track(escalation)

    async def save(self, escalation: Escalation) -> None:
        values = {name: getattr(escalation, name) for name in _MUTABLE}
        values["status"] = escalation.status.value
        await self._uow.session.execute(
            sa.update(escalations).where(escalations.c.id == escalation.id).values(**values)
        )
        self._uow.track(escalation)

    # --- episodes monitoring resolved ---------------------------------------------------------

    async def episode_resolved(self, episode_id: uuid.UUID) -> bool:
        found = await self._uow.session.scalar(
            sa.select(resolved_episodes.c.episode_id).where(
                resolved_episodes.c.episode_id == episode_id
            )
        )
        return found is not None

    async def record_resolved(
        self, episode_id: uuid.UUID, resolution: str, resolved_at: datetime
    ) -> None:
        await self._uow.session.execute(
            sa.insert(resolved_episodes).values(
                episode_id=episode_id, resolution=resolution, resolved_at=resolved_at
            )
        )

    # --- internals ----------------------------------------------------------------------------

    def _tracked(self, row: sa.RowMapping) -> Escalation:
        escalation = Escalation(
            **{k: v for k, v in row.items() if k not in ("policy", "status")},
            policy=PolicyDefinition.model_validate(row["policy"]),
            status=EscalationStatus(row["status"]),
        )
        self._uow.track(escalation)
        return escalation

    async def _locked(self, where: sa.ColumnElement[bool]) -> list[sa.RowMapping]:
        query = sa.select(escalations).where(where)
        if is_postgres(self._uow.session.bind):
            query = query.with_for_update()
        return list((await self._uow.session.execute(query)).mappings())


class PageRepository:
    """The pages an escalation made: one per episode, severity, step and person, ever."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def get(self, page_id: uuid.UUID) -> sa.RowMapping:
        query = sa.select(pages).where(pages.c.id == page_id)
        return (await self._uow.session.execute(query)).mappings().one()

    async def exists(self, dedup_key: str) -> bool:
        query = sa.select(pages.c.id).where(pages.c.dedup_key == dedup_key)
        return await self._uow.session.scalar(query) is not None

    async def paged(self, escalation_id: uuid.UUID, target: str) -> bool:
        """Whether the escalation ever paged ``target``."""
        found = await self._uow.session.scalar(
            sa.select(pages.c.id)
            .where(pages.c.escalation_id == escalation_id, pages.c.target == target)
            .limit(1)
        )
        return found is not None

    async def add(
        self, escalation: Escalation, step: Step, target: str, dedup_key: str, now: datetime
    ) -> uuid.UUID:
        page_id = uuid.uuid4()
        await self._uow.session.execute(
            sa.insert(pages).values(
                id=page_id,
                escalation_id=escalation.id,
                episode_id=escalation.episode_id,
                patient_id=escalation.patient_id,
                severity=escalation.severity,
                cycle=step.cycle,
                loop=step.loop,
                level=step.level,
                target=target,
                reason_codes=escalation.reason_codes,
                dedup_key=dedup_key,
                threshold_event_id=escalation.threshold_event_id,
                status=PageStatus.PENDING.value,
                attempts=0,
                created_at=now,
            )
        )
        return page_id

    async def update(self, page_id: uuid.UUID, **values: Any) -> None:
        await self._uow.session.execute(
            sa.update(pages).where(pages.c.id == page_id).values(**values)
        )
